"""``rt-physio evaluate`` and windows with no usable input: counted, not scored, kept out of the smoothed mean."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from rt_physio.nn.registry import load_model
from rt_physio.training.evaluate import evaluate_loaded, load_labelled
from tests.conftest import REPO_ROOT

FLAT = (60.0, 110.0)  # seconds of the rest recording whose ECG goes flat (an electrode off): ten 5-s windows


def test_windows_the_model_cannot_use_are_counted_and_left_out_of_scores_and_means(eegmat_dir: Path) -> None:
    recordings, line_freq = load_labelled("eegmat", eegmat_dir, ["Subject03"], 3.0, ["ecg"])
    assert all("ecg" in r.signals for r in recordings), [r.missing for r in recordings]
    rest = next(i for i, r in enumerate(recordings) if r.condition == "rest")
    ecg = recordings[rest].signals["ecg"]
    data = ecg.data.copy()
    data[round(FLAT[0] * ecg.sfreq): round(FLAT[1] * ecg.sfreq)] = 0.0
    flat = list(recordings)
    flat[rest] = dataclasses.replace(recordings[rest], signals={"ecg": dataclasses.replace(ecg, data=data)})
    model = load_model(REPO_ROOT / "models" / "eegmat-fusion")
    assert model.spec.smoothing_s > 0  # scored on its running means, as run publishes them
    intact = evaluate_loaded(model, recordings, [("ecg",)], line_freq=line_freq)["ecg"]
    broken = evaluate_loaded(model, flat, [("ecg",)], line_freq=line_freq)["ecg"]
    assert intact["no_usable_input"] == 0
    # every window inside the flat stretch has nothing usable (an edge window may still hold a beat or two)
    assert 10 <= broken["no_usable_input"] <= 12
    assert broken["n_windows"] + broken["no_usable_input"] == intact["n_windows"]
    smoothed_off = evaluate_loaded(model, flat, [("ecg",)], line_freq=line_freq, smoothing=0.0)["ecg"]
    assert smoothed_off["no_usable_input"] == broken["no_usable_input"]
    assert np.isfinite(broken["auroc"]) and broken["auroc"] != smoothed_off["auroc"]
