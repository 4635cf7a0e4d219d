"""rt_physio: real-time streaming inference for physiological signals (EEG + ECG).

Live streams arrive over LSL or BrainFlow, are filtered, resampled to 200 Hz and windowed, run through a
dual-backbone CBraMod fusion model, and the predictions are published over ZeroMQ (and MQTT).
"""

__version__ = "0.1.0"
