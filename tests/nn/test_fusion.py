"""FusionModel: either or both modalities, any channel count, pooling, presence flags, config parsing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rt_physio.nn import CBraMod, FusionModel

SMALL = {"d_model": 200, "dim_feedforward": 64, "seq_len": 30, "n_layer": 1, "nhead": 8}


def make(eeg: bool = True, ecg: bool = True, n_outputs: int = 3, seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    return FusionModel(
        CBraMod(n_layer=1, dim_feedforward=64) if eeg else None,
        CBraMod(n_layer=1, dim_feedforward=64) if ecg else None,
        n_outputs=n_outputs,
    ).eval()


def head_input(model: FusionModel, eeg: Tensor | None, ecg: Tensor | None) -> Tensor:
    captured: list[Tensor] = []
    handle = model.head.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))
    with torch.no_grad():
        model(eeg, ecg)
    handle.remove()
    return captured[0]


@pytest.mark.parametrize(("eeg_c", "ecg_l"), [(14, 2), (1, 1), (20, None), (None, 3), (21, 12)])
def test_output_shape(eeg_c: int | None, ecg_l: int | None) -> None:
    model = make()
    eeg = None if eeg_c is None else torch.randn(2, eeg_c, 5, 200)
    ecg = None if ecg_l is None else torch.randn(2, ecg_l, 5, 200)
    with torch.no_grad():
        out = model(eeg, ecg)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_pooled_embeddings_and_presence_flags(randomize: Callable[..., nn.Module]) -> None:
    model = randomize(make(), seed=1)
    assert isinstance(model, FusionModel)
    assert model.eeg_encoder is not None
    assert model.ecg_encoder is not None
    eeg, ecg = torch.randn(2, 4, 3, 200), torch.randn(2, 2, 3, 200)
    with torch.no_grad():
        eeg_emb = model.eeg_encoder(eeg).mean(dim=(1, 2))
        ecg_emb = model.ecg_encoder(ecg).mean(dim=(1, 2))
    z = head_input(model, eeg, ecg)
    assert z.shape == (2, 402)
    torch.testing.assert_close(z[:, :200], eeg_emb)
    torch.testing.assert_close(z[:, 200:400], ecg_emb)
    assert torch.equal(z[:, 400:], torch.ones(2, 2))

    z = head_input(model, eeg, None)
    torch.testing.assert_close(z[:, :200], eeg_emb)
    assert torch.equal(z[:, 200:400], torch.zeros(2, 200))
    assert torch.equal(z[:, 400:], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))

    z = head_input(model, None, ecg)
    assert torch.equal(z[:, :200], torch.zeros(2, 200))
    torch.testing.assert_close(z[:, 200:400], ecg_emb)
    assert torch.equal(z[:, 400:], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_encoders_output_patch_embeddings() -> None:
    model = make()
    assert model.eeg_encoder is not None
    assert isinstance(model.eeg_encoder.proj_out, nn.Identity)
    with torch.no_grad():
        assert model.eeg_encoder(torch.randn(1, 3, 2, 200)).shape == (1, 3, 2, 200)


def test_head_is_linear_elu_dropout_linear() -> None:
    model = FusionModel(CBraMod(n_layer=0), None, n_outputs=4, hidden=32, dropout=0.25)
    kinds = [type(m) for m in model.head]
    assert kinds == [nn.Linear, nn.ELU, nn.Dropout, nn.Linear]
    assert model.head[0].in_features == 402
    assert model.head[0].out_features == 32
    assert model.head[2].p == 0.25
    assert model.head[3].out_features == 4


def test_state_dict_prefixes() -> None:
    prefixes = {k.split(".")[0] for k in make().state_dict()}
    assert prefixes == {"eeg_encoder", "ecg_encoder", "head"}
    assert {k.split(".")[0] for k in make(ecg=False).state_dict()} == {"eeg_encoder", "head"}
    assert not any("proj_out" in k for k in make().state_dict())


def test_single_encoder_model_ignores_the_other_modality() -> None:
    model = make(ecg=False)
    assert model.modalities == ("eeg",)
    eeg = torch.randn(1, 3, 2, 200)
    with torch.no_grad():
        torch.testing.assert_close(model(eeg, torch.randn(1, 2, 2, 200)), model(eeg), rtol=0, atol=0)
    with pytest.raises(ValueError, match="No usable modality"):
        model(None, torch.randn(1, 2, 2, 200))


def test_missing_both_modalities_is_an_error() -> None:
    with pytest.raises(ValueError, match="No usable modality"):
        make()(None, None)


def test_batch_size_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same batch size"):
        make()(torch.randn(2, 3, 2, 200), torch.randn(3, 2, 2, 200))


def test_no_encoder_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one encoder"):
        FusionModel(None, None, n_outputs=3)


@pytest.mark.parametrize("modalities", ["eeg", "ecg", "both"])
def test_batch_rows_are_independent_in_eval(modalities: str) -> None:
    model = make(seed=5)
    eeg = torch.randn(4, 6, 5, 200) if modalities != "ecg" else None
    ecg = torch.randn(4, 2, 5, 200) if modalities != "eeg" else None
    with torch.no_grad():
        batch = model(eeg, ecg)
        for i in range(4):
            alone = model(None if eeg is None else eeg[i : i + 1], None if ecg is None else ecg[i : i + 1])
            torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-5)


def test_modalities_change_the_output() -> None:
    model = make(seed=6)
    eeg, ecg = torch.randn(1, 4, 5, 200), torch.randn(1, 2, 5, 200)
    with torch.no_grad():
        both, eeg_only, ecg_only = model(eeg, ecg), model(eeg, None), model(None, ecg)
    assert not torch.allclose(both, eeg_only)
    assert not torch.allclose(both, ecg_only)


def test_fuse_supports_per_row_presence() -> None:
    model = make(seed=7)
    eeg, ecg = torch.randn(2, 3, 2, 200), torch.randn(2, 2, 2, 200)
    assert model.eeg_encoder is not None
    assert model.ecg_encoder is not None
    with torch.no_grad():
        e = model.eeg_encoder(eeg).mean(dim=(1, 2))
        g = model.ecg_encoder(ecg).mean(dim=(1, 2))
        present = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        mixed = model.fuse(e, g * present[:, 1:], present)
        torch.testing.assert_close(mixed[0:1], model(eeg[0:1], ecg[0:1]))
        torch.testing.assert_close(mixed[1:2], model(eeg[1:2], None))


def full_arch(**overrides: Any) -> dict[str, Any]:
    arch: dict[str, Any] = {
        "type": "fusion",
        "eeg": dict(SMALL),
        "ecg": dict(SMALL),
        "head": {"hidden": 16, "dropout": 0.0, "n_outputs": 2},
    }
    arch.update(overrides)
    return arch


def test_from_config_builds_the_declared_model() -> None:
    model = FusionModel.from_config(full_arch(ecg={**SMALL, "n_layer": 2}))
    assert model.modalities == ("eeg", "ecg")
    assert model.eeg_encoder is not None
    assert model.ecg_encoder is not None
    assert len(model.eeg_encoder.encoder.layers) == 1
    assert len(model.ecg_encoder.encoder.layers) == 2
    assert model.eeg_encoder.dim_feedforward == 64
    assert model.head[0].out_features == 16
    assert model.n_outputs == 2
    ecg_only = FusionModel.from_config({k: v for k, v in full_arch().items() if k != "eeg"})
    assert ecg_only.modalities == ("ecg",)


def test_from_config_n_outputs_argument() -> None:
    arch = full_arch(head={"hidden": 16})
    assert FusionModel.from_config(arch, n_outputs=5).n_outputs == 5
    with pytest.raises(ValueError, match=r"architecture\.head\.n_outputs is missing"):
        FusionModel.from_config(arch)
    with pytest.raises(ValueError, match=r"architecture\.head\.n_outputs is 2 but the model declares 3"):
        FusionModel.from_config(full_arch(), n_outputs=3)


@pytest.mark.parametrize(
    ("arch", "field"),
    [
        (full_arch(type="transformer"), "architecture.type"),
        (full_arch(eeg={**SMALL, "nhead": 3}), "architecture.eeg"),
        (full_arch(ecg={**SMALL, "n_layer": 0}), "architecture.ecg.n_layer"),
        (full_arch(ecg={**SMALL, "n_layer": 1.5}), "architecture.ecg.n_layer"),
        (full_arch(eeg={k: v for k, v in SMALL.items() if k != "nhead"}), "architecture.eeg is missing keys"),
        (full_arch(eeg={**SMALL, "layers": 3}), "architecture.eeg has unknown keys"),
        (full_arch(head={"hidden": 16, "dropout": 1.5, "n_outputs": 2}), "architecture.head.dropout"),
        (full_arch(head={"hidden": True, "n_outputs": 2}), "architecture.head.hidden"),
        (full_arch(extra=1), "architecture has unknown keys"),
        ({"type": "fusion", "head": {"n_outputs": 2}}, "at least one of"),
    ],
)
def test_from_config_errors_name_the_field(arch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        FusionModel.from_config(arch)
