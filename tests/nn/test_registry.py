"""The model repository: save/load round trips, sha256 checking, and an error naming the file for each bad input."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from rt_physio.errors import ModelError
from rt_physio.nn import (
    FusionModel,
    LoadedModel,
    Preprocessing,
    _toml,
    list_models,
    load_model,
    read_model_spec,
    resolve_model,
    save_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = {"d_model": 200, "dim_feedforward": 32, "seq_len": 30, "n_layer": 1, "nhead": 8}


def fields(name: str = "tiny", ecg: bool = True) -> dict[str, Any]:
    arch: dict[str, Any] = {"type": "fusion", "eeg": dict(SMALL), "head": {"hidden": 8, "dropout": 0.1}}
    inputs: dict[str, Any] = {"sfreq": 200.0, "window_s": 4.0, "scale_uv": 100.0, "eeg": {"channels": ["Fz", "Cz"]}}
    pre: dict[str, Any] = {"eeg": {"bandpass": [0.3, 75.0], "notch": True}}
    if ecg:
        arch["ecg"] = dict(SMALL)
        inputs["ecg"] = {"channels": []}
        pre["ecg"] = {"notch": False}
    return {
        "name": name,
        "trained": True,
        "description": "test model",
        "architecture": arch,
        "inputs": inputs,
        "preprocessing": pre,
        "outputs": {"names": ["arousal", "valence"], "activation": "sigmoid"},
        "provenance": {"seed": 1, "data": "none"},
    }


def build(spec_fields: dict[str, Any], seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    return FusionModel.from_config(spec_fields["architecture"], n_outputs=len(spec_fields["outputs"]["names"])).eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, FusionModel, str]:
    folder = tmp_path / "models" / "tiny"
    module = build(fields())
    sha = save_model(folder, module, fields(), dtype=torch.float32)
    return folder, module, sha


def edit_toml(folder: Path, change: Any) -> None:
    data = tomllib.loads((folder / "model.toml").read_text())
    change(data)
    (folder / "model.toml").write_text(_toml.dumps(data))


def test_round_trip_float32_is_exact(saved: tuple[Path, FusionModel, str]) -> None:
    folder, module, sha = saved
    loaded = load_model(folder)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.module.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.module.parameters())
    ref, got = module.state_dict(), loaded.module.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    eeg, ecg = torch.randn(2, 2, 4, 200), torch.randn(2, 1, 4, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(eeg, ecg), module(eeg, ecg), rtol=0, atol=0)
    assert loaded.sha256 == sha


def test_float16_storage_loads_as_float32(tmp_path: Path) -> None:
    module = build(fields())
    folder = tmp_path / "tiny"
    save_model(folder, module, fields())
    loaded = load_model(folder)
    assert all(p.dtype == torch.float32 for p in loaded.module.parameters())
    assert loaded.spec.provenance["weights_dtype"] == "float16"
    ref = module.state_dict()
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, ref[k].half().float()), k
    assert (folder / "weights.safetensors").stat().st_size < 0.6 * sum(v.numel() * 4 for v in ref.values())


def test_sha256_is_recorded_and_matches_the_file(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, sha = saved
    digest = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    assert sha == digest
    assert tomllib.loads((folder / "model.toml").read_text())["provenance"]["weights_sha256"] == digest
    assert read_model_spec(folder).weights_sha256 == digest


def test_spec_fields(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    spec = load_model(folder).spec
    assert spec.name == "tiny"
    assert spec.path == folder.resolve()
    assert spec.trained is True
    assert spec.modalities == ("eeg", "ecg")
    assert spec.sfreq == 200.0
    assert spec.window_s == 4.0
    assert spec.n_patches == 4
    assert spec.scale_uv == 100.0
    assert spec.channels == {"eeg": ("Fz", "Cz"), "ecg": ()}
    assert spec.preprocessing == {"eeg": Preprocessing((0.3, 75.0), True), "ecg": Preprocessing(None, False)}
    assert spec.outputs == ("arousal", "valence")
    assert spec.activation == "sigmoid"
    assert spec.architecture["head"] == {"hidden": 8, "dropout": 0.1}
    assert spec.provenance["seed"] == 1
    hash(spec)  # frozen spec is hashable despite its dict fields


def test_single_modality_model(tmp_path: Path) -> None:
    f = fields("eeg-only", ecg=False)
    folder = tmp_path / "eeg-only"
    save_model(folder, build(f), f)
    loaded = load_model(folder)
    assert loaded.spec.modalities == ("eeg",)
    with torch.no_grad():
        assert loaded.module(torch.randn(1, 5, 4, 200), None).shape == (1, 2)


def test_activation(saved: tuple[Path, FusionModel, str]) -> None:
    folder, module, _ = saved
    spec = read_model_spec(folder)
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    expected = {"sigmoid": torch.sigmoid(logits), "softmax": torch.softmax(logits, dim=-1), "identity": logits}
    for activation, values in expected.items():
        model = LoadedModel(spec=dataclasses.replace(spec, activation=activation), module=module, sha256="")
        torch.testing.assert_close(model.activate(logits), values)


def test_load_does_not_touch_the_global_rng(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    state = torch.get_rng_state()
    load_model(folder)
    assert torch.equal(torch.get_rng_state(), state)


def test_modified_weights_are_detected(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # still a valid safetensors file, different numbers
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt or was modified") as info:
        load_model(folder)
    assert str(weights) in str(info.value)


def test_truncated_weights_with_matching_sha_are_not_a_traceback(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    edit_toml(folder, lambda d: d["provenance"].update(weights_sha256=digest))
    with pytest.raises(ModelError, match="not a readable safetensors file") as info:
        load_model(folder)
    assert str(weights) in str(info.value)


def test_weights_not_matching_architecture(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    edit_toml(folder, lambda d: d["architecture"]["ecg"].update(n_layer=2))
    with pytest.raises(ModelError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(folder / "weights.safetensors") in msg
    assert "16 missing keys: ecg_encoder.encoder.layers.1." in msg


def test_missing_model_toml(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    (folder / "model.toml").unlink()
    with pytest.raises(ModelError, match=r"model\.toml: not found"):
        load_model(folder)


def test_missing_weights(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match=r"weights\.safetensors: not found"):
        load_model(folder)


def test_invalid_toml(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    (folder / "model.toml").write_text("schema = 'rt_physio.model/1'\nname = \n")
    with pytest.raises(ModelError, match=r"model\.toml: invalid TOML") as info:
        load_model(folder)
    assert str(folder) in str(info.value)


def _del(path: str) -> Any:
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]

    return change


def _set(path: str, value: Any) -> Any:
    def change(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_del("inputs.sfreq"), "inputs.sfreq is missing"),
        (_set("inputs.sfreq", "fast"), "inputs.sfreq must be a number"),
        (_set("inputs.window_s", 4.5), "whole number of 200-sample patches"),
        (_set("inputs.scale_uv", -1.0), "inputs.scale_uv must be a positive number"),
        (_del("trained"), "trained is missing"),
        (_set("trained", "no"), "trained must be true or false"),
        (_set("schema", "rt_physio.model/2"), "schema must be 'rt_physio.model/1'"),
        (_set("name", "other"), "name is 'other' but the folder is 'tiny'"),
        (_set("architecture.eeg.nhead", 3), "architecture.eeg: The 'nhead' parameter"),
        (_set("architecture.head.n_outputs", 5), "architecture.head.n_outputs is 5"),
        (_set("outputs.names", []), "outputs.names must be a non-empty list"),
        (_set("outputs.names", ["a", "a"]), "outputs.names must be a non-empty list of distinct"),
        (_set("outputs.activation", "tanh"), "outputs.activation must be one of"),
        (_set("outputs.smoothing_s", -5.0), "The 'outputs.smoothing_s' parameter must be"),
        (_set("outputs.smoothing_s", "30"), "outputs.smoothing_s must be a number"),
        (_set("preprocessing.eeg.bandpass", [40.0, 1.0]), "preprocessing.eeg.bandpass must be"),
        (_set("preprocessing.eeg.bandpas", [1.0, 40.0]), "preprocessing.eeg has unknown keys ['bandpas']"),
        (_del("preprocessing.ecg"), "preprocessing.ecg is missing"),
        (_del("inputs.eeg"), "inputs.eeg is missing"),
        (_set("inputs.eeg.channels", ["Fz", 3]), "inputs.eeg.channels must be a list"),
        (_del("architecture.ecg"), "[inputs.ecg] is given but the architecture has no ecg encoder"),
        (_del("provenance.weights_sha256"), "provenance.weights_sha256 is missing"),
        (_set("provenance.weights_sha256", "abc"), "provenance.weights_sha256 must be 64 lowercase hex"),
        (_set("extra", 1), "unknown top-level keys ['extra']"),
    ],
)
def test_invalid_fields_are_named(saved: tuple[Path, FusionModel, str], change: Any, expected: str) -> None:
    folder, _, _ = saved
    edit_toml(folder, change)
    with pytest.raises(ModelError) as info:
        load_model(folder)
    msg = str(info.value)
    assert str(folder / "model.toml") in msg
    assert expected in msg


def test_save_rejects_a_module_that_does_not_match(tmp_path: Path) -> None:
    f = fields()
    other = copy.deepcopy(f)
    other["architecture"]["eeg"]["n_layer"] = 2
    folder = tmp_path / "tiny"
    with pytest.raises(ModelError, match="does not match the declared architecture"):
        save_model(folder, build(other), f)
    assert not folder.exists()


def test_save_rejects_invalid_fields_before_writing(tmp_path: Path) -> None:
    f = fields()
    f["outputs"]["activation"] = "tanh"
    with pytest.raises(ModelError, match=r"outputs\.activation"):
        save_model(tmp_path / "tiny", build(fields()), f)
    assert not (tmp_path / "tiny").exists()


def test_save_defaults_name_to_folder(tmp_path: Path) -> None:
    f = fields()
    del f["name"]
    save_model(tmp_path / "named-by-folder", build(fields()), f)
    assert read_model_spec(tmp_path / "named-by-folder").name == "named-by-folder"


def test_resolve_by_name_and_path(saved: tuple[Path, FusionModel, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = saved
    monkeypatch.chdir(folder.parent.parent)  # cwd/models/tiny
    assert resolve_model("tiny") == folder.resolve()
    assert resolve_model(folder) == folder.resolve()
    assert resolve_model("models/tiny") == folder.resolve()
    assert load_model("tiny").spec.name == "tiny"


def test_unknown_name_lists_available_models(
    saved: tuple[Path, FusionModel, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, _ = saved
    monkeypatch.chdir(folder.parent.parent)
    with pytest.raises(ModelError) as info:
        load_model("no-such-model")
    msg = str(info.value)
    assert "Unknown model 'no-such-model'" in msg
    assert "tiny" in msg
    assert "untrained-demo" in msg
    assert str(folder.parent.resolve()) in msg


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model folder not found"):
        resolve_model(tmp_path / "absent")


def test_rt_physio_home_is_searched(saved: tuple[Path, FusionModel, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = saved
    monkeypatch.setenv("RT_PHYSIO_HOME", str(folder.parent.parent))
    assert resolve_model("tiny") == folder.resolve()


def test_list_models_skips_broken_folders(
    saved: tuple[Path, FusionModel, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder, _, _ = saved
    models = folder.parent
    (models / "broken").mkdir()
    (models / "broken" / "model.toml").write_text("not toml [")
    (models / "broken" / "weights.safetensors").write_bytes(b"")
    (models / "empty").mkdir()
    monkeypatch.chdir(models.parent)
    with caplog.at_level(logging.WARNING, logger="rt_physio.nn.registry"):
        specs = list_models()
    names = [s.name for s in specs]
    assert "tiny" in names
    assert "untrained-demo" in names
    assert "broken" not in names
    assert "empty" not in names
    logged = caplog.text
    assert str(models / "broken" / "model.toml") in logged
    assert str(models / "empty") in logged


def test_invalid_device_is_named(saved: tuple[Path, FusionModel, str]) -> None:
    folder, _, _ = saved
    with pytest.raises(ValueError, match="'device'"):
        load_model(folder, device="gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            load_model(folder, device="cuda")


@pytest.mark.cuda
def test_load_on_cuda(saved: tuple[Path, FusionModel, str]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    folder, module, _ = saved
    loaded = load_model(folder, device="cuda")
    eeg = torch.randn(1, 2, 4, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(eeg.cuda(), None).cpu(), module(eeg, None), rtol=1e-4, atol=1e-4)


def test_toml_writer_round_trip() -> None:
    data = {
        "s": 'quote " backslash \\ newline \n tab \t del \x7f µV',
        "b": False,
        "i": -3,
        "f": 1e-5,
        "arr": [1.5, 2.0],
        "strs": ["a", "b c"],
        "empty": [],
        "t": {"x": 1, "u": {"deep": "yes"}, "weird key": True},
        "only_tables": {"a": {"k": 1}},
    }
    assert tomllib.loads(_toml.dumps(data, header="hello")) == data
    with pytest.raises(ValueError, match="non-finite"):
        _toml.dumps({"x": float("nan")})
    with pytest.raises(TypeError):
        _toml.dumps({"x": None})
