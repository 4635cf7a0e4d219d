"""``rt-physio train STEP`` (pretrain, probe, finetune, classical, calibrate-head, cv) and ``rt-physio evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from rt_physio.checks import number_arg
from rt_physio.errors import ConfigError
from rt_physio.training.reports import command_line, write_report

__all__ = ["register"]


def _modalities(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip().lower() for p in text.replace("+", ",").split(",") if p.strip())
    bad = [p for p in parts if p not in ("eeg", "ecg")]
    if not parts or bad or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"expected eeg, ecg or eeg,ecg, got {text!r}")
    return tuple(m for m in ("eeg", "ecg") if m in parts)


def _subjects(text: str) -> tuple[str, ...]:
    """``28-31`` or ``Subject28,Subject29`` or ``S01,S02`` -> subject ids (EEGMAT numbers become SubjectNN)."""
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
            lo, hi = (int(p) for p in part.split("-", 1))
            out.extend(f"Subject{i:02d}" for i in range(lo, hi + 1))
        elif part.isdigit():
            out.append(f"Subject{int(part):02d}")
        else:
            out.append(part)
    if not out:
        raise argparse.ArgumentTypeError(f"expected subjects such as 28-31 or Subject28,Subject29, got {text!r}")
    return tuple(out)


def register(sub: Any) -> None:
    """Add the ``train`` (``pretrain``, ``probe``, ``finetune``, ``classical``, ...) and ``evaluate`` subcommands."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    train = sub.add_parser("train", help="pre-train encoders or fine-tune a model",
                           description="Self-supervised pre-training of an encoder, or fine-tuning of a model.")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="STEP")

    pre = tsub.add_parser("pretrain", help="masked-patch pre-training of an EEG or ECG encoder", formatter_class=fmt,
                          description="Masked-patch reconstruction pre-training with dual masking (random patches "
                                      "within leads, a time span in all leads, whole leads) of inputs "
                                      "reconstructed standardised per sample and lead. Logs the held-out loss beside "
                                      "the zero predictor's each epoch. Runs in resumable chunks (--minutes / "
                                      "--chunk-epochs, then --resume). Writes an encoder folder (encoder.safetensors "
                                      "+ encoder.json + history.json) usable as --eeg-init / --ecg-init.")
    pre.add_argument("--modality", choices=["eeg", "ecg"], required=True)
    pre.add_argument("--data", nargs="+", required=True, metavar="PATH",
                     help="files or folders: cinc2017 (records held out by label-stratified seed), WFDB records "
                          "(.hea), NeuroKit CSV, EDF; EEGMAT only for EEG and only --eegmat-subjects")
    pre.add_argument("--out", required=True, type=Path, help="encoder folder to write (e.g. models/encoders/ecg)")
    pre.add_argument("--eegmat-subjects", type=_subject_numbers, default=(),
                     help="EEG: EEGMAT subjects usable, e.g. 0-15 (the others never enter the corpus)")
    pre.add_argument("--holdout", type=float, default=0.1,
                     help="share of cinc2017 records (or of subjects) held out of pre-training")
    pre.add_argument("--layers", type=int, default=2, help="transformer layers")
    pre.add_argument("--ff", type=int, default=400, help="feed-forward size")
    pre.add_argument("--nhead", type=int, default=8)
    pre.add_argument("--epochs", type=int, default=5, help="epochs of the whole schedule")
    pre.add_argument("--steps-per-epoch", type=int, default=200, help="batches per epoch at most")
    pre.add_argument("--minutes", type=float, default=None,
                     help="end this call after the epoch that reaches M minutes (resume later with --resume)")
    pre.add_argument("--chunk-epochs", type=int, default=None, help="end this call after this many epochs")
    pre.add_argument("--batch-size", type=int, default=32)
    pre.add_argument("--lr", type=float, default=5e-4)
    pre.add_argument("--weight-decay", type=float, default=0.05)
    pre.add_argument("--output-init", choices=["zero", "kaiming"], default="zero",
                     help="initial output projection: zero (starts at the zero predictor) or CBraMod's Kaiming")
    pre.add_argument("--window", type=float, default=None, metavar="S",
                     help="sample length in seconds (default: 10 for ECG, 5 for EEG)")
    pre.add_argument("--hop", type=float, default=None, metavar="S", help="step between samples (default: half)")
    pre.add_argument("--patch-ratio", type=float, default=0.3, help="probability of masking each patch")
    pre.add_argument("--span-ratio", type=float, default=0.2,
                     help="share of the patches in one time span masked in all leads at once")
    pre.add_argument("--lead-ratio", type=float, default=None,
                     help="probability of masking a whole lead (default: 0.25 for ECG, 0.1 for EEG)")
    pre.add_argument("--max-abs-uv", type=float, default=None,
                     help="drop samples exceeding this |µV| (default: 100 for EEG, none for ECG)")
    pre.add_argument("--line-freq", type=float, default=50.0, help="mains frequency of the recordings (Hz)")
    pre.add_argument("--seed", type=int, default=0, help="model init, batches, masks and the hold-out draw")
    pre.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    pre.add_argument("--device", default="cpu")
    pre.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    pre.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.set_defaults(handler=_cmd_pretrain)

    prb = tsub.add_parser("probe", help="linear AF probe of a frozen pre-trained ECG encoder", formatter_class=fmt,
                          description="Logistic regression on frozen pooled embeddings (mean + std over patches) of "
                                      "cinc2017 records held out of the encoder's pre-training: atrial fibrillation "
                                      "(A) vs normal (N), AUROC by stratified CV inside the held-out records, beside "
                                      "the same probe on a randomly initialised encoder of the same architecture.")
    prb.add_argument("--encoder", required=True, type=Path, help="encoder folder from 'train pretrain'")
    prb.add_argument("--data", type=Path, default=None, help="cinc2017 folder (default: $RT_PHYSIO_DATA/cinc2017)")
    prb.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report here")
    prb.add_argument("--folds", type=int, default=5)
    prb.add_argument("--C", dest="c", type=float, default=0.1, help="logistic regression inverse regularisation")
    prb.add_argument("--pooling", choices=["mean", "mean-std", "mean-std-diff"], default="mean-std",
                     help="pooling of the patch embeddings over patches")
    prb.add_argument("--split", choices=["heldout", "design"], default="heldout",
                     help="held-out records (the figure to report) or a design set of pre-training-side records "
                          "(to choose probe settings without touching the held-out ones)")
    prb.add_argument("--seed", type=int, default=0)
    prb.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    prb.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    prb.set_defaults(handler=_cmd_probe)

    fin = tsub.add_parser("finetune", help="fine-tune the EEG + ECG fusion model on a labelled dataset",
                          formatter_class=fmt,
                          description="Fine-tune the fusion model (EEG encoder + ECG encoder, pooled embeddings "
                                      "concatenated, MLP head) and write a model folder (model.toml + weights).")
    fin.add_argument("--dataset", choices=["eegmat", "dreamer"], required=True)
    fin.add_argument("--data", required=True, type=Path, help="EEGMAT folder of EDFs, or DREAMER.mat")
    fin.add_argument("--out", required=True, type=Path, help="model folder to write (e.g. models/eegmat-fusion)")
    fin.add_argument("--modalities", type=_modalities, default=("eeg", "ecg"), help="eeg,ecg | eeg | ecg")
    fin.add_argument("--eeg-init", default=None, metavar="PATH",
                     help="EEG encoder init: official CBraMod pretrained_weights.pth, a .safetensors state dict, or "
                          "a 'train pretrain' folder (architecture taken from it)")
    fin.add_argument("--ecg-init", default=None, metavar="PATH", help="ECG encoder init (same forms)")
    fin.add_argument("--eeg-layers", type=int, default=4)
    fin.add_argument("--eeg-ff", type=int, default=400)
    fin.add_argument("--ecg-layers", type=int, default=2)
    fin.add_argument("--ecg-ff", type=int, default=400)
    fin.add_argument("--nhead", type=int, default=8)
    fin.add_argument("--head-hidden", type=int, default=128)
    fin.add_argument("--head-dropout", type=float, default=0.3)
    fin.add_argument("--epochs", type=int, default=10)
    fin.add_argument("--batch-size", type=int, default=32)
    fin.add_argument("--lr", type=float, default=3e-4, help="encoder learning rate")
    fin.add_argument("--head-lr", type=float, default=1e-3)
    fin.add_argument("--weight-decay", type=float, default=0.05)
    fin.add_argument("--modality-dropout", type=float, default=0.5,
                     help="probability that a window with both modalities loses one in training")
    fin.add_argument("--window", type=float, default=5.0, metavar="S")
    fin.add_argument("--train-hop", type=float, default=2.0, metavar="S", help="hop between training windows")
    fin.add_argument("--patience", type=int, default=0, help="stop after N epochs without gain (0: never)")
    fin.add_argument("--train-subjects", type=_subjects, default=(), help="default: the dataset's split")
    fin.add_argument("--val-subjects", type=_subjects, default=(), help="default: EEGMAT 28-31")
    fin.add_argument("--label-threshold", type=float, default=3.0, help="DREAMER: score > T is high")
    fin.add_argument("--line-freq", type=float, default=50.0, help="mains frequency of the recordings (Hz)")
    fin.add_argument("--weights-dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    fin.add_argument("--max-train-windows", type=int, default=None, help="cap on training windows per epoch")
    fin.add_argument("--seed", type=int, default=0)
    fin.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    fin.add_argument("--device", default="cpu")
    fin.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    fin.add_argument("--description", default="", help="model card description")
    fin.add_argument("--resume", action="store_true", help="continue from OUT/train-state.safetensors")
    fin.add_argument("--no-progress", action="store_true", help="no progress bar")
    fin.set_defaults(handler=_cmd_finetune)

    # "baseline" was this command's name before "baseline" came to mean only a person's rest period
    base = tsub.add_parser("classical", aliases=["baseline"], formatter_class=fmt,
                           help="train the classical model (band powers + HRV, logistic regression)",
                           description="Welch band powers per EEG channel and heart rate / SDNN / RMSSD per ECG "
                                       "window, one logistic regression per modality set; trained on EEGMAT "
                                       "subjects 00-27, C selected on 28-31. Writes a model folder (model.toml + "
                                       "weights.safetensors, no pickle).")
    base.add_argument("--dataset", choices=["eegmat"], required=True)
    base.add_argument("--data", required=True, type=Path, help="EEGMAT folder of EDFs")
    base.add_argument("--out", required=True, type=Path, help="model folder to write (e.g. models/eegmat-baseline)")
    base.add_argument("--calibrate", type=float, default=None, metavar="S",
                      help="also fit a calibrated parameter set on features centred on each subject's first S "
                           "seconds of rest (those windows are never trained on or scored)")
    base.add_argument("--model", choices=["logreg"], default="logreg")
    base.add_argument("--cv-json", type=Path, default=None, metavar="PATH",
                      help="also run 4-subject-fold cross-validation over every subject found and write it here")
    base.add_argument("--line-freq", type=float, default=50.0, help="mains frequency of the recordings (Hz)")
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    base.add_argument("--description", default="", help="model card description")
    base.set_defaults(handler=_cmd_classical)

    cal = tsub.add_parser("calibrate-head", help="add a calibrated head to a trained fusion model",
                          formatter_class=fmt,
                          description="Keep a fusion model's encoders; centre each subject's pooled embeddings on "
                                      "its first S s of rest and train a second head on them (EEGMAT subjects "
                                      "00-27, epoch selected on 28-31). Writes a new model folder that rt-physio "
                                      "run --calibrate S uses.")
    cal.add_argument("--model", required=True, metavar="NAME|PATH", help="trained fusion model")
    cal.add_argument("--data", required=True, type=Path, help="EEGMAT folder of EDFs")
    cal.add_argument("--out", required=True, type=Path, help="model folder to write")
    cal.add_argument("--calibrate", type=float, default=60.0, metavar="S", help="baseline length (s of rest)")
    cal.add_argument("--hidden", type=int, default=0,
                     help="hidden units of the calibrated head (0, the default: a logistic regression)")
    cal.add_argument("--epochs", type=int, default=150, help="epochs of an MLP head (--hidden > 0)")
    cal.add_argument("--finetune-epochs", type=int, default=0,
                     help="then train the encoders and both heads on centred embeddings for this many epochs")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--cache", type=Path, default=None, help="cache folder for preprocessed signals")
    cal.set_defaults(handler=_cmd_calibrate_head)

    from rt_physio.training.cv_cli import add_cv_parser

    add_cv_parser(tsub)  # train cv --dataset dreamer --protocol loso|kfold|subject-dependent

    ev = sub.add_parser("evaluate", help="score a model on a labelled folder (every subject found)",
                        formatter_class=fmt,
                        description="Score a model on every subject of an EEGMAT-style folder of EDFs (or a "
                                    "DREAMER.mat) and write balanced accuracy, F1, AUROC, AUC-PR overall and per "
                                    "subject, for each modality set, as JSON.")
    ev.add_argument("--model", required=True, metavar="NAME|PATH")
    ev.add_argument("--data", required=True, type=Path)
    ev.add_argument("--json", required=True, type=Path, metavar="OUT")
    ev.add_argument("--modalities", type=_modalities, action="append", default=None,
                    help="eeg,ecg | eeg | ecg (repeatable; default: every set the model supports)")
    ev.add_argument("--dataset", choices=["eegmat", "dreamer"], default="eegmat")
    ev.add_argument("--subjects", type=_subjects, default=None, help="only these subjects (default: all found)")
    ev.add_argument("--threshold", type=float, default=0.5, help="probability threshold for a positive window")
    ev.add_argument("--label-threshold", type=float, default=3.0, help="DREAMER: score > T is high")
    ev.add_argument("--line-freq", type=float, default=None, help="mains frequency (default: the dataset's)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--threads", type=int, default=None)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--cache", type=Path, default=None)
    ev.add_argument("--calibrate", type=float, default=None, metavar="S",
                    help="each subject's first S s of rest are its baseline (never scored); the other windows are "
                         "centred on it and scored by the model's calibrated head, as rt-physio run --calibrate S")
    ev.add_argument("--skip-baseline", type=float, default=None, metavar="S",
                    help="score without calibration but on the same windows as --calibrate S (the first S s of "
                         "each rest recording left out)")
    ev.add_argument("--smoothing", type=number_arg(maximum=3600.0, exclusive_minimum=False), default=None,
                    metavar="S", help="score each window's running mean over its recording's last S s, as rt-physio "
                                      "run publishes it; 0: every window on its own (default: the model's "
                                      "outputs.smoothing_s)")
    ev.add_argument("--include-training-subjects", action="store_true",
                    help="also score subjects the model's provenance lists as training or selection subjects "
                         "(refused by default; the report then says they are not held out)")
    ev.set_defaults(handler=_cmd_evaluate)


def _subject_numbers(text: str) -> tuple[int, ...]:
    """``0-15`` or ``0,1,2`` -> subject numbers."""
    try:
        return tuple(int(s.removeprefix("Subject")) for s in _subjects(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected subject numbers such as 0-15, got {text!r}") from exc


def _cmd_pretrain(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.training.pretrain import EpochStats, PretrainConfig, pretrain

    cfg = PretrainConfig(
        modality=args.modality, data=tuple(str(p) for p in args.data), out=str(args.out), n_layer=args.layers,
        dim_feedforward=args.ff, nhead=args.nhead, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, output_init=args.output_init,
        window_s=args.window, hop_s=args.hop, patch_ratio=args.patch_ratio, span_ratio=args.span_ratio,
        lead_ratio=args.lead_ratio,
        max_abs_uv=args.max_abs_uv, eegmat_subjects=args.eegmat_subjects, holdout_fraction=args.holdout,
        line_freq=args.line_freq, seed=args.seed, threads=args.threads, device=args.device,
        cache=str(args.cache) if args.cache else None, resume=args.resume, minutes=args.minutes,
        chunk_epochs=args.chunk_epochs, command=command_line(),
    )

    def show(s: EpochStats) -> None:
        out.write(f"epoch {s.epoch}/{cfg.epochs}: train {s.train_loss:.4f} | held-out {s.heldout_loss:.4f} vs zero "
                  f"predictor {s.zero_loss:.4f} (ratio {s.ratio:.3f}) | {s.seconds:.0f} s\n")
        out.flush()

    result = pretrain(cfg, on_epoch=show, progress=not args.no_progress)
    state = "finished" if result.finished else "stopped early; continue with --resume"
    out.write(f"wrote {result.out} ({state}; {result.n_windows} training windows from {result.n_recordings} "
              f"recordings, {result.seconds:.0f} s)\n")
    return 0


def _cmd_probe(args: argparse.Namespace, out: TextIO) -> int:
    import os

    from rt_physio.training.common import set_threads
    from rt_physio.training.probe import probe_af

    set_threads(args.threads)
    data = args.data or Path(os.environ.get("RT_PHYSIO_DATA", "../shared/data")) / "cinc2017"
    report = probe_af(args.encoder, data, folds=args.folds, seed=args.seed, c=args.c, cache=args.cache,
                      pooling=args.pooling, split=args.split)
    report["command"] = command_line()
    for kind in ("pretrained", "random_init"):
        r = report[kind]
        out.write(f"{kind:11s} AF vs N AUROC {r['auroc']:.3f} (folds {r['auroc_fold_mean']:.3f} ± "
                  f"{r['auroc_fold_sd']:.3f}) on {report['n_af']} A + {report['n_normal']} N {args.split} records, "
                  f"{args.pooling} pooling\n")
    write_report(args.json, report, out)
    return 0


def _cmd_finetune(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.training.finetune import EpochReport, FinetuneConfig, finetune

    cfg = FinetuneConfig(
        dataset=args.dataset, data=str(args.data), out=str(args.out), modalities=args.modalities,
        eeg_layers=args.eeg_layers, eeg_ff=args.eeg_ff, ecg_layers=args.ecg_layers, ecg_ff=args.ecg_ff,
        nhead=args.nhead, head_hidden=args.head_hidden, head_dropout=args.head_dropout, eeg_init=args.eeg_init,
        ecg_init=args.ecg_init, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
        weight_decay=args.weight_decay, modality_dropout=args.modality_dropout, window_s=args.window,
        train_hop_s=args.train_hop, patience=args.patience, seed=args.seed, threads=args.threads, device=args.device,
        line_freq=args.line_freq, label_threshold=args.label_threshold, validation_subjects=args.val_subjects,
        train_subjects=args.train_subjects, weights_dtype=args.weights_dtype,
        cache=str(args.cache) if args.cache else None, max_train_windows=args.max_train_windows,
        resume=args.resume, description=args.description, command=command_line(),
    )

    def show(report: EpochReport) -> None:
        parts = "  ".join(f"{k}: auroc {v['auroc']:.3f} bal-acc {v['balanced_accuracy']:.3f}"
                          for k, v in report.validation.items())
        out.write(f"epoch {report.epoch}: loss {report.loss:.4f} | val {parts} | {report.seconds:.0f} s"
                  f"{'  *best' if report.best else ''}\n")
        out.flush()

    result = finetune(cfg, on_epoch=show, progress=not args.no_progress)
    out.write(f"wrote {result.out} (epoch {result.best_epoch} selected, weights sha256 {result.sha256}, "
              f"{result.seconds:.0f} s)\n")
    return 0


def _cmd_calibrate_head(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.training.calibrated_head import CalibratedFinetune, train_calibrated_head

    result, sha256 = train_calibrated_head(args.model, args.data, args.out, seconds=args.calibrate,
                                           hidden=args.hidden, epochs=args.epochs, seed=args.seed, cache=args.cache,
                                           command=command_line(),
                                           finetune=CalibratedFinetune(epochs=args.finetune_epochs))
    for key, res in result.validation.items():
        out.write(f"validation calibrated {key:8s} n={res['n_windows']:<4d} bal-acc {res['balanced_accuracy']:.4f}  "
                  f"auroc {res['auroc']:.4f}\n")
    out.write(f"wrote {args.out} (weights sha256 {sha256})\n")
    return 0


def _cmd_classical(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.training.classical.train import ClassicalConfig, train_classical_model

    cfg = ClassicalConfig(
        data=str(args.data), out=str(args.out), dataset=args.dataset, calibrate=args.calibrate, model=args.model,
        cv_json=str(args.cv_json) if args.cv_json else None, seed=args.seed, line_freq=args.line_freq,
        cache=str(args.cache) if args.cache else None, description=args.description, command=command_line(),
    )
    result = train_classical_model(cfg)
    for kind, sets in result.validation.items():
        for key, res in sets.items():
            out.write(f"validation {kind:26s} {key:8s} n={res['n_windows']:<4d} bal-acc "
                      f"{res['balanced_accuracy']:.4f}  auroc {res['auroc']:.4f}\n")
    if result.cross_validation is not None:
        for kind, sets in result.cross_validation["summary"].items():
            for key, res in sets.items():
                mean, sd = res["mean_over_folds"], res["sd_over_folds"]
                out.write(f"cv {kind:26s} {key:8s} bal-acc {mean['balanced_accuracy']:.4f} ± "
                          f"{sd['balanced_accuracy']:.4f}  auroc {mean['auroc']:.4f} ± {sd['auroc']:.4f}\n")
    out.write(f"wrote {result.out} (weights sha256 {result.sha256}, {result.seconds:.0f} s)\n")
    return 0


def _cmd_evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from rt_physio.training.evaluate import evaluate

    if args.batch_size < 1:
        raise ConfigError(f"The 'batch-size' parameter must be positive, got {args.batch_size}.")
    report: dict[str, Any] = evaluate(
        args.model, args.data, modality_sets=args.modalities, dataset=args.dataset, subjects=args.subjects,
        threshold=args.threshold, label_threshold=args.label_threshold, line_freq=args.line_freq,
        batch_size=args.batch_size, threads=args.threads, device=args.device, cache=args.cache,
        calibrate=args.calibrate, skip_baseline=args.skip_baseline,
        include_training_subjects=args.include_training_subjects, smoothing=args.smoothing,
    )
    write_report(args.json, report)
    for key, res in report.items():
        out.write(f"{key:8s} n={res['n_windows']:<5d} bal-acc {res['balanced_accuracy']:.4f}  f1 {res['f1']:.4f}  "
                  f"auroc {res['auroc']:.4f}  auc-pr {res['auc_pr']:.4f}\n")
    warning = next((res["warning"] for res in report.values() if "warning" in res), None)
    if warning:
        out.write(f"WARNING: {warning}\n")
    out.write(f"wrote {args.json}\n")
    return 0
