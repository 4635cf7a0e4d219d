"""Scoring a model folder on labelled recordings: ``rt-physio evaluate``.

The model's own ``model.toml`` drives everything: preprocessing per modality (the engine's DSP path, notch at the
dataset's mains frequency), rate, window length, scale, channels (when ``inputs.<modality>.channels`` names them,
those channels are picked by name; empty = the file's montage as is). Windows are non-overlapping, on a grid from
the start of each recording (the CBraMod protocol). For each modality set, only windows that have at least one
of the set's modalities are scored; a window whose recording lacks one of them (EEGMAT's unusable ECG files) is
scored on what it has.

The report maps each modality set (``"eeg,ecg"``, ``"eeg"``, ``"ecg"``) to ``n_windows``,
``balanced_accuracy``, ``f1``, ``auroc``, ``auc_pr`` (over all windows pooled) and ``per_subject`` (the same
metrics per subject), plus ``subjects``, ``model``, ``weights_sha256``, ``threshold``, ``smoothing_s`` and
``no_usable_input``.

Models that split into features and a head (:mod:`rt_physio.nn.calibration`: the classical model, a
fusion model with a calibrated head) are scored through that split. With ``calibrate=S`` each subject's first
``S`` seconds of rest are its baseline, exactly as ``rt-physio run --calibrate S`` does live: those windows are
never scored, every other window's features are centred on the baseline and read by the calibrated head. The
report then says ``calibration: {"seconds", "baseline_windows"}``; compare it with an uncalibrated run on the
same windows through ``skip_baseline=S``.

A window in which the model could use none of the set's modalities (a model with presence flags: flat EEG, an ECG
without plausible beats) is published live with a warning; here it is not scored, and each entry counts such
windows (``no_usable_input``). A model whose ``outputs.smoothing_s`` is S > 0 publishes running means live
(:mod:`rt_physio.nn.smoothing`); it is scored the same way: the windows live would publish are smoothed per
recording in time order, those without usable input kept out of every mean (the ``usable`` mask of
:func:`~rt_physio.nn.smoothing.smooth_series`), so each scored window's probability is the mean (in logits) over the
usable windows of its recording that ended in the last S seconds. ``smoothing=0`` scores every window on its own;
the report says which (``smoothing_s``).

Evaluation discipline: a model folder may list, in ``[provenance]``, the subjects it was trained on
(``training_subjects``) and those that selected anything about it (``selection_subjects``: epochs, C, thresholds,
calibration maps). :func:`evaluate` refuses to score them (a :class:`~rt_physio.errors.ConfigError` names them)
unless ``include_training_subjects=True`` (``--include-training-subjects``); then every entry of the report
carries ``warning`` and ``training_subjects_scored``, and the warning is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_physio.errors import ConfigError, DatasetError, ModelError
from rt_physio.io import Recording, Signal, label_key
from rt_physio.nn.calibration import Calibratable, is_calibratable
from rt_physio.nn.fusion import MODALITIES, FusionModel
from rt_physio.nn.registry import LoadedModel, load_model
from rt_physio.nn.smoothing import smooth_series
from rt_physio.training.calibration import baseline_mask, center_by_subject
from rt_physio.training.common import predict_proba, set_threads
from rt_physio.training.datasets.prepare import default_cache_dir, prepare
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.metrics import METRIC_NAMES, binary_metrics

__all__ = ["evaluate", "evaluate_loaded", "load_labelled", "model_features", "protected_subjects",
           "select_channels"]

log = logging.getLogger(__name__)


def protected_subjects(provenance: dict[str, Any]) -> dict[str, list[str]]:
    """Return the subjects ``[provenance]`` lists as ``training_subjects`` and ``selection_subjects``.

    Empty lists when the model does not say.

    Raises
    ------
    ModelError
        One of the keys is not a list of strings.
    """
    out: dict[str, list[str]] = {}
    for key in ("training_subjects", "selection_subjects"):
        value = provenance.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelError(f"provenance.{key} must be a list of subject names, got {value!r}.")
        out[key] = list(value)
    return out


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
            have = [label_key(c) for c in sig.channel_names]
            cols = []
            for ch in wanted:
                key = label_key(ch)
                if key not in have:
                    raise DatasetError(f"{rec.path}: channel {ch!r} is missing ({m.upper()} channels: "
                                       f"{list(sig.channel_names)}).")
                cols.append(have.index(key))
            signals[m] = Signal(sig.modality, np.ascontiguousarray(sig.data[:, cols]), sig.sfreq, tuple(wanted))
        out.append(replace(rec, signals=signals))
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
             threads: int | None = None, device: str = "cpu", cache: Path | None = None,
             calibrate: float | None = None, skip_baseline: float | None = None,
             include_training_subjects: bool = False, smoothing: float | None = None) -> dict[str, Any]:
    """Load ``model`` and score it on every subject of ``data`` (see the module docstring for the report).

    Raises
    ------
    ModelError
        The model cannot be loaded, or has no output matching the dataset's labels.
    DatasetError
        No usable recording in ``data``, or a channel the model needs is missing.
    ConfigError
        A requested modality set the model has no encoder for, or subjects the model was trained or selected on
        are among those scored (without ``include_training_subjects``).
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
    seen = protected_subjects(loaded.spec.provenance)
    protected = set(seen["training_subjects"]) | set(seen["selection_subjects"])
    scored = sorted({r.subject for r in recordings} & protected)
    if scored and not include_training_subjects:
        raise ConfigError(
            f"Model {loaded.spec.name!r} was trained or selected on {len(scored)} of the subjects to score: "
            f"{', '.join(scored)} (provenance.training_subjects / selection_subjects); their figures would not be "
            "held-out estimates. Choose other subjects with --subjects, or pass --include-training-subjects to "
            "score them anyway (the report then carries a warning).")
    recordings = select_channels(recordings, {m: loaded.spec.channels.get(m, ()) for m in needed})
    report = evaluate_loaded(loaded, recordings, sets, line_freq=line_freq or data_line_freq, threshold=threshold,
                             batch_size=batch_size, device=device,
                             cache=cache if cache is not None else default_cache_dir() / "prepared",
                             calibrate=calibrate, skip_baseline=skip_baseline, smoothing=smoothing)
    if scored:
        warning = (f"NOT a held-out estimate: {len(scored)} scored subjects were used to train or select model "
                   f"{loaded.spec.name!r}: {', '.join(scored)}")
        log.warning("%s", warning)
        for entry in report.values():
            entry["warning"] = warning
            entry["training_subjects_scored"] = scored
    return report


