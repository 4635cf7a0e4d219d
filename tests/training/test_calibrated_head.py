"""A calibrated head on a fusion model, and ``rt-physio evaluate --calibrate``: real EEGMAT subjects, tiny model."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from rt_physio.cli import main
from rt_physio.nn import FusionModel, load_model, save_model
from rt_physio.nn.calibration import is_calibratable
from rt_physio.training.evaluate import evaluate
from tests.conftest import REPO_ROOT
from tests.training.conftest import eegmat_subset


def _tiny_eegmat_model(folder: Path) -> Path:
    spec = tomllib.loads((REPO_ROOT / "models" / "eegmat-deep" / "model.toml").read_text())  # the deep fusion model
    spec["name"] = folder.name
    for m in ("eeg", "ecg"):
        spec["architecture"][m].update(n_layer=1, dim_feedforward=32)
    spec["provenance"] = {"seed": 0, "data": "none: random weights for a test"}
    torch.manual_seed(0)
    save_model(folder, FusionModel.from_config(spec["architecture"]), spec, dtype=torch.float32)
    return folder


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, eegmat_dir: Path) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("cal")
    data = eegmat_subset(eegmat_dir, root / "data", [0, 1, 2, 28])
    source = _tiny_eegmat_model(root / "tiny")
    out = root / "tiny-cal"
    rc = main(["train", "calibrate-head", "--model", str(source), "--data", str(data), "--out", str(out),
               "--calibrate", "60", "--hidden", "8", "--epochs", "5", "--cache", str(root / "cache")])
    assert rc == 0
    return source, out, data


def test_calibrate_head_writes_a_calibratable_model_with_the_source_encoders(calibrated) -> None:
    source, out, _ = calibrated
    src, cal = load_model(source), load_model(out)
    assert is_calibratable(cal.module) and not is_calibratable(src.module)
    assert cal.spec.calibration is not None and cal.spec.calibration.seconds == 60.0
    assert cal.spec.calibration.expects and cal.spec.calibration.level == "embeddings"
    card = cal.spec.provenance["calibrated_head"]
    assert card["source_weights_sha256"] == src.sha256
    assert "Subject28" in card["validation_subjects"] and "Subject28" not in card["train_subjects"]
    # encoders and the uncalibrated head are the source's (fp16 storage: compare at fp16 precision)
    for name, tensor in src.module.state_dict().items():
        torch.testing.assert_close(cal.module.state_dict()[name], tensor.half().float(), rtol=0, atol=0)
    fallback = cal.module.calibration_fallback
    assert fallback.abs().sum() > 0  # the population baseline of the training subjects, not zeros


def test_evaluate_calibrate_never_scores_baseline_windows(calibrated, tmp_path: Path) -> None:
    _, out, data = calibrated
    cache = tmp_path / "cache"
    plain = evaluate(out, data, subjects=["28"], cache=cache)
    skipped = evaluate(out, data, subjects=["28"], cache=cache, skip_baseline=60.0)
    cal = evaluate(out, data, subjects=["28"], cache=cache, calibrate=60.0)
    # EEGMAT rest is 180 s: its first 60 s are twelve 5-s windows
    assert plain["eeg,ecg"]["n_windows"] - cal["eeg,ecg"]["n_windows"] == 12
    assert skipped["eeg,ecg"]["n_windows"] == cal["eeg,ecg"]["n_windows"]
    assert cal["eeg,ecg"]["calibration"] == {"seconds": 60.0, "calibrated": True, "baseline_windows": 12}
    assert skipped["eeg,ecg"]["calibration"]["calibrated"] is False
    assert cal["eeg,ecg"]["auroc"] != skipped["eeg,ecg"]["auroc"]  # a different head on centred features
    rc = main(["evaluate", "--model", str(out), "--data", str(data), "--subjects", "28", "--json",
               str(tmp_path / "r.json"), "--calibrate", "60", "--cache", str(cache)])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ecg"]["calibration"]["baseline_windows"] == 12


def test_evaluate_calibrate_needs_a_calibrated_model(calibrated, tmp_path: Path, capsys) -> None:
    source, _, data = calibrated
    rc = main(["evaluate", "--model", str(source), "--data", str(data), "--subjects", "28", "--json",
               str(tmp_path / "r.json"), "--calibrate", "60", "--cache", str(tmp_path / "c")])
    assert rc == 2
    assert "cannot be calibrated" in capsys.readouterr().err


def test_live_and_offline_centring_agree() -> None:
    from rt_physio.nn.calibration import Baseline
    from rt_physio.training.calibration import baseline_statistics, center_features

    rng = np.random.default_rng(0)
    mod = np.repeat([0, 1], 5)
    base_f, base_p = rng.normal(size=(7, 10)), rng.integers(0, 2, size=(7, 2))
    base_p[0] = 1
    live = Baseline(mod)
    live.add(base_f, base_p)
    mean, has = baseline_statistics(base_f, base_p, mod)
    x, p, fallback = rng.normal(size=(4, 10)), rng.integers(0, 2, size=(4, 2)), rng.normal(size=10)
    np.testing.assert_allclose(live.center(x, p, fallback), center_features(x, p, mod, mean, has, fallback),
                               rtol=1e-5, atol=1e-5)


def test_linear_calibrated_head_is_the_logistic_regression_it_fitted() -> None:
    from sklearn.linear_model import LogisticRegression

    from rt_physio.training.calibrated_head import LINEAR_C_GRID, _fit_linear_head

    rng = np.random.default_rng(0)
    n = 240
    labels = (rng.random(n) < 0.3).astype(np.float32)
    centred = rng.normal(0, 1, (n, 400)) + 3.0  # offset and scale that the folded standardisation must undo
    centred[:, :5] += 1.5 * labels[:, None]  # a few informative EEG features
    present = np.ones((n, 2), dtype=bool)
    train = np.arange(n) < 160
    x_tr, p_tr, y_tr = centred[train].astype(np.float32), present[train], labels[train]
    result = _fit_linear_head(centred, present, labels, x_tr, p_tr, y_tr, ~train, [("eeg", "ecg")],
                              np.zeros(400), seed=0)
    head = result.head
    assert len(head) == 1 and isinstance(head[0], torch.nn.Linear) and result.c in LINEAR_C_GRID
    z = np.concatenate([x_tr, p_tr.astype(np.float32)], axis=1).astype(np.float64)
    mean, scale = z.mean(axis=0), z.std(axis=0)
    scale[scale < 1e-8] = 1.0
    clf = LogisticRegression(C=result.c, class_weight="balanced", max_iter=5000, random_state=0)
    clf.fit((z - mean) / scale, y_tr.astype(int))
    with torch.no_grad():
        ours = head(torch.from_numpy(z.astype(np.float32)))[:, 0].numpy()
    np.testing.assert_allclose(ours, clf.decision_function((z - mean) / scale), atol=1e-3)
    assert result.validation["eeg,ecg"]["auroc"] > 0.8  # the informative features were found on held-out rows


def test_calibrate_head_default_is_linear_and_round_trips(calibrated, tmp_path: Path) -> None:
    source, _, data = calibrated
    out = tmp_path / "tiny-linear"
    rc = main(["train", "calibrate-head", "--model", str(source), "--data", str(data), "--out", str(out),
               "--calibrate", "60", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    cal = load_model(out)
    assert cal.spec.architecture["calibrated_head"] == {"hidden": 0}
    assert cal.module.calibrated_head is not None and len(cal.module.calibrated_head) == 1
    assert cal.spec.provenance["calibrated_head"]["head"].startswith("logistic regression")
    report = evaluate(out, data, subjects=["28"], cache=tmp_path / "cache", calibrate=60.0)
    assert 0.0 <= report["eeg,ecg"]["auroc"] <= 1.0


def test_calibrated_finetuning_trains_encoders_on_centred_embeddings(calibrated, tmp_path: Path) -> None:
    source, _, data = calibrated
    out = tmp_path / "tiny-ft"
    rc = main(["train", "calibrate-head", "--model", str(source), "--data", str(data), "--out", str(out),
               "--calibrate", "60", "--finetune-epochs", "2", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    src, tuned = load_model(source), load_model(out)
    card = tuned.spec.provenance["calibrated_head"]["finetune"]
    aurocs = card["validation_auroc_per_epoch"]
    assert len(aurocs) == 3 and len(card["loss_per_epoch"]) == 2  # epoch 0 is the head on the source encoders
    assert all(np.isfinite(v) and v > 0 for v in card["loss_per_epoch"])
    selected = card["selected_epoch"]
    assert aurocs[selected] == max(aurocs)
    name = "eeg_encoder.patch_embedding.proj_in.0.weight"
    changed = not torch.equal(tuned.module.state_dict()[name], src.module.state_dict()[name].half().float())
    assert changed == (selected > 0)  # the encoders moved only if a trained epoch was kept
    # the model still runs both ways: plain head on raw embeddings, calibrated head on centred ones
    plain = evaluate(out, data, subjects=["28"], cache=tmp_path / "cache", skip_baseline=60.0)
    cal = evaluate(out, data, subjects=["28"], cache=tmp_path / "cache", calibrate=60.0)
    assert plain["eeg,ecg"]["n_windows"] == cal["eeg,ecg"]["n_windows"] > 0
