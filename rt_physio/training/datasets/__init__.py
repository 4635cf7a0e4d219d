"""Dataset loaders returning :class:`rt_physio.io.Recording` objects, their preprocessing and their windows.

* :mod:`.eegmat` — PhysioNet EEGMAT (EDF; rest vs mental arithmetic; 20 EEG channels + 1 ECG lead).
* :mod:`.dreamer` — DREAMER.mat (EEG 14 ch + ECG 2 leads; arousal / valence / dominance self-reports).
* :mod:`.wfdb` — WFDB records and NeuroKit CSV files (unlabelled ECG for pre-training).
* :mod:`.edf` — any EDF file or folder (unlabelled EEG / ECG) and the pre-training corpus finder.
* :mod:`.prepare` — the engine-identical preprocessing of whole recordings, cached as ``.npy``.
* :mod:`.windows` — the ``(C, N, 200)`` windows models train on.
"""