def _default_sets(mods: Sequence[str]) -> list[tuple[str, ...]]:
    both = tuple(m for m in MODALITIES if m in mods)
    return ([both] if len(both) > 1 else []) + [(m,) for m in both]


def evaluate_loaded(loaded: LoadedModel, recordings: Sequence[Recording], sets: Sequence[Sequence[str]], *,
                    line_freq: float, threshold: float = 0.5, batch_size: int = 64, device: str = "cpu",
                    cache: Path | None = None, calibrate: float | None = None,
                    skip_baseline: float | None = None, smoothing: float | None = None) -> dict[str, Any]:
    """Score an already loaded model on recordings (see :func:`evaluate`)."""
    spec = loaded.spec
    if calibrate is not None and not is_calibratable(loaded.module):
        raise ModelError(f"Model {spec.name!r} cannot be calibrated: it has no calibrated head ([calibration] in "
                         "its model.toml).")
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
    skip = calibrate if calibrate is not None else skip_baseline
    is_base = baseline_mask(windows, skip) if skip is not None else np.zeros(len(windows), dtype=bool)
    module = loaded.module
    split = None
    if isinstance(module, Calibratable) and (calibrate is not None or not isinstance(module, FusionModel)):
        split = model_features(module, windows, batch_size=batch_size)
    for s in sets:
        if split is None:  # a model without presence flags uses whatever is there
            assert isinstance(module, FusionModel)
            probs, usable = predict_proba(module, windows, s, batch_size=batch_size, device=device,
                                          activation=spec.activation)
            published = usable
        else:
            probs, published, usable = _split_probs(loaded, windows, split, s, is_base, calibrate is not None)
        published = published & ~is_base  # what live would publish (calibrating windows have no outputs)
        scored = usable & ~is_base
        smooth_s = spec.smoothing_s if smoothing is None else smoothing
        if smooth_s > 0:  # as live: each recording's running mean in time order, unusable windows kept out of it
            t_end = windows.starts[published] + spec.window_s
            probs = probs.copy()
            probs[published] = smooth_series(t_end, probs[published], windows.names[published], smooth_s,
                                             spec.activation, usable=scored[published])
        entry = _score(windows, probs, scored, outputs, col, threshold)
        entry["per_subject"] = {
            subj: _score(windows, probs, scored & (windows.subjects == subj), outputs, col, threshold)
            for subj in subjects
        }
        entry |= {"modalities": list(s), "subjects": subjects, "model": spec.name,
                  "weights_sha256": loaded.sha256, "threshold": threshold, "smoothing_s": smooth_s,
                  "no_usable_input": int((published & ~scored).sum())}
        if skip is not None:
            entry["calibration"] = {"seconds": skip, "calibrated": calibrate is not None,
                                    "baseline_windows": int(is_base.sum())}
        report[",".join(s)] = entry
    return report


