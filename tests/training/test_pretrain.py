"""Pre-training: the cinc2017 reader and hold-out, corpora that keep EEGMAT out, resumable chunks, the AF probe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rt_physio.cli import main
from rt_physio.errors import ConfigError, DatasetError
from rt_physio.nn import CBraMod
from rt_physio.training.datasets.cinc2017 import holdout_split, load_cinc2017, load_cinc_record, read_reference
from rt_physio.training.encoders import load_encoder, pooled_features, random_encoder
from rt_physio.training.pretrain import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    OUTPUT_INITS,
    EpochStats,
    PretrainConfig,
    pretrain,
)
from rt_physio.training.pretrain_data import build_corpus
from rt_physio.training.pretrain_reference import reference_report
from rt_physio.training.pretrain_report import collect, masking_breakdown, plot
from rt_physio.training.probe import probe_af

from .conftest import eegmat_subset


@pytest.fixture(scope="module")
def cinc_dir(data_dir: Path) -> Path:
    path = data_dir / "cinc2017"
    assert (path / "REFERENCE.csv").is_file(), f"cinc2017 records missing from {path} (see ../shared/data)"
    return path


def cinc_subset(src: Path, dst: Path, per_label: int) -> Path:
    """A small cinc2017-layout folder: symlinks to the first ``per_label`` N and A records + their REFERENCE."""
    labels = read_reference(src)
    dst.mkdir(parents=True, exist_ok=True)
    rows = []
    for code in ("N", "A"):
        for rec in [r for r, lab in labels.items() if lab == code][:per_label]:
            for ext in (".mat", ".hea"):
                (dst / f"{rec}{ext}").symlink_to(src / f"{rec}{ext}")
            rows.append(f"{rec},{code}")
    (dst / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return dst


def test_cinc_reader_matches_wfdb_on_real_records(cinc_dir: Path) -> None:
    import wfdb

    labels = read_reference(cinc_dir)
    assert len(labels) == 6000
    assert {k: sum(v == k for v in labels.values()) for k in "NAO~"} == {"N": 3690, "A": 514, "O": 1764, "~": 32}
    rec = load_cinc_record(cinc_dir, "A00001", labels["A00001"])
    sig = rec.signals["ecg"]
    assert sig.sfreq == 300.0 and sig.data.shape == (9000, 1) and rec.condition == "N"
    ref = wfdb.rdrecord(str(cinc_dir / "A00001"), physical=True)
    np.testing.assert_allclose(sig.data[:, 0], ref.p_signal[:, 0] * 1000.0, atol=1e-3)  # mV -> µV
    assert 200.0 < float(np.abs(sig.data).max()) < 5000.0  # a QRS of a few hundred µV to a few mV


def test_holdout_is_stratified_seeded_and_disjoint(cinc_dir: Path) -> None:
    labels = read_reference(cinc_dir)
    train, held = holdout_split(labels, 0.1, seed=0)
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(labels)
    counts = {k: sum(labels[r] == k for r in held) for k in "NAO~"}
    assert counts == {"N": 369, "A": 51, "O": 176, "~": 3}
    assert holdout_split(labels, 0.1, seed=0) == (train, held)
    assert holdout_split(labels, 0.1, seed=1)[1] != held


def test_ecg_corpus_never_trains_on_held_out_records_or_eegmat(cinc_dir: Path, data_dir: Path, tmp_path: Path,
                                                              cache_dir: Path) -> None:
    small = cinc_subset(cinc_dir, tmp_path / "cinc", 20)
    corpus = build_corpus("ecg", [small, data_dir / "eegmat", data_dir / "neurokit" / "ecg_1000hz.csv"],
                          holdout_fraction=0.25, seed=3, cache=cache_dir)
    held = corpus.description["cinc2017_heldout_records"]
    assert sorted(r.name for r in corpus.heldout) == held and len(held) == 10
    train_names = {r.name for r in corpus.train}
    assert train_names.isdisjoint(held)
    assert not any(n.startswith("Subject") for n in train_names)  # EEGMAT never enters an ECG corpus
    assert "ecg_1000hz" in train_names and len(train_names) == 31
    assert len(load_cinc2017(small)) == 40


def test_eeg_corpus_uses_only_the_allowed_eegmat_subjects(eegmat_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = eegmat_subset(eegmat_dir, tmp_path / "eegmat", [1, 2, 20])
    corpus = build_corpus("eeg", [data], eegmat_subjects=range(16), holdout_fraction=0.1, seed=0, cache=cache_dir)
    names = {r.name for r in corpus.train} | {r.name for r in corpus.heldout}
    assert names == {"Subject01_1", "Subject01_2", "Subject02_1", "Subject02_2"}  # Subject20 is not allowed
    # one whole person held out (both files), the other trains
    assert corpus.description["heldout_subjects"] in (["Subject01"], ["Subject02"])
    held = corpus.description["heldout_subjects"][0]
    assert {r.name for r in corpus.heldout} == {f"{held}_1", f"{held}_2"}
    assert all(r.signals["eeg"].shape[0] >= 19 for r in corpus.train)
    with pytest.raises(DatasetError, match="eegmat-subjects"):
        build_corpus("eeg", [data], cache=cache_dir)


def _tiny(data: tuple[str, ...], out: Path, cache: Path, **kw: object) -> PretrainConfig:
    base: dict[str, object] = {"modality": "ecg", "data": data, "out": str(out), "n_layer": 1, "dim_feedforward": 32,
                               "epochs": 2, "steps_per_epoch": 3, "batch_size": 8, "holdout_fraction": 0.25,
                               "heldout_windows": 16, "cache": str(cache), "threads": 1}
    base.update(kw)
    return PretrainConfig(**base)  # type: ignore[arg-type]


def test_pretrain_in_chunks_resumes_where_it_stopped(cinc_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = (str(cinc_subset(cinc_dir, tmp_path / "cinc", 8)),)
    whole = pretrain(_tiny(data, tmp_path / "whole", cache_dir), progress=False)
    assert whole.finished and [h.epoch for h in whole.history] == [1, 2]
    first = pretrain(_tiny(data, tmp_path / "chunks", cache_dir, chunk_epochs=1), progress=False)
    assert not first.finished and (tmp_path / "chunks" / CHECKPOINT_FILE).is_file()
    meta = json.loads((tmp_path / "chunks" / "encoder.json").read_text())
    assert meta["finished"] is False and meta["epochs"] == 1
    seen: list[EpochStats] = []
    second = pretrain(_tiny(data, tmp_path / "chunks", cache_dir, resume=True), on_epoch=seen.append,
                      progress=False)
    assert [s.epoch for s in seen] == [2] and second.finished
    assert not (tmp_path / "chunks" / CHECKPOINT_FILE).is_file()
    # the resumed run is the uninterrupted run: same losses, same weights
    assert [h.heldout_loss for h in second.history] == pytest.approx([h.heldout_loss for h in whole.history])
    a, b = load_encoder(tmp_path / "whole"), load_encoder(tmp_path / "chunks")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)
    history = json.loads((tmp_path / "chunks" / HISTORY_FILE).read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:  # the zero predictor is logged beside the model on the same held-out windows, order 1
        assert 0.5 < h["zero_loss"] < 2.0 and h["ratio"] == pytest.approx(h["heldout_loss"] / h["zero_loss"])
    again = pretrain(_tiny(data, tmp_path / "chunks", cache_dir, resume=True), progress=False)
    assert again.finished and again.seconds == 0.0  # nothing left to do
    # the non-learned reference is scored once on the same held-out windows and masks as the model
    ref = json.loads((tmp_path / "chunks" / "encoder.json").read_text())["reference"]
    assert ref["zero_loss"] == pytest.approx(history[0]["zero_loss"])
    assert ref["ratio"] == pytest.approx(ref["heldout_loss"] / ref["zero_loss"]) and 0.0 < ref["ratio"] < 1.5


def test_zero_output_init_starts_at_the_zero_predictor(cinc_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = (str(cinc_subset(cinc_dir, tmp_path / "cinc", 8)),)
    first = {init: pretrain(_tiny(data, tmp_path / init, cache_dir, epochs=1, steps_per_epoch=2, output_init=init),
                            progress=False).history[0] for init in OUTPUT_INITS}
    # CBraMod's Kaiming output layer starts far above the zero predictor (~1); a zero one starts at it
    assert first["kaiming"].train_loss > 1.5
    assert first["zero"].train_loss < 1.2 and first["zero"].ratio < 1.05
    with pytest.raises(ConfigError, match="output_init"):
        pretrain(_tiny(data, tmp_path / "bad", cache_dir, output_init="xavier"), progress=False)


def test_cli_pretrain_then_probe_against_a_random_encoder(cinc_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    data = cinc_subset(cinc_dir, tmp_path / "cinc", 24)
    buf = io.StringIO()
    rc = main(["train", "pretrain", "--modality", "ecg", "--data", str(data), "--out", str(tmp_path / "enc"),
               "--layers", "1", "--ff", "32", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
               "--holdout", "0.25", "--threads", "1", "--cache", str(cache_dir), "--no-progress",
               "--output-init", "kaiming"], out=buf)
    assert rc == 0, buf.getvalue()
    assert "zero predictor" in buf.getvalue() and "finished" in buf.getvalue()
    report = probe_af(tmp_path / "enc", data, folds=3, cache=cache_dir)
    assert report["n_af"] == 6 and report["n_normal"] == 6
    for kind in ("pretrained", "random_init"):
        assert 0.0 <= report[kind]["auroc"] <= 1.0 and len(report[kind]["auroc_per_fold"]) == 3
    out = tmp_path / "probe.json"
    rc = main(["train", "probe", "--encoder", str(tmp_path / "enc"), "--data", str(data), "--folds", "3",
               "--cache", str(cache_dir), "--json", str(out)], out=io.StringIO())
    assert rc == 0 and json.loads(out.read_text())["random_init"]["auroc"] == report["random_init"]["auroc"]
    design = probe_af(tmp_path / "enc", data, folds=3, cache=cache_dir, split="design", pooling="mean-std-diff")
    assert design["n_af"] == 18 and set(design["records"]).isdisjoint(report["records"])
    summary = collect([tmp_path / "enc"], [out])
    enc = summary["encoders"]["enc"]
    assert enc["goal_ratio"] == 0.5 and enc["goal_met"] == (enc["final"]["ratio"] <= 0.5)
    assert enc["corpus"]["cinc2017_heldout_count"] == 12 and "records" not in summary["probes"][0]
    # the reference report rebuilds the very held-out windows and masks the run was scored on
    ref = reference_report(tmp_path / "enc", cache=cache_dir)
    meta = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert ref["period_copy_x0.5"] == pytest.approx(meta["reference"]["ratio"], rel=1e-6)
    assert meta["config"]["output_init"] == "kaiming"
    assert ref["windows"] > 0 and 0.0 < ref["oracle_lag_copy_x0.5"] < ref["oracle_lag_copy_x1"] + 1.0
    parts = masking_breakdown(tmp_path / "enc", windows=16, cache=cache_dir)
    assert set(parts) == {"patches only", "time span only", "training mix"}  # single lead: no whole-lead part
    assert all(v > 0 for v in parts.values())
    plot(summary, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_pooled_features_and_random_encoder_shapes() -> None:
    torch.manual_seed(0)
    enc = CBraMod(n_layer=1, dim_feedforward=32)
    x = np.random.default_rng(0).normal(size=(5, 2, 3, 200)).astype(np.float32)
    feats = pooled_features(enc, x, batch_size=2)
    assert feats.shape == (5, 400) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:2], pooled_features(enc, x[:2]), rtol=1e-5, atol=1e-6)
    assert np.all(feats[:, 200:] >= 0)  # the second half is a standard deviation
    both = pooled_features(enc, x, pooling="mean-std-diff")
    assert both.shape == (5, 600) and pooled_features(enc, x, pooling="mean").shape == (5, 200)
    np.testing.assert_allclose(both[:, :400], feats, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        pooled_features(enc, x, pooling="max")
    rand = random_encoder(enc, seed=1)
    assert len(rand.encoder.layers) == 1 and not torch.equal(rand.proj_out[0].weight, enc.proj_out[0].weight)
