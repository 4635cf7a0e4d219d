"""Cross-validation of the fusion recipe on real EEGMAT subjects (tiny encoders, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

from rt_physio.experiments.crossval import main
from tests.training.conftest import eegmat_subset


def test_crossval_holds_each_fold_out_and_reports_both_kinds(data_dir: Path, tmp_path: Path) -> None:
    eegmat_dir = data_dir / "eegmat"
    assert (eegmat_dir / "Subject00_1.edf").is_file(), f"EEGMAT files missing from {eegmat_dir}"
    data = eegmat_subset(eegmat_dir, tmp_path / "data", [0, 1, 2, 3, 4, 5])
    from rt_physio.experiments import crossval

    report = crossval.crossval_fusion(data, tmp_path / "cv", fold_size=2, epochs=1, calibrate=60.0,
                                      cache=tmp_path / "cache", eeg_layers=1, ecg_layers=1, eeg_ff=32, ecg_ff=32,
                                      max_train_windows=64)
    assert report["n_folds"] == 3
    for fold in report["folds"]:
        held = set(fold["held_out"])
        assert held.isdisjoint(fold["train"]) and held.isdisjoint(fold["selection"])
        assert len(fold["train"]) == 2 and len(fold["selection"]) == 2
        # at most rest 180 s + task 60 s = 48 windows per subject, less the 12 of the baseline minute: both
        # kinds are scored on the same windows and neither scores the baseline
        n = {kind: fold[kind]["eeg,ecg"]["n_windows"] for kind in ("uncalibrated", "calibrated")}
        assert n["uncalibrated"] == n["calibrated"]
        assert 2 * 12 < n["calibrated"] <= 2 * (48 - 12)
    summary = report["summary"]
    assert set(summary) == {"uncalibrated", "calibrated"}
    assert 0.0 <= summary["calibrated"]["eeg,ecg"]["mean_over_folds"]["auroc"] <= 1.0
    # a second run reuses the fold models (resumable) and writes the same report
    out = tmp_path / "cv.json"
    assert main(["--data", str(data), "--out", str(tmp_path / "cv"), "--json", str(out), "--fold-size", "2",
                 "--epochs", "1", "--cache", str(tmp_path / "cache")]) == 0
    again = json.loads(out.read_text())
    assert [f["weights_sha256"] for f in again["folds"]] == [f["weights_sha256"] for f in report["folds"]]
