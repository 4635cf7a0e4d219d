"""The shipped default does not jump when a modality drops out or returns (real EEGMAT windows).

Property (per-modality-set Platt maps, :mod:`rt_physio.nn.hybrid`): on the same windows, the output a session
publishes just after ECG drops out (the EEG set) differs from the output with both modalities by

* no systematic jump: the class-balanced mean change ``|(mean(d | rest) + mean(d | task)) / 2| <= 0.10`` with
  ``d = p_eeg - p_both`` over every window of four subjects (balanced because losing an informative modality
  rightly moves rest windows up and task windows down; what must not happen is a shift common to both, an
  offset such as the old fusion model's, which applied only with both modalities), and
* a bounded typical change: ``median(|d|) <= 0.25``,

and likewise when EEG drops out (the ECG set), uncalibrated and calibrated. The same statistics of the head
before its per-set Platt maps are given in the assertion message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rt_physio.nn import load_model
from rt_physio.nn.hybrid import HybridModel
from rt_physio.training.evaluate import model_features
from rt_physio.training.hybrid import centre, load_windows
from tests.training.conftest import eegmat_subset

SUBJECTS = [3, 9, 17, 26]


@pytest.fixture(scope="module")
def stretch(tmp_path_factory: pytest.TempPathFactory, eegmat_dir: Path, cache_dir: Path):
    loaded = load_model("eegmat-fusion")
    assert isinstance(loaded.module, HybridModel)
    data = eegmat_subset(eegmat_dir, tmp_path_factory.mktemp("cont") / "data", SUBJECTS)
    windows = load_windows(data, SUBJECTS, cache=cache_dir)
    feats, present = model_features(loaded.module, windows.dataset)
    return loaded.module, windows, feats, present


def _p(module: HybridModel, feats: np.ndarray, flags: np.ndarray, calibrated: bool, platt: bool = True) -> np.ndarray:
    x = torch.from_numpy(feats.astype(np.float32))
    f = torch.from_numpy(flags.astype(np.float32))
    head = module.cal if calibrated else module.lr
    with torch.no_grad():
        logits = head(x, f, module.feature_modality) if platt else head.raw(x, f, module.feature_modality)
    return torch.sigmoid(logits[:, 0]).numpy()


@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("dropped", ["ecg", "eeg"])
def test_output_does_not_jump_when_a_modality_drops_out(stretch, calibrated: bool, dropped: str) -> None:
    module, windows, feats, present = stretch
    fm = module.feature_modality.numpy()
    if calibrated:
        is_base = windows.baseline(60.0)
        feats, _ = centre(feats, present, windows, is_base, fm, np.ones(len(windows), dtype=bool))
        rows = present.all(axis=1) & ~is_base
    else:
        rows = present.all(axis=1)
    assert rows.sum() >= 100, "too few windows with both modalities"
    both = present[rows]
    kept = both.copy()
    kept[:, 0 if dropped == "eeg" else 1] = False
    x = feats[rows]
    task = windows.labels[rows] > 0.5
    assert task.any() and (~task).any()
    delta = _p(module, x, kept, calibrated) - _p(module, x, both, calibrated)
    raw = _p(module, x, kept, calibrated, platt=False) - _p(module, x, both, calibrated, platt=False)

    def balanced(d: np.ndarray) -> float:
        return float((d[task].mean() + d[~task].mean()) / 2)

    note = (f"Platt: balanced mean {balanced(delta):+.3f}, median |d| {np.median(np.abs(delta)):.3f}; raw head: "
            f"balanced mean {balanced(raw):+.3f}, median |d| {np.median(np.abs(raw)):.3f}")
    assert abs(balanced(delta)) <= 0.10, note
    assert np.median(np.abs(delta)) <= 0.25, note
