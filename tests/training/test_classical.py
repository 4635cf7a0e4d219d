"""The classical model: calibration windows and a real trained model folder."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rt_physio.cli import main
from rt_physio.errors import ModelError
from rt_physio.nn.classical import ClassicalModel
from rt_physio.nn.registry import load_model, save_model
from rt_physio.training.calibration import (
    baseline_mask,
    baseline_statistics,
    center_by_subject,
    center_features,
    population_fallback,
)
from rt_physio.training.datasets.prepare import PreparedRecording
from rt_physio.training.datasets.windows import WindowDataset


def _windows() -> WindowDataset:
    def rec(subject: str, name: str, condition: str, seconds: int) -> PreparedRecording:
        n = seconds * 200
        return PreparedRecording(subject, name, condition, {"y": float(condition == "task")},
                                 {"eeg": np.zeros((2, n), np.float32), "ecg": np.zeros((1, n), np.float32)})

    recs = [rec("A", "A_1", "rest", 40), rec("A", "A_2", "task", 30), rec("B", "B_1", "rest", 12),
            rec("B", "B_2", "task", 40)]
    return WindowDataset(recs, ["y"], window_s=5.0, hop_s=5.0)


@pytest.mark.parametrize("seconds", [0.0, 4.9, 5.0, 12.0, 20.0, 60.0])
def test_baseline_mask_marks_only_the_start_of_rest(seconds: float) -> None:
    windows = _windows()
    mask = baseline_mask(windows, seconds)
    ends = windows.starts + 5.0
    assert not np.any(mask & (windows.conditions != "rest"))
    assert not np.any(mask & (ends > seconds))
    # and it marks every rest window that ends in time
    np.testing.assert_array_equal(mask, (windows.conditions == "rest") & (ends <= seconds))
    with pytest.raises(ValueError, match="seconds"):
        baseline_mask(windows, -1.0)


def test_center_features_uses_only_baseline_windows() -> None:
    rng = np.random.default_rng(4)
    modality = np.array([0, 0, 0, 1, 1, -1])
    n = 12
    feats = rng.normal(size=(n, 6))
    present = np.ones((n, 2))
    present[9:, 1] = 0  # last windows have no ECG block
    feats[9:, 3:5] = 0.0
    subjects = np.array(["A"] * n, dtype=object)
    is_base = np.zeros(n, bool)
    is_base[:4] = True
    centred, baselines = center_by_subject(feats, present, subjects, is_base, modality)
    mean = feats[:4].mean(axis=0)
    np.testing.assert_allclose(centred[4:9, :5], feats[4:9, :5] - mean[:5])
    np.testing.assert_allclose(centred[:, 5], feats[:, 5])  # -1: never centred
    np.testing.assert_allclose(centred[9:, 3:5], 0.0)  # an absent block stays zeros
    # changing the non-baseline windows does not move the baseline
    changed = feats.copy()
    changed[4:] += 100.0
    again, _ = center_by_subject(changed, present, subjects, is_base, modality)
    np.testing.assert_allclose(again[:4], centred[:4])
    np.testing.assert_allclose(baselines["A"][0][:5], mean[:5])

    # a block the baseline lacks is centred on the fallback instead
    no_ecg = present.copy()
    no_ecg[:4, 1] = 0
    base_mean, has = baseline_statistics(feats[:4], no_ecg[:4], modality)
    np.testing.assert_array_equal(has, [True, False])
    fallback = np.arange(6.0)
    out = center_features(feats[4:9], no_ecg[4:9], modality, base_mean, has, fallback)
    np.testing.assert_allclose(out[:, 3:5], feats[4:9, 3:5] - fallback[3:5])
    np.testing.assert_allclose(out[:, :3], feats[4:9, :3] - mean[:3])
    subjects_baselines = {"A": (np.ones(6), np.array([True, False])), "B": (3 * np.ones(6), np.array([True, True]))}
    pop = population_fallback(subjects_baselines, modality)
    np.testing.assert_allclose(pop, [2, 2, 2, 3, 3, 0])


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline trained on three real EEGMAT subjects (00, 01 train; 28 validation) through the CLI."""
    root = tmp_path_factory.mktemp("baseline")
    data = root / "eegmat"
    data.mkdir()
    for s in (0, 1, 28):
        for k in (1, 2):
            name = f"Subject{s:02d}_{k}.edf"
            assert (data_dir / "eegmat" / name).is_file(), f"EEGMAT file {name} missing from {data_dir / 'eegmat'}"
            (data / name).symlink_to(data_dir / "eegmat" / name)
    out = root / "models" / "tiny-baseline"
    buf = io.StringIO()
    rc = main(["train", "classical", "--dataset", "eegmat", "--data", str(data), "--out", str(out), "--calibrate", "30",
               "--cache", str(root / "cache")], out=buf)
    assert rc == 0, buf.getvalue()
    assert "validation calibrated" in buf.getvalue()
    return out


def test_train_baseline_is_the_former_name_of_train_classical() -> None:
    from rt_physio.cli import build_parser

    argv = ["--dataset", "eegmat", "--data", "d", "--out", "o", "--calibrate", "30"]
    new, old = (build_parser().parse_args(["train", step, *argv]) for step in ("classical", "baseline"))
    assert new.handler is old.handler
    assert {k: v for k, v in vars(new).items() if k != "train_command"} == {
        k: v for k, v in vars(old).items() if k != "train_command"}


