"""Build ``models/untrained-demo``: a full-size, randomly initialised EEG + ECG fusion model.

Its outputs are meaningless; it exists so that the engine, the benchmarks and the tests can run the real
network (same shapes, same compute) without trained weights. Deterministic: the same seed gives byte-identical
weights and the same sha256.

Usage::

    python -m rt_physio.nn.demo models/untrained-demo [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rt_physio.nn.fusion import FusionModel
from rt_physio.nn.registry import save_model
from rt_physio.nn.spec import SCHEMA

__all__ = ["build_untrained_demo", "demo_spec_fields", "main"]

_ENCODER = {"d_model": 200, "dim_feedforward": 800, "seq_len": 30, "n_layer": 12, "nhead": 8}


def demo_spec_fields(name: str, seed: int) -> dict[str, Any]:
    """Return the ``model.toml`` content of the untrained demo model (without the weights' sha256)."""
    return {
        "schema": SCHEMA,
        "name": name,
        "trained": False,
        "description": (
            f"Random-initialised fusion model (seed {seed}). Outputs are meaningless; for wiring and latency tests."
        ),
        "architecture": {
            "type": "fusion",
            "eeg": dict(_ENCODER),
            "ecg": dict(_ENCODER),
            "head": {"hidden": 256, "dropout": 0.1, "n_outputs": 3},
        },
        "inputs": {
            "sfreq": 200.0,
            "window_s": 5.0,
            "scale_uv": 100.0,
            "eeg": {"channels": []},
            "ecg": {"channels": []},
        },
        "preprocessing": {
            "eeg": {"bandpass": [0.3, 75.0], "notch": True},
            "ecg": {"bandpass": [0.5, 45.0], "notch": True},
        },
        "outputs": {"names": ["arousal", "valence", "dominance"], "activation": "sigmoid"},
        "provenance": {
            "seed": seed,
            "data": "none (random initialisation)",
            "training_command": f"python -m rt_physio.nn.demo models/{name}" + (f" --seed {seed}" if seed else ""),
        },
    }


def build_untrained_demo(out_dir: str | Path, seed: int = 0) -> str:
    """Create the untrained demo model folder (``model.toml`` + float16 ``weights.safetensors``).

    Parameters
    ----------
    out_dir : str | Path
        The model folder to write; its name becomes the model name.
    seed : int
        Seed of the random initialisation. The global torch RNG state is restored afterwards.

    Returns
    -------
    str
        sha256 of the written weights.
    """
    out_dir = Path(out_dir)
    fields = demo_spec_fields(out_dir.resolve().name, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FusionModel.from_config(fields["architecture"], n_outputs=len(fields["outputs"]["names"]))
    return save_model(out_dir, model.eval(), fields, dtype=torch.float16)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m rt_physio.nn.demo OUT_DIR [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m rt_physio.nn.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="model folder to create, e.g. models/untrained-demo")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    sha256 = build_untrained_demo(args.out_dir, seed=args.seed)
    print(f"wrote {args.out_dir} (weights sha256 {sha256})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
