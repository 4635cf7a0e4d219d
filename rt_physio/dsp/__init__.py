"""Streaming DSP: numba kernels and thin stateful wrappers, exact under any chunking.

* :mod:`~rt_physio.dsp.design` — SOS designs (band-pass, high-pass, low-pass, notch).
* :class:`SosFilter` / :class:`FilterChain` — stateful IIR filtering, bit-identical to ``scipy.signal.sosfilt``.
* :class:`StreamResampler` — stateful polyphase resampling (``resample_poly``'s filter, run causally).
* :class:`RingBuffer` — mirrored ring: every window is one contiguous view.
* :mod:`~rt_physio.dsp.hygiene` — non-finite values, gaps and clock steps.
* :mod:`~rt_physio.dsp.quality` — per-window signal quality.
* :class:`StreamProcessor` — all of the above for one stream, with causal timestamps.
* :mod:`~rt_physio.dsp.features` / :mod:`~rt_physio.dsp.summary_features` — classical features of one window
  (band powers, R peaks, heart rate / HRV), per channel or over channels.
* ``_dejitter_kernel`` — the compiled fit behind :class:`rt_physio.clock.Dejitter`.
"""

from rt_physio.dsp import quality
from rt_physio.dsp.design import design_bandpass, design_highpass, design_lowpass, design_notch
from rt_physio.dsp.filters import FilterChain, SosFilter, sos_step
from rt_physio.dsp.processor import ProcessorStats, StreamProcessor
from rt_physio.dsp.quality import QualityReport, WindowCounts
from rt_physio.dsp.resample import StreamResampler, rate_ratio, resample_filter
from rt_physio.dsp.ring import RingBuffer

__all__ = [
    "FilterChain",
    "ProcessorStats",
    "QualityReport",
    "RingBuffer",
    "SosFilter",
    "StreamProcessor",
    "StreamResampler",
    "WindowCounts",
    "design_bandpass",
    "design_highpass",
    "design_lowpass",
    "design_notch",
    "quality",
    "rate_ratio",
    "resample_filter",
    "sos_step",
]