def test_trained_folder_has_no_pickle_and_declares_calibration(trained: Path) -> None:
    assert sorted(p.name for p in trained.iterdir()) == ["model.toml", "weights.safetensors"]
    raw = (trained / "weights.safetensors").read_bytes()
    assert raw[8:9] == b"{"  # safetensors: an 8-byte length, a JSON header, then raw tensors (no pickle opcodes)
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert {"lr.eeg_ecg.coef", "lr.ecg.mean", "cal.eeg.scale", "cal.eeg_ecg.intercept", "calibration_fallback",
            "feature_modality"} <= set(header)
    loaded = load_model(trained)
    spec = loaded.spec
    assert isinstance(loaded.module, ClassicalModel)
    assert spec.calibration is not None and spec.calibration.seconds == 30.0 and spec.calibration.expects
    assert spec.calibration.level == "features"
    assert len(spec.channels["eeg"]) == 20
    metrics = spec.provenance["validation_metrics"]
    assert {"uncalibrated", "calibrated"} <= set(metrics)
    assert set(metrics["calibrated"]) == {"eeg,ecg", "eeg", "ecg"}
    assert loaded.module.calibration_fallback.abs().sum() > 0


def test_cross_validation_scores_every_subject_once(trained: Path, data_dir: Path) -> None:
    from rt_physio.errors import ConfigError
    from rt_physio.training.classical.crossval import cross_validate
    from rt_physio.training.classical.features import load_feature_table

    table = load_feature_table(data_dir / "eegmat", [0, 1, 28], cache=trained.parent.parent / "cache")
    with pytest.raises(ConfigError, match="at least 9 subjects"):
        cross_validate(table, fold_size=4)
    cv = cross_validate(table, fold_size=1, calibrate=30.0, grid=(0.1, 1.0))
    assert [f["subjects"] for f in cv["folds"]] == [["Subject00"], ["Subject01"], ["Subject28"]]
    pooled = cv["summary"]["uncalibrated"]["eeg"]["pooled"]
    assert pooled["n_windows"] == len(table.labels)  # every window held out exactly once
    calibrated = cv["summary"]["calibrated"]["eeg"]["pooled"]
    n_base = int(baseline_mask(table.windows, 30.0).sum())
    assert n_base == 3 * 6 and calibrated["n_windows"] == len(table.labels) - n_base


def _real_windows(data_dir: Path, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from rt_physio.training.classical.features import load_feature_table

    table = load_feature_table(data_dir / "eegmat", [28], cache=cache)
    batch = table.windows.batch(np.arange(30, 42))  # rest and task windows of Subject28
    return torch.from_numpy(batch.inputs["eeg"]), torch.from_numpy(batch.inputs["ecg"])


def test_round_trip_and_features_plus_classify_equal_forward(trained: Path, data_dir: Path,
                                                             tmp_path: Path) -> None:
    loaded = load_model(trained)
    model = loaded.module
    assert isinstance(model, ClassicalModel) and model.traceable is False
    eeg, ecg = _real_windows(data_dir, trained.parent.parent / "cache")
    with torch.no_grad():
        out = model(eeg=eeg, ecg=ecg)
        feats, present = model.features(eeg, ecg)
        assert feats.shape == (12, 203) and feats.dtype == torch.float32 and present.shape == (12, 2)
        torch.testing.assert_close(model.classify(feats, present), out, rtol=0, atol=0)
        torch.testing.assert_close(model.head(feats, present), out, rtol=0, atol=0)
        assert not torch.equal(model.classify(feats, present, calibrated=True), out)
        eeg_only = model(eeg=eeg)
        assert not torch.equal(eeg_only, out)
    assert out.shape == (12, 1) and torch.isfinite(out).all()
    assert model.feature_modality.tolist() == [0] * 200 + [1] * 3

    copy = tmp_path / "tiny-baseline"
    fields = {k: v for k, v in _toml_fields(trained).items() if k != "name"}
    sha = save_model(copy, model, fields, dtype=torch.float32)
    assert sha == loaded.sha256  # same tensors, same bytes
    again = load_model(copy).module
    with torch.no_grad():
        torch.testing.assert_close(again(eeg=eeg, ecg=ecg), out, rtol=0, atol=0)


def _toml_fields(folder: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads((folder / "model.toml").read_text())


def test_load_model_refuses_modified_weights(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny-baseline"
    copy.mkdir()
    (copy / "model.toml").write_text((trained / "model.toml").read_text())
    raw = bytearray((trained / "weights.safetensors").read_bytes())
    raw[-1] ^= 0x01  # one bit of one parameter
    (copy / "weights.safetensors").write_bytes(bytes(raw))
    assert hashlib.sha256(raw).hexdigest() != load_model(trained).sha256
    with pytest.raises(ModelError, match="sha256"):
        load_model(copy)


def test_baseline_spec_requires_the_channel_names(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny-baseline"
    copy.mkdir()
    text = (trained / "model.toml").read_text()
    start = text.index("[inputs.eeg]")
    end = text.index("[inputs.ecg]")
    (copy / "model.toml").write_text(text[:start] + '[inputs.eeg]\nchannels = ["Fp1", "Fp2"]\n\n' + text[end:])
    (copy / "weights.safetensors").write_bytes((trained / "weights.safetensors").read_bytes())
    with pytest.raises(ModelError, match=r"inputs\.eeg\.channels"):
        load_model(copy)
    model = load_model(trained).module
    with pytest.raises(ValueError, match="channels"):
        model(eeg=torch.zeros(1, 19, 5, 200))