def model_features(module: Calibratable, windows: WindowDataset, batch_size: int = 64
                    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Return the model's own features ``(n, F)`` and presence flags ``(n, 2)`` of every window, with its modalities.

    ``module.features``: hand-made features of a classical model, pooled encoder embeddings (and hand-made features)
    of a fusion or hybrid model; each window is given only the modalities it has.
    """
    feats: NDArray[np.float32] | None = None
    present = np.zeros((len(windows), len(MODALITIES)), dtype=bool)
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(windows)))
            batch = windows.batch(idx)
            for pattern in {tuple(bool(v) for v in row) for row in batch.present}:
                if not any(pattern):
                    continue
                rows = np.flatnonzero((batch.present == np.array(pattern)).all(axis=1))
                kwargs = {m: torch.from_numpy(batch.inputs[m][rows]) if on and m in batch.inputs else None
                          for m, on in zip(MODALITIES, pattern, strict=True)}
                f, p = module.features(**kwargs)
                if feats is None:
                    feats = np.zeros((len(windows), f.shape[1]), dtype=np.float32)
                feats[idx[rows]] = f.float().numpy()
                present[idx[rows]] = p.numpy() > 0
    if feats is None:
        raise DatasetError("No window has any modality the model reads.")
    return feats, present


def _split_probs(loaded: LoadedModel, windows: WindowDataset, split: tuple[NDArray[np.float32], NDArray[np.bool_]],
                 modalities: Sequence[str], is_base: NDArray[np.bool_], calibrated: bool
                 ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Probabilities through features → (centring) → head, using only ``modalities``.

    Returns the probabilities (NaN where the window has none of ``modalities``), the windows that have one of them
    (live would publish those) and the windows whose presence flags say the model could use one (the usable ones).
    """
    module = loaded.module
    assert isinstance(module, Calibratable)
    feats, present = split
    feature_modality = module.feature_modality.numpy()
    keep = np.array([m in modalities for m in MODALITIES])
    flags = present & keep[None, :]
    x = feats.copy()
    absent = ~flags[:, np.clip(feature_modality, 0, len(MODALITIES) - 1)] & (feature_modality >= 0)[None, :]
    x[absent] = 0.0  # what features() gives for a modality that is not there
    if calibrated:
        fallback = getattr(module, "calibration_fallback").numpy()  # noqa: B009  # is_calibratable checked it
        centred, _ = center_by_subject(x, flags, windows.subjects, is_base, feature_modality, fallback)
        x = centred.astype(np.float32)
    usable = flags.any(axis=1)
    published = (windows.present & keep[None, :]).any(axis=1)
    probs = np.full((len(windows), len(loaded.spec.outputs)), np.nan)
    rows = np.flatnonzero(published)  # a row without usable flags gets the head's output for no input, as live
    with torch.inference_mode():
        logits = module.classify(torch.from_numpy(x[rows].astype(np.float32)),
                                 torch.from_numpy(flags[rows].astype(np.float32)), calibrated)
        probs[rows] = loaded.activate(logits).double().numpy()
    return probs, published, usable


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
