"""The model-type table: every type builds its own class; legacy type names on disk still load, identically."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rt_physio.nn.model_types import LEGACY_TYPES, MODEL_TYPES, canonical_architecture, model_type
from rt_physio.nn.registry import load_model

_ARCHS = {
    "fusion": {"type": "fusion", "eeg": {"d_model": 200, "dim_feedforward": 16, "seq_len": 5, "n_layer": 1,
                                         "nhead": 2}, "head": {"hidden": 8, "dropout": 0.0}},
    "classical": {"type": "classical", "classical": {"eeg_channels": 4, "ecg": True}},
    "hybrid": {"type": "hybrid", "hybrid": {"features": True}},
}


@pytest.mark.parametrize("kind", sorted(MODEL_TYPES))
def test_each_type_parses_and_builds_its_own_class(kind: str) -> None:
    arch = _ARCHS[kind]
    entry = model_type(arch)
    assert entry is MODEL_TYPES[kind]
    assert entry.parse(arch, 1).modalities
    assert type(entry.build(arch, 1, 200.0)) is entry.module


def test_current_types_are_left_as_they_are() -> None:
    for arch in _ARCHS.values():
        assert canonical_architecture(arch) == arch
    assert set(LEGACY_TYPES).isdisjoint(MODEL_TYPES) and set(LEGACY_TYPES.values()) <= set(MODEL_TYPES)


def test_a_legacy_baseline_model_file_loads_as_the_classical_model(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "models" / "eegmat-baseline"
    legacy = tmp_path / shipped.name
    shutil.copytree(shipped, legacy)
    text = (legacy / "model.toml").read_text()
    assert 'type = "classical"\n\n[architecture.classical]' in text  # the shipped file uses the current name
    (legacy / "model.toml").write_text(text.replace('type = "classical"\n\n[architecture.classical]',
                                                    'type = "baseline"\n\n[architecture.baseline]'))
    old, new = load_model(legacy), load_model(shipped)
    assert old.spec.architecture == new.spec.architecture and old.spec.architecture["type"] == "classical"
    assert type(old.module) is type(new.module)
    eeg = torch.randn(2, 20, 5, 200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(old.module(eeg=eeg), new.module(eeg=eeg), rtol=0, atol=0)
