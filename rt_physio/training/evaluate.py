"""Scoring a model folder on labelled recordings: ``rt-physio evaluate``.

The model's own ``model.toml`` drives everything: preprocessing per modality (the engine's DSP path, notch at the
dataset's mains frequency), rate, window length, scale, channels (when ``inputs.<modality>.channels`` names them,
those channels are picked by name; empty = the file's montage as is). Windows are non-overlapping, on a grid from
the start of each recording (the CBraMod protocol). For each modality set, only windows that have at least one
of the set's modalities are scored; a window whose recording lacks one of them (EEGMAT's unusable ECG files) is
scored on what it has.

The report maps each modality set (``"eeg,ecg"``, ``"eeg"``, ``"ecg"``) to ``n_windows``,
``balanced_accuracy``, ``f1``, ``auroc``, ``auc_pr`` (over all windows pooled) and ``per_subject`` (the same
metrics per subject), plus ``subjects``, ``model``, ``weights_sha256`` and ``threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rt_physio.errors import ConfigError, ModelError
from rt_physio.nn.fusion import MODALITIES
from rt_physio.nn.registry import LoadedModel, load_model
from rt_physio.training.common import predict_proba, set_threads
from rt_physio.training.datasets.base import (
    DatasetError,
    Recording,
    Signal,
    WindowDataset,
    default_cache_dir,
    normalise_label,
    prepare,
)
from rt_physio.training.metrics import METRIC_NAMES, binary_metrics

__all__ = ["evaluate", "evaluate_loaded", "load_labelled", "select_channels"]


def select_channels(recordings: Sequence[Recording], channels: dict[str, tuple[str, ...]]) -> list[Recording]:
    """Pick (and order) the channels a model names in ``inputs.<modality>.channels``; empty = keep all.

    Raises
    ------
    DatasetError
        A recording lacks a named channel (the recording, the channel and what it has are named).
    """
    out = []
    for rec in recordings:
        signals = dict(rec.signals)
        for m, wanted in channels.items():
            if not wanted or m not in signals:
                continue
            sig = signals[m]
            have = [normalise_label(c) for c in sig.channels]
            rows = []
            for ch in wanted:
                key = normalise_label(ch)
                if key not in have:
                    raise DatasetError(f"{rec.source}: channel {ch!r} is missing ({m.upper()} channels: "
                                       f"{list(sig.channels)}).")
                rows.append(have.index(key))
            signals[m] = Signal(np.ascontiguousarray(sig.data[rows]), sig.sfreq, tuple(wanted))
        out.append(Recording(rec.subject, rec.name, rec.source, signals, rec.labels, rec.condition, rec.missing))
    return out


def load_labelled(dataset: str, data: Path, subjects: Sequence[str] | None, label_threshold: float,
                  modalities: Sequence[str]) -> tuple[list[Recording], float]:
    """Load an evaluation dataset; returns the recordings and the mains frequency of the recordings."""
    if dataset == "eegmat":
        from rt_physio.training.datasets.eegmat import EEGMAT_LINE_FREQ, load_eegmat

        numbers = None
        if subjects:
            try:
                numbers = sorted({int(s.removeprefix("Subject")) for s in subjects})
            except ValueError as exc:
                raise ConfigError(f"EEGMAT subjects are SubjectNN or NN, got {list(subjects)}.") from exc
        recs = load_eegmat(data, numbers, eeg="eeg" in modalities, ecg="ecg" in modalities)
        return recs, EEGMAT_LINE_FREQ
    if dataset == "dreamer":
        from rt_physio.training.datasets.dreamer import load_dreamer

        recs = [r for r in load_dreamer(data, threshold=label_threshold) if r.condition == "stimulus"]
        if subjects:
            recs = [r for r in recs if r.subject in set(subjects)]
        if not recs:
            raise DatasetError(f"{data}: no DREAMER recordings for subjects {list(subjects or [])}.")
        return recs, 50.0
    raise ConfigError(f"The 'dataset' parameter must be 'eegmat' or 'dreamer', got {dataset!r}.")


def evaluate(model: str | Path, data: str | Path, *, modality_sets: Sequence[Sequence[str]] | None = None,
             dataset: str = "eegmat", subjects: Sequence[str] | None = None, threshold: float = 0.5,
             label_threshold: float = 3.0, line_freq: float | None = None, batch_size: int = 64,
             threads: int | None = None, device: str = "cpu", cache: Path | None = None) -> dict[str, Any]:
    """Load ``model`` and score it on every subject of ``data`` (see the module docstring for the report).

    Raises
    ------
    ModelError
        The model cannot be loaded, or has no output matching the dataset's labels.
    DatasetError
        No usable recording in ``data``, or a channel the model needs is missing.
    ConfigError
        A requested modality set the model has no encoder for.
    """
    set_threads(threads)
    loaded = load_model(model, device=device)
    mods = loaded.spec.modalities
    sets = [tuple(m for m in MODALITIES if m in s) for s in (modality_sets or _default_sets(mods))]
    for s in sets:
        lacking = [m for m in s if m not in mods]
        if lacking:
            choices = [",".join(x) for x in _default_sets(mods)]
            raise ConfigError(f"Model {loaded.spec.name!r} has no {'/'.join(lacking).upper()} encoder (it reads "
                              f"{', '.join(mods)}); choose --modalities among {choices}.")
    needed = sorted({m for s in sets for m in s})
    recordings, data_line_freq = load_labelled(dataset, Path(data), subjects, label_threshold, needed)
    recordings = select_channels(recordings, {m: loaded.spec.channels.get(m, ()) for m in needed})
    return evaluate_loaded(loaded, recordings, sets, line_freq=line_freq or data_line_freq, threshold=threshold,
                           batch_size=batch_size, device=device,
                           cache=cache if cache is not None else default_cache_dir() / "prepared")


def _default_sets(mods: Sequence[str]) -> list[tuple[str, ...]]:
    both = tuple(m for m in MODALITIES if m in mods)
    return ([both] if len(both) > 1 else []) + [(m,) for m in both]


def evaluate_loaded(loaded: LoadedModel, recordings: Sequence[Recording], sets: Sequence[Sequence[str]], *,
                    line_freq: float, threshold: float = 0.5, batch_size: int = 64, device: str = "cpu",
                    cache: Path | None = None) -> dict[str, Any]:
    """Score an already loaded model on recordings (see :func:`evaluate`)."""
    spec = loaded.spec
    label_names = sorted({k for r in recordings for k in r.labels})
    outputs = [name for name in spec.outputs if name in label_names]
    if not outputs:
        raise ModelError(f"Model {spec.name!r} predicts {list(spec.outputs)} but the data are labelled "
                         f"{label_names}; no output to score.")
    needed = sorted({m for s in sets for m in s})
    prepared = prepare(recordings, {m: spec.preprocessing[m] for m in needed}, line_freq=line_freq,
                       scale_uv=spec.scale_uv, sfreq_out=spec.sfreq, cache_dir=cache)
    windows = WindowDataset(prepared, outputs, window_s=spec.window_s, hop_s=spec.window_s, modalities=needed)
    if len(windows) == 0:
        raise DatasetError(f"No {spec.window_s:g}-s window in the {len(recordings)} recordings.")
    col = {name: spec.outputs.index(name) for name in outputs}
    report: dict[str, Any] = {}
    subjects = sorted(set(windows.subjects.tolist()))
    for s in sets:
        probs, scored = predict_proba(loaded.module, windows, s, batch_size=batch_size, device=device,
                                      activation=spec.activation)
        entry = _score(windows, probs, scored, outputs, col, threshold)
        entry["per_subject"] = {
            subj: _score(windows, probs, scored & (windows.subjects == subj), outputs, col, threshold)
            for subj in subjects
        }
        entry |= {"modalities": list(s), "subjects": subjects, "model": spec.name,
                  "weights_sha256": loaded.sha256, "threshold": threshold}
        report[",".join(s)] = entry
    return report


def _score(windows: WindowDataset, probs: np.ndarray, scored: np.ndarray, outputs: Sequence[str],
           col: dict[str, int], threshold: float) -> dict[str, Any]:
    per_output = {name: binary_metrics(windows.labels[scored, k], probs[scored, col[name]], threshold)
                  for k, name in enumerate(outputs)}
    if len(outputs) == 1:
        return dict(per_output[outputs[0]])
    summary: dict[str, Any] = {"n_windows": int(scored.sum())}
    for key in METRIC_NAMES:
        values = [float(v[key]) for v in per_output.values() if math.isfinite(float(v[key]))]
        summary[key] = float(np.mean(values)) if values else math.nan
    summary["outputs"] = per_output
    return summary
