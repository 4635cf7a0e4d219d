"""The live engine and training set up a model's preprocessing the same way: identical arrays on a real EDF.

Both call :func:`rt_physio.nn.preprocessing.build_processor`; this runs one EEGMAT recording through the engine's
per-stream processor in live-sized chunks and through training's ``prepare`` and compares them bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rt_physio.io import Recording, read_recording
from rt_physio.nn.spec import read_model_spec
from rt_physio.runtime.engine import processor_for
from rt_physio.sources.base import StreamInfo
from rt_physio.training.datasets.prepare import prepare

MODEL = Path(__file__).resolve().parents[1] / "models" / "eegmat-fusion"


@pytest.mark.parametrize("modality", ["eeg", "ecg"])
def test_engine_and_training_preprocess_a_real_edf_identically(data_dir: Path, modality: str) -> None:
    spec = read_model_spec(MODEL)
    pre = spec.preprocessing[modality]
    assert pre.bandpass is not None and pre.notch  # the comparison covers band-pass, notch and resampler
    rec = read_recording(data_dir / "eegmat" / "Subject31_2.edf", duration=20.0)
    sig = rec.signals[modality]
    assert sig.sfreq == 500.0 and sig.n_samples == 20 * 500

    # engine: the processor it builds for a stream of this rate, fed as a source delivers (37-sample chunks)
    info = StreamInfo(name="edf", modality=sig.modality, sfreq=sig.sfreq, channel_names=sig.channel_names)
    proc = processor_for(spec, sig.modality, info, line_freq=50.0, window_s=spec.window_s)
    ts = np.arange(sig.n_samples) / sig.sfreq
    for start in range(0, sig.n_samples, 37):
        proc.push(sig.data[start:start + 37], ts[start:start + 37])
    live, _stamps = proc.read_until(np.inf, proc.stats.samples_out)
    live = live[proc.resampler.delay_out:]  # output k at input time k / 200, as training aligns it

    # training: prepare() on the same recording (scale 1: the engine's processor works in µV too)
    named = Recording(rec.path, rec.format, {modality: sig}, name="Subject31_2")
    offline = prepare([named], {modality: pre}, line_freq=50.0, scale_uv=1.0, sfreq_out=spec.sfreq)[0]
    trained = offline.signals[modality]
    assert trained.shape == (sig.n_channels, 20 * 200)
    n = live.shape[0]
    assert n > 0.95 * trained.shape[1]  # the live path holds back only the resampler's delay
    assert np.array_equal(trained[:, :n], live.T)
