"""load_cbramod_checkpoint: official-style .pth state dicts and safetensors, strict, with actionable errors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from rt_physio.errors import ModelError
from rt_physio.nn import CBraMod, load_cbramod_checkpoint


@pytest.fixture
def source(randomize: Callable[..., nn.Module]) -> CBraMod:
    model = randomize(CBraMod(n_layer=2), seed=21)
    assert isinstance(model, CBraMod)
    return model.eval()


def assert_same_model(a: CBraMod, b: CBraMod) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(1, 3, 4, 200)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("wrap", ["plain", "module_prefix", "state_dict", "model"])
def test_pth_round_trip(tmp_path: Path, source: CBraMod, wrap: str) -> None:
    state: object = source.state_dict()
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in source.state_dict().items()}
    elif wrap in ("state_dict", "model"):
        state = {wrap: source.state_dict(), "epoch": 3, "optimizer": {"lr": 1e-4}}
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    loaded = load_cbramod_checkpoint(path, CBraMod(n_layer=2))
    assert not loaded.training
    assert_same_model(source, loaded)


def test_safetensors_round_trip(tmp_path: Path, source: CBraMod) -> None:
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(path))
    assert_same_model(source, load_cbramod_checkpoint(path, CBraMod(n_layer=2)))


def test_default_model_is_the_official_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    official = CBraMod().eval()
    path = tmp_path / "pretrained_weights.pth"
    torch.save(official.state_dict(), path)
    loaded = load_cbramod_checkpoint(str(path))
    assert loaded.n_layer == 12
    assert_same_model(official, loaded)


def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path, source: CBraMod) -> None:
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in source.state_dict().items()}, path)
    loaded = load_cbramod_checkpoint(path, CBraMod(n_layer=2))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path, source: CBraMod) -> None:
    state = source.state_dict()
    del state["encoder.layers.1.norm2.bias"]
    state["encoder.layers.2.norm1.weight"] = torch.ones(200)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as info:
        load_cbramod_checkpoint(path, CBraMod(n_layer=2))
    msg = str(info.value)
    assert str(path) in msg
    assert "1 missing keys: encoder.layers.1.norm2.bias" in msg
    assert "1 unexpected keys: encoder.layers.2.norm1.weight" in msg


def test_shape_mismatches_are_listed(tmp_path: Path, source: CBraMod) -> None:
    state = source.state_dict()
    state["encoder.layers.0.linear1.weight"] = torch.zeros(512, 200)
    path = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(state, str(path))
    with pytest.raises(ModelError, match=r"encoder\.layers\.0\.linear1\.weight: checkpoint \(512, 200\), model"):
        load_cbramod_checkpoint(path, CBraMod(n_layer=2))


def test_wrong_depth_lists_first_keys_and_count(tmp_path: Path, source: CBraMod) -> None:
    path = tmp_path / "two_layers.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(ModelError) as info:
        load_cbramod_checkpoint(path)  # 12-layer model, 2-layer checkpoint
    msg = str(info.value)
    assert "160 missing keys: encoder.layers.2.self_attn_s.in_proj_weight" in msg
    assert "(155 more)" in msg
    assert "unexpected" not in msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(ModelError, match=r"nope\.pth: checkpoint file not found"):
        load_cbramod_checkpoint(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_garbage_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(ModelError, match=f"garbage{suffix}"):
        load_cbramod_checkpoint(path)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"w": Path("/")}, fh)  # a global weights_only does not allow
    with pytest.raises(ModelError, match=r"evil\.pth: not a PyTorch checkpoint that can be loaded safely"):
        load_cbramod_checkpoint(path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"a": 1}, {}])
def test_not_a_state_dict(tmp_path: Path, content: object) -> None:
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(ModelError, match=r"other\.pth: the checkpoint does not hold a state dict"):
        load_cbramod_checkpoint(path)
