"""Collect pre-trained encoders (and AF probe reports) into one JSON and plot their curves.

``python -m rt_physio.training.pretrain_report --encoders models/encoders/* --probe PROBE.json
--json docs/results-pretraining.json --plot docs/pretraining.png [--breakdown]``

``--breakdown`` also scores every encoder on its held-out windows under each masking part alone (Bernoulli
patches only, the time span only, whole leads only, and the training mix), as model / zero-predictor ratios:
which part of the task the encoder can and cannot do.

The plot shows, per encoder, the held-out masked MSE of the model and of the zero predictor per epoch (the
goal lines 0.5 x zero for ECG and 0.7 x zero for EEG are drawn dashed; an ECG encoder's non-learned period-copy
reference, :mod:`rt_physio.training.pretrain_reference`, dash-dotted).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["GOALS", "collect", "main", "masking_breakdown", "plot"]

log = logging.getLogger(__name__)

#: Held-out masked MSE / zero-predictor goals of issue 16.
GOALS = {"ecg": 0.5, "eeg": 0.7}


def collect(encoders: Sequence[str | Path], probes: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Summarise encoder folders (architecture, corpus size, wall time, final ratio vs goal) and probe reports."""
    out: dict[str, Any] = {"encoders": {}, "probes": []}
    for folder in map(Path, encoders):
        meta = json.loads((folder / "encoder.json").read_text())
        final = meta.get("final") or {}
        corpus = dict(meta.get("corpus", {}))
        held = corpus.pop("cinc2017_heldout_records", None)
        if held is not None:
            corpus["cinc2017_heldout_count"] = len(held)
        goal = GOALS[meta["modality"]]
        ratio = final.get("ratio")
        out["encoders"][folder.name] = {
            "modality": meta["modality"], "architecture": meta["architecture"], "masking": meta["masking"],
            "window_s": meta.get("window_s"), "epochs": meta["epochs"], "epochs_planned": meta.get("epochs_planned"),
            "finished": meta.get("finished"), "train_windows": meta.get("train_windows"),
            "train_wall_time_s": meta.get("train_wall_time_s"), "final": final, "goal_ratio": goal,
            "goal_met": bool(ratio is not None and ratio <= goal), "corpus": corpus,
            "command": meta.get("config", {}).get("command"), "history": meta.get("history", []),
            "reference": meta.get("reference"),
        }
    for p in map(Path, probes):
        report = json.loads(p.read_text())
        report.pop("records", None)
        report["goal_auroc"] = 0.90
        report["goal_met"] = bool(report["pretrained"]["auroc"] >= 0.90
                                  and report["pretrained"]["auroc"] > report["random_init"]["auroc"])
        out["probes"].append(report)
    return out


def masking_breakdown(folder: str | Path, windows: int = 512, seed: int = 123,
                      cache: Path | None = None) -> dict[str, float]:
    """Held-out ratio (model / zero predictor) of an encoder folder under each masking part alone.

    The corpus and hold-out are rebuilt from the folder's ``encoder.json`` (same sources, fraction and seed).
    """
    import torch

    from rt_physio.nn.masking import dual_mask, masked_mse, standardise, zero_mse
    from rt_physio.training.datasets.prepare import default_cache_dir
    from rt_physio.training.encoders import encoder_meta, load_encoder
    from rt_physio.training.pretrain import _windows
    from rt_physio.training.pretrain_data import build_corpus

    meta = encoder_meta(folder)
    cfg = meta["config"]
    corpus = build_corpus(meta["modality"], cfg["data"], eegmat_subjects=cfg["eegmat_subjects"],
                          holdout_fraction=cfg["holdout_fraction"], seed=cfg["seed"],
                          line_freq=cfg["line_freq"], cache=cache or default_cache_dir() / "prepared")
    held = _windows(corpus.heldout, meta["modality"], meta["window_s"], meta["window_s"],
                    meta["preprocessing"]["max_abs_uv"])
    model = load_encoder(folder)
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for ds, keep in held:
        pick = keep[torch.randperm(len(keep), generator=gen)[:max(1, windows // len(held))].numpy()]
        xs.append(torch.from_numpy(ds.batch(pick).inputs[meta["modality"]]))
    parts: dict[str, dict[str, float]] = {
        "patches only": {"patch_ratio": cfg["patch_ratio"], "lead_ratio": 0.0, "span_ratio": 0.0},
        "time span only": {"patch_ratio": 0.0, "lead_ratio": 0.0, "span_ratio": cfg["span_ratio"]},
        "whole leads only": {"patch_ratio": 0.0, "lead_ratio": 0.5, "span_ratio": 0.0},
        "training mix": {"patch_ratio": cfg["patch_ratio"], "lead_ratio": meta["masking"]["lead_ratio"],
                         "span_ratio": cfg["span_ratio"]},
    }
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, kw in parts.items():
            err = zero = 0.0
            for x in xs:
                if name == "whole leads only" and x.shape[1] == 1:
                    continue
                for s in range(0, len(x), 32):
                    b = x[s:s + 32]
                    m = dual_mask((int(b.shape[0]), int(b.shape[1]), int(b.shape[2])), kw["patch_ratio"],
                                  kw["lead_ratio"], generator=gen, span_ratio=kw["span_ratio"])
                    n, t = float(m.sum()), standardise(b)
                    err += masked_mse(model(b, mask=m), t, m).item() * n
                    zero += zero_mse(t, m).item() * n
            if zero:
                out[name] = round(err / zero, 4)
    return out


def plot(summary: dict[str, Any], path: str | Path) -> None:
    """Held-out loss vs zero predictor per epoch, one panel per encoder (three per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["encoders"])
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        enc = summary["encoders"][name]
        hist = enc["history"]
        epochs = [h["epoch"] for h in hist]
        ax.plot(epochs, [h["heldout_loss"] for h in hist], "o-", label="model (held-out)")
        ax.plot(epochs, [h["zero_loss"] for h in hist], "k:", label="zero predictor")
        ax.plot(epochs, [enc["goal_ratio"] * h["zero_loss"] for h in hist], "r--", lw=0.8,
                label=f"goal {enc['goal_ratio']}x zero")
        ax.plot(epochs, [h["train_loss"] for h in hist], "-", alpha=0.4, label="train")
        ref = enc.get("reference")
        if ref:
            ax.axhline(ref["heldout_loss"], color="g", ls="-.", lw=0.8,
                       label=f"period-copy reference ({ref['ratio']:.3f}x zero)")
        ratio = enc["final"].get("ratio", float("nan"))
        ax.set_title(f"{name}\nfinal held-out ratio {ratio:.3f} (goal <= {enc['goal_ratio']})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.3)
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("masked MSE (standardised targets)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rt_physio.training.pretrain_report")
    parser.add_argument("--encoders", nargs="+", required=True, type=Path)
    parser.add_argument("--probe", nargs="*", default=[], type=Path, help="train probe --json reports")
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--breakdown", action="store_true", help="held-out ratio per masking part (needs the data)")
    args = parser.parse_args(argv)
    summary = collect(args.encoders, args.probe)
    if args.breakdown:
        for folder in args.encoders:
            summary["encoders"][folder.name]["heldout_ratio_by_masking_part"] = masking_breakdown(folder)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot is not None:
        plot(summary, args.plot)
    logging.basicConfig(level=logging.INFO)
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
