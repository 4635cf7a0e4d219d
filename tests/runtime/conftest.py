"""A small fusion model saved and loaded through the real registry (fast enough for many forward passes)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from rt_physio.nn import FusionModel, LoadedModel, load_model, save_model
from tests.conftest import REPO_ROOT


def make_tiny_model(folder: Path, n_layer: int = 2, seed: int = 0, calibrated: bool = False,
                    smoothing_s: float = 0.0) -> LoadedModel:
    spec = tomllib.loads((REPO_ROOT / "models" / "untrained-demo" / "model.toml").read_text())
    spec["name"] = folder.name
    spec["description"] = "tiny random model for runtime tests"
    for modality in ("eeg", "ecg"):
        spec["architecture"][modality]["n_layer"] = n_layer
    if calibrated:
        spec["architecture"]["calibrated_head"] = {"hidden": 16}
        spec["calibration"] = {"seconds": 60.0, "level": "embeddings", "expects": False}
    if smoothing_s:
        spec["outputs"]["smoothing_s"] = smoothing_s
    torch.manual_seed(seed)
    module = FusionModel.from_config(spec["architecture"])
    if calibrated:  # a fallback that is not zero, so tests can tell it from "no centring"
        module.calibration_fallback.copy_(torch.linspace(-1.0, 1.0, module.calibration_fallback.numel()))
    save_model(folder, module, spec, dtype=torch.float32)
    return load_model(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
