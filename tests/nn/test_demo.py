"""The untrained demo model: reproducible from code, small enough to commit, loadable by name."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest
import torch

from rt_physio.nn import list_models, load_model, resolve_model
from rt_physio.nn.demo import build_untrained_demo, main

REPO_DEMO = Path(__file__).resolve().parents[2] / "models" / "untrained-demo"


def recorded_sha() -> str:
    return str(tomllib.loads((REPO_DEMO / "model.toml").read_text())["provenance"]["weights_sha256"])


def test_build_is_deterministic_and_matches_the_committed_folder(tmp_path: Path) -> None:
    rng = torch.get_rng_state()
    first = build_untrained_demo(tmp_path / "a" / "untrained-demo", seed=0)
    second = build_untrained_demo(tmp_path / "b" / "untrained-demo", seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    assert first == second
    assert (tmp_path / "a" / "untrained-demo" / "weights.safetensors").read_bytes() == (
        tmp_path / "b" / "untrained-demo" / "weights.safetensors"
    ).read_bytes()
    # The committed folder is exactly what the code produces (regenerate it when the model code changes).
    assert first == recorded_sha()
    assert (tmp_path / "a" / "untrained-demo" / "model.toml").read_text() == (REPO_DEMO / "model.toml").read_text()


def test_other_seed_gives_other_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "demo-seed1"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256((tmp_path / "demo-seed1" / "weights.safetensors").read_bytes()).hexdigest()
    assert sha in out
    assert sha != recorded_sha()
    spec = load_model(tmp_path / "demo-seed1").spec
    assert spec.provenance["seed"] == 1
    assert spec.name == "demo-seed1"


def test_committed_folder_is_small_and_consistent() -> None:
    weights = REPO_DEMO / "weights.safetensors"
    total = sum(p.stat().st_size for p in REPO_DEMO.iterdir())
    assert total < 25 * 1024 * 1024
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == recorded_sha()


def test_load_untrained_demo_by_name() -> None:
    assert resolve_model("untrained-demo") == REPO_DEMO
    loaded = load_model("untrained-demo")
    spec = loaded.spec
    assert spec.trained is False
    assert spec.modalities == ("eeg", "ecg")
    assert spec.outputs == ("arousal", "valence", "dominance")
    assert spec.activation == "sigmoid"
    assert (spec.sfreq, spec.window_s, spec.n_patches, spec.scale_uv) == (200.0, 5.0, 5, 100.0)
    assert spec.preprocessing["eeg"].bandpass == (0.3, 75.0)
    assert spec.preprocessing["ecg"].bandpass == (0.5, 45.0)
    assert loaded.sha256 == recorded_sha()
    module = loaded.module
    assert module.eeg_encoder is not None
    assert module.ecg_encoder is not None
    assert len(module.eeg_encoder.encoder.layers) == 12
    assert len(module.ecg_encoder.encoder.layers) == 12
    # full-size encoders without proj_out, plus the head
    n_params = sum(p.numel() for p in module.parameters())
    assert n_params == 2 * (4_924_000 - 200 * 200 - 200) + (402 * 256 + 256) + (256 * 3 + 3)
    with torch.inference_mode():
        probs = loaded.activate(module(torch.randn(1, 14, 5, 200), torch.randn(1, 2, 5, 200)))
    assert probs.shape == (1, 3)
    assert ((probs > 0) & (probs < 1)).all()
    assert "untrained-demo" in [s.name for s in list_models()]
