from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from rt_physio.cli import main
from rt_physio.errors import ModelError
from rt_physio.nn import CBraMod, FusionModel, load_model
from rt_physio.nn.masking import dual_mask, masked_mse
from rt_physio.training.checkpoint import load_training_state, save_training_state
from rt_physio.training.common import forward_present, load_encoder_init

from .conftest import eegmat_subset

TINY = ["--eeg-layers", "1", "--ecg-layers", "1", "--eeg-ff", "32", "--ecg-ff", "32", "--head-hidden", "16"]


def test_a_pretraining_step_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = CBraMod(n_layer=1, dim_feedforward=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t = torch.arange(200) / 200.0
    x = torch.sin(2 * torch.pi * 5 * t).expand(2, 3, 3, 200) * torch.linspace(0.5, 2, 3)[None, :, None, None]
    mask = dual_mask((2, 3, 3), 0.5, 0.3, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(10):
        loss = masked_mse(model(x, mask=mask), x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_finetuning_step_lowers_the_loss_with_missing_modalities() -> None:
    torch.manual_seed(0)
    model = FusionModel(CBraMod(n_layer=1, dim_feedforward=16), CBraMod(n_layer=1, dim_feedforward=16), 1,
                        hidden=16, dropout=0.0)
    inputs = {"eeg": torch.randn(8, 2, 1, 200), "ecg": torch.randn(8, 1, 1, 200)}
    present = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]] * 2, dtype=torch.bool)
    labels = torch.tensor([[0.0], [1.0]] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(forward_present(model, inputs, present), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # rows with one modality give what FusionModel.forward gives with the other left out
    model.eval()
    with torch.no_grad():
        rows = forward_present(model, inputs, present)
        torch.testing.assert_close(rows[1:2], model(eeg=inputs["eeg"][1:2]))
        torch.testing.assert_close(rows[2:3], model(ecg=inputs["ecg"][2:3]))
        torch.testing.assert_close(rows[0:1], model(eeg=inputs["eeg"][0:1], ecg=inputs["ecg"][0:1]))


def test_training_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CBraMod(n_layer=1, dim_feedforward=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 2, 2, 200)).sum().backward()
    opt.step()
    save_training_state(tmp_path / "s.safetensors", model, opt, epoch=3, step=7, record={"losses": [1.0, 0.5]})
    model2 = CBraMod(n_layer=1, dim_feedforward=16)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    state = load_training_state(tmp_path / "s.safetensors", model2, opt2)
    assert (state.epoch, state.step, state.record) == (3, 7, {"losses": [1.0, 0.5]})
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    key = next(iter(opt.state_dict()["state"]))
    s1, s2 = opt.state_dict()["state"][key], opt2.state_dict()["state"][key]
    torch.testing.assert_close(s1["exp_avg"], s2["exp_avg"])
    with pytest.raises(ModelError, match="weights do not match"):
        load_training_state(tmp_path / "s.safetensors", CBraMod(n_layer=2, dim_feedforward=16), None)


def test_finetune_then_evaluate_through_the_cli(eegmat_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = eegmat_subset(eegmat_dir, tmp_path / "eegmat", [2, 5, 28])
    out = tmp_path / "models" / "tiny-fusion"
    buf = io.StringIO()
    rc = main(["train", "finetune", "--dataset", "eegmat", "--data", str(data), "--out", str(out),
               "--train-subjects", "2,5", "--val-subjects", "28", "--epochs", "1", "--max-train-windows", "24",
               "--batch-size", "8", "--train-hop", "5", "--threads", "1", "--cache", str(cache_dir), "--no-progress",
               *TINY], out=buf)
    assert rc == 0, buf.getvalue()
    assert "epoch 1" in buf.getvalue()
    loaded = load_model(out)
    spec = loaded.spec
    assert spec.trained and spec.outputs == ("mental_workload",)
    assert spec.modalities == ("eeg", "ecg")
    assert spec.channels == {"eeg": (), "ecg": ()}
    assert spec.provenance["split"]["validation"] == ["Subject28"]
    assert "auroc" in spec.provenance["validation_metrics"]["eeg,ecg"]
    assert not list(out.glob("*state*"))  # checkpoints removed once the model is written

    report_file = tmp_path / "eval.json"
    rc = main(["evaluate", "--model", str(out), "--data", str(data), "--json", str(report_file),
               "--cache", str(cache_dir)], out=io.StringIO())
    assert rc == 0
    report = json.loads(report_file.read_text())
    assert list(report) == ["eeg,ecg", "eeg", "ecg"]
    for entry in report.values():
        assert {"n_windows", "balanced_accuracy", "f1", "auroc", "auc_pr", "per_subject"} <= set(entry)
        assert set(entry["per_subject"]) == {"Subject02", "Subject05", "Subject28"}
    # 3 subjects x (36 rest + 12 task); Subject02_1's ECG is unusable, so ECG-only scores 36 fewer windows
    assert report["eeg,ecg"]["n_windows"] == 144
    assert report["eeg"]["n_windows"] == 144
    assert report["ecg"]["n_windows"] == 108
    assert report["eeg"]["per_subject"]["Subject28"]["n_windows"] == 48

    rc = main(["evaluate", "--model", str(out), "--data", str(data), "--json", str(tmp_path / "e2.json"),
               "--modalities", "ecg", "--subjects", "28", "--cache", str(cache_dir)], out=io.StringIO())
    assert rc == 0
    only = json.loads((tmp_path / "e2.json").read_text())
    assert list(only) == ["ecg"] and only["ecg"]["n_windows"] == 48


def test_evaluate_bad_inputs(eegmat_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["evaluate", "--model", "untrained-demo", "--data", str(empty), "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "no usable EEGMAT recordings" in capsys.readouterr().err
    rc = main(["evaluate", "--model", "untrained-demo", "--data", str(eegmat_dir), "--json",
               str(tmp_path / "x.json"), "--subjects", "31"])
    assert rc == 2
    assert "predicts ['arousal', 'valence', 'dominance']" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_fusion_offset_moves_only_the_fusion_rows() -> None:
    from rt_physio.training.decision import offset_fusion_logit, threshold_to_offset

    torch.manual_seed(0)
    model = FusionModel(CBraMod(n_layer=1, dim_feedforward=16), CBraMod(n_layer=1, dim_feedforward=16), 1,
                        hidden=8).eval()
    delta = threshold_to_offset(0.2)
    shifted = offset_fusion_logit(model, delta)
    eeg, ecg = torch.randn(3, 2, 1, 200), torch.randn(3, 1, 1, 200)
    with torch.no_grad():
        torch.testing.assert_close(shifted(eeg=eeg), model(eeg=eeg), rtol=0, atol=0)
        torch.testing.assert_close(shifted(ecg=ecg), model(ecg=ecg), rtol=0, atol=0)
        torch.testing.assert_close(shifted(eeg=eeg, ecg=ecg), model(eeg=eeg, ecg=ecg) + delta)
        p = torch.sigmoid(model(eeg=eeg, ecg=ecg))
        q = torch.sigmoid(shifted(eeg=eeg, ecg=ecg))
        assert torch.equal(p >= 0.2, q >= 0.5)


def test_bad_init_checkpoint_lists_the_mismatches(tmp_path: Path) -> None:
    import safetensors.torch

    state = CBraMod(n_layer=1, dim_feedforward=16).state_dict()
    state["encoder.layers.0.linear1.weight"] = torch.zeros(3, 3)
    del state["proj_out.0.bias"]
    path = tmp_path / "broken.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ModelError, match=r"broken\.safetensors.*missing keys: proj_out\.0\.bias"):
        load_encoder_init(path)
    with pytest.raises(ModelError, match="not a pre-trained encoder folder"):
        load_encoder_init(tmp_path)


def test_encoder_folders_are_not_listed_as_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from rt_physio.nn import list_models

    (tmp_path / "models" / "my-ecg-encoder").mkdir(parents=True)
    (tmp_path / "models" / "my-ecg-encoder" / "encoder.json").write_text("{}")
    (tmp_path / "models" / "encoders" / "eeg-half").mkdir(parents=True)  # a folder of encoders
    (tmp_path / "models" / "encoders" / "eeg-half" / "encoder.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING"):
        names = [s.name for s in list_models()]
    assert "my-ecg-encoder" not in names and "encoders" not in names
    assert "eegmat-fusion" in names
    assert "Skipping" not in caplog.text
