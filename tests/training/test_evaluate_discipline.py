"""``rt-physio evaluate`` refuses to score a model's training and selection subjects unless told to, then warns."""

from __future__ import annotations

import io
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from rt_physio.cli import main
from rt_physio.errors import ConfigError
from rt_physio.nn import _toml
from rt_physio.nn.registry import load_model
from rt_physio.training.evaluate import evaluate
from tests.conftest import REPO_ROOT
from tests.training.conftest import eegmat_subset


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, eegmat_dir: Path) -> tuple[Path, Path]:
    """The classical model folder, its provenance saying it trained on Subject00 and selected on Subject01."""
    root = tmp_path_factory.mktemp("guard")
    model = root / "guarded"
    shutil.copytree(REPO_ROOT / "models" / "eegmat-baseline", model)
    spec = tomllib.loads((model / "model.toml").read_text())
    spec["name"] = "guarded"
    spec["provenance"]["training_subjects"] = ["Subject00"]
    spec["provenance"]["selection_subjects"] = ["Subject01"]
    (model / "model.toml").write_text(_toml.dumps(spec, header="test copy"))
    return model, eegmat_subset(eegmat_dir, root / "data", [0, 1, 2])


def test_refuses_training_and_selection_subjects_by_name(guarded, tmp_path: Path) -> None:
    model, data = guarded
    with pytest.raises(ConfigError, match=r"Subject00, Subject01.*--include-training-subjects"):
        evaluate(model, data, cache=tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"Subject01"):
        evaluate(model, data, subjects=["Subject01"], cache=tmp_path / "cache")


def test_scores_held_out_subjects_without_warning(guarded, tmp_path: Path) -> None:
    model, data = guarded
    report = evaluate(model, data, subjects=["Subject02"], cache=tmp_path / "cache")
    assert report["eeg,ecg"]["subjects"] == ["Subject02"]
    assert all("warning" not in entry for entry in report.values())


def test_include_training_subjects_scores_them_and_warns(guarded, tmp_path: Path) -> None:
    model, data = guarded
    out, report_file = io.StringIO(), tmp_path / "r.json"
    rc = main(["evaluate", "--model", str(model), "--data", str(data), "--subjects", "00,02",
               "--include-training-subjects", "--json", str(report_file), "--cache", str(tmp_path / "cache")],
              out=out)
    assert rc == 0
    assert "WARNING: NOT a held-out estimate" in out.getvalue() and "Subject00" in out.getvalue()
    report = json.loads(report_file.read_text())
    for entry in report.values():
        assert entry["training_subjects_scored"] == ["Subject00"]
        assert "Subject00" in entry["warning"]


def test_a_smoothing_model_is_scored_on_its_running_means_and_says_so(tmp_path: Path, eegmat_dir: Path) -> None:
    """``outputs.smoothing_s`` changes what is scored exactly as it changes what ``run`` publishes."""
    model = tmp_path / "smoothing"
    shutil.copytree(REPO_ROOT / "models" / "eegmat-fusion", model)
    spec = tomllib.loads((model / "model.toml").read_text())
    spec["name"] = "smoothing"
    spec["outputs"]["smoothing_s"] = 30.0
    spec["provenance"]["training_subjects"] = spec["provenance"]["selection_subjects"] = []
    (model / "model.toml").write_text(_toml.dumps(spec, header="test copy"))
    data = eegmat_subset(eegmat_dir, tmp_path / "data", [3, 4])
    own = evaluate(model, data, cache=tmp_path / "cache")
    off = evaluate(model, data, cache=tmp_path / "cache", smoothing=0.0)
    assert own["eeg,ecg"]["smoothing_s"] == 30.0 and off["eeg,ecg"]["smoothing_s"] == 0.0
    assert own["eeg,ecg"]["n_windows"] == off["eeg,ecg"]["n_windows"]
    assert own["eeg,ecg"]["auroc"] != off["eeg,ecg"]["auroc"]
    # the shipped model (same weights) is scored with its own span, and window by window on request
    shipped = REPO_ROOT / "models" / "eegmat-fusion"
    own_span = load_model(shipped).spec.smoothing_s
    assert own_span > 0
    as_shipped = evaluate(shipped, data, cache=tmp_path / "cache", include_training_subjects=True)
    assert as_shipped["eeg,ecg"]["smoothing_s"] == own_span
    per_window = evaluate(shipped, data, cache=tmp_path / "cache", include_training_subjects=True, smoothing=0.0)
    assert per_window["eeg,ecg"]["auroc"] == off["eeg,ecg"]["auroc"]
