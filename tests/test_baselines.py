"""The classical baseline: features on synthetic signals, calibration windows, and a real trained model folder."""

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
from rt_physio.nn.baseline import BaselineModel
from rt_physio.nn.registry import load_model, save_model
from rt_physio.training.baselines import band_powers, detect_r_peaks, hrv, window_features
from rt_physio.training.calibration import (
    baseline_mask,
    baseline_statistics,
    center_by_subject,
    center_features,
    population_fallback,
)
from rt_physio.training.datasets.base import PreparedRecording, WindowDataset

FS = 200.0


def synthetic_ecg(bpm: float, seconds: float, fs: float, *, polarity: float = 1.0, noise_mv: float = 0.05,
                  seed: int = 0) -> np.ndarray:
    """A PQRST train in mV (Gaussian waves), baseline wander and white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * fs)) / fs
    x = np.zeros_like(t)
    waves = ((-0.2, 0.025, 0.15), (-0.03, 0.01, -0.1), (0.0, 0.012, 1.2), (0.03, 0.01, -0.25), (0.25, 0.04, 0.3))
    for beat in np.arange(0.3, seconds, 60.0 / bpm):
        for offset, width, amp in waves:  # P, Q, R, S, T
            x += amp * np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
    wander = 0.2 * np.sin(2 * np.pi * 0.3 * t)
    return polarity * x + wander + noise_mv * rng.standard_normal(t.size)


def test_a_10_hz_sine_puts_its_power_in_alpha() -> None:
    t = np.arange(int(10 * FS)) / FS
    x = np.stack([np.sin(2 * np.pi * 10 * t), 3.0 * np.sin(2 * np.pi * 10.3 * t)])
    absolute, relative = band_powers(x, FS)
    assert relative.shape == (2, 5)
    assert np.all(relative[:, 2] > 0.9)  # alpha
    # a sine of amplitude A has power A² / 2, all of it in the alpha band
    np.testing.assert_allclose(absolute[:, 2], [0.5, 4.5], rtol=0.05)


@pytest.mark.parametrize("polarity", [1.0, -1.0])
@pytest.mark.parametrize("fs", [200.0, 500.0])
def test_synthetic_ecg_at_72_bpm_gives_72_bpm(polarity: float, fs: float) -> None:
    for seed in range(5):
        ecg = synthetic_ecg(72.0, 5.0, fs, polarity=polarity, seed=seed)
        result = hrv(ecg, fs)
        assert result is not None
        hr, sdnn, rmssd = result
        assert abs(hr - 72.0) <= 1.0
        assert sdnn < 20 and rmssd < 20  # a perfectly regular train: only sampling jitter
        peaks = detect_r_peaks(ecg, fs)
        # each detection sits on the R wave (within 10 ms), whatever the polarity
        r_times = np.arange(0.3, 5.0, 60.0 / 72.0)
        assert np.all(np.min(np.abs(peaks[:, None] / fs - r_times[None, :]), axis=1) <= 0.01)


def test_noise_only_ecg_gives_none(data_dir: Path) -> None:
    assert hrv(np.zeros(int(5 * FS)), FS) is None
    # white noise can line up like beats by chance, rarely: at most 1 % of 500 windows
    rng = np.random.default_rng(1)
    accepted = sum(hrv(rng.standard_normal(int(5 * FS)), FS) is not None for _ in range(500))
    assert accepted <= 5
    # a real noise lead: EEGMAT Subject13_1's ECG has no R peaks (dataset manifest)
    import pyedflib

    reader = pyedflib.EdfReader(str(data_dir / "eegmat" / "Subject13_1.edf"))
    try:
        i = reader.getSignalLabels().index("ECG ECG")
        x, fs = reader.readSignal(i), reader.getSampleFrequency(i)
    finally:
        reader.close()
    n = int(5 * fs)
    results = [hrv(x[k:k + n], fs) for k in range(0, x.size - n + 1, n)]
    assert len(results) == 36 and all(r is None for r in results)


def test_multi_lead_ecg_uses_a_plausible_lead() -> None:
    rng = np.random.default_rng(2)
    leads = np.stack([rng.standard_normal(int(5 * FS)), synthetic_ecg(60.0, 5.0, FS, polarity=-1.0)])
    result = hrv(leads, FS)
    assert result is not None and abs(result[0] - 60.0) <= 1.0


def test_window_features_layout_and_absent_blocks() -> None:
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((4, 5, 200)).astype(np.float32)
    ecg = synthetic_ecg(72.0, 5.0, FS).reshape(1, 5, 200)
    feats, present = window_features(eeg, ecg, FS)
    assert feats.shape == (4 * 5 * 2 + 3,) and feats.dtype == np.float32
    np.testing.assert_array_equal(present, [1, 1])
    assert abs(feats[-3] - 72.0) <= 1.0
    # relative powers of each channel sum to 1 over the five contiguous bands
    per_channel = feats[:-3].reshape(4, 10)
    np.testing.assert_allclose(per_channel[:, 5:].sum(axis=1), 1.0, rtol=1e-4)
    feats, present = window_features(None, rng.standard_normal((1, 5, 200)), FS, n_eeg_channels=4)
    np.testing.assert_array_equal(present, [0, 0])
    assert not feats.any()
    _, present = window_features(np.zeros((4, 5, 200)), None, FS)
    np.testing.assert_array_equal(present, [0, 0])  # a flat EEG window carries nothing


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
    rc = main(["train", "baseline", "--dataset", "eegmat", "--data", str(data), "--out", str(out), "--calibrate", "30",
               "--cache", str(root / "cache")], out=buf)
    assert rc == 0, buf.getvalue()
    assert "validation calibrated" in buf.getvalue()
    return out


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
    assert isinstance(loaded.module, BaselineModel)
    assert spec.calibration is not None and spec.calibration.seconds == 30.0 and spec.calibration.expects
    assert spec.calibration.level == "features"
    assert len(spec.channels["eeg"]) == 20
    metrics = spec.provenance["validation_metrics"]
    assert {"uncalibrated", "calibrated"} <= set(metrics)
    assert set(metrics["calibrated"]) == {"eeg,ecg", "eeg", "ecg"}
    assert loaded.module.calibration_fallback.abs().sum() > 0


def test_cross_validation_scores_every_subject_once(trained: Path, data_dir: Path) -> None:
    from rt_physio.errors import ConfigError
    from rt_physio.training.train_baseline import cross_validate, load_feature_table

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
    from rt_physio.training.train_baseline import load_feature_table

    table = load_feature_table(data_dir / "eegmat", [28], cache=cache)
    batch = table.windows.batch(np.arange(30, 42))  # rest and task windows of Subject28
    return torch.from_numpy(batch.inputs["eeg"]), torch.from_numpy(batch.inputs["ecg"])


def test_round_trip_and_features_plus_classify_equal_forward(trained: Path, data_dir: Path,
                                                             tmp_path: Path) -> None:
    loaded = load_model(trained)
    model = loaded.module
    assert isinstance(model, BaselineModel) and model.traceable is False
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
