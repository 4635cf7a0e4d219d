"""Weights holding NaN or infinite values are refused at load, with the file and the tensors named."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from rt_physio.cli import main
from rt_physio.errors import ModelError
from rt_physio.nn import CBraMod, load_cbramod_checkpoint, load_model, save_model
from tests.nn.test_registry import build, fields


def _save_with(folder: Path, poison: float, dtype: torch.dtype = torch.float32) -> str:
    module = build(fields())
    with torch.no_grad():
        module.state_dict()["head.0.weight"].view(-1)[:3] = poison
    save_model(folder, module, fields(folder.name), dtype=dtype)
    return "head.0.weight"


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_weights_are_refused_naming_the_file_and_tensor(tmp_path: Path, poison: float) -> None:
    name = _save_with(tmp_path / "bad", poison)
    with pytest.raises(ModelError) as info:
        load_model(tmp_path / "bad")
    message = str(info.value)
    assert str(tmp_path / "bad" / "weights.safetensors") in message
    assert f"1 weight tensor(s) hold NaN or infinite values: {name} (3 of " in message


def test_values_that_overflow_float16_when_saved_are_refused(tmp_path: Path) -> None:
    name = _save_with(tmp_path / "big", 1e6, dtype=torch.float16)  # float16 tops out at 65504: stored as inf
    with pytest.raises(ModelError, match=f"hold NaN or infinite values: {name} \\(3 of .*overflowed float16"):
        load_model(tmp_path / "big")


def test_finite_weights_still_load(tmp_path: Path) -> None:
    _save_with(tmp_path / "ok", 1e3)
    assert load_model(tmp_path / "ok").spec.name == "ok"


def test_a_cbramod_checkpoint_with_nan_is_refused(tmp_path: Path) -> None:
    model = CBraMod(d_model=200, dim_feedforward=32, seq_len=30, n_layer=1, nhead=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(iter(k for k, v in state.items() if v.is_floating_point()))
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(state, str(path))
    with pytest.raises(ModelError, match=f"{key} \\(1 of "):
        load_cbramod_checkpoint(path, CBraMod(d_model=200, dim_feedforward=32, seq_len=30, n_layer=1, nhead=8))


def test_rt_physio_run_exits_2_naming_the_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _save_with(tmp_path / "bad", float("nan"))
    assert main(["run", "--model", str(tmp_path / "bad"), "--eeg", "synthetic", "--ecg", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rt-physio: error: ") and "Traceback" not in err
    assert name in err
