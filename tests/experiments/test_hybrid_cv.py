"""The hybrid CV: folds never select on their held-out subjects; calibration removes per-person offsets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rt_physio.experiments.blocks import attention_blocks, combine, region_block
from rt_physio.experiments.hybrid_cv import Smoothing, cross_validate, run_fold
from rt_physio.experiments.region_features import COMPACT_FEATURES, REGION_FEATURES
from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS
from rt_physio.training.datasets.prepare import PreparedRecording
from rt_physio.training.datasets.windows import WindowDataset
from rt_physio.training.hybrid import C_GRID, Windows, fingerprint, select_c


def _fake(n_subjects: int = 32, per: int = 24, seed: int = 0) -> tuple[Windows, tuple]:
    """Windows whose EEG feature is label + a large per-person offset; ECG feature is a weak label signal."""
    rng = np.random.default_rng(seed)
    subjects, labels, starts, conditions, x = [], [], [], [], []
    for s in range(n_subjects):
        offset = rng.normal(scale=3.0)
        for i in range(per):
            task = i >= per // 2
            subjects.append(f"Subject{s:02d}")
            labels.append(float(task))
            conditions.append("task" if task else "rest")
            starts.append(5.0 * (i - (per // 2 if task else 0)))
            x.append([offset + task + rng.normal(scale=0.3), 0.5 * task + rng.normal(scale=1.0)])
    n = len(labels)
    present = np.ones((n, 2), dtype=bool)
    names = np.array([f"{s}_{c}" for s, c in zip(subjects, conditions, strict=True)], dtype=object)
    ds = SimpleNamespace(present=present, starts=np.array(starts), conditions=np.array(conditions, dtype=object),
                         n_patches=5, names=names, window=1000)
    windows = Windows(ds, np.array(labels), np.array(subjects, dtype=object))  # type: ignore[arg-type]
    block = (np.array(x, dtype=np.float32), present.copy(), np.array([0, 1]))
    return windows, block


def test_cv_keeps_held_out_subjects_out_of_selection_and_calibration_helps() -> None:
    windows, block = _fake()
    weak = (block[0][:, 1:].copy(), block[1], block[2][1:])  # the ECG feature alone: an arm to pair against
    report = cross_validate(windows, {"classical": [block, block], "weak": [weak, weak]}, calibrate=30.0,
                            c_grid=(0.01, 1.0))
    for key in ("classical/uncal", "classical/cal", "weak/cal"):
        runs = report["arms"][key]["runs"]
        assert len(runs) == 16  # 8 folds x 2 seeds
        for r in runs:
            assert r["eeg,ecg"]["n_windows"] == 4 * (24 - 6)  # the 30-s baseline (6 rest windows) never scored
    s_uncal = report["arms"]["classical/uncal"]["summary"]["eeg,ecg"]["auroc"]["mean"]
    s_cal = report["arms"]["classical/cal"]["summary"]["eeg,ecg"]["auroc"]["mean"]
    assert s_cal > 0.95 and s_cal > s_uncal + 0.1  # centring on each person's rest removes the offsets
    diff = report["paired_auroc_vs_classical"]["weak/cal"]["eeg,ecg"]
    assert diff["mean"] < 0 and diff["folds_above"] <= 2 and len(diff["per_fold"]) == 8


def test_select_c_never_reads_the_held_out_fold() -> None:
    windows, (x, present, fm) = _fake()
    y, subj = windows.labels, windows.subjects
    names = sorted(set(subj.tolist()))
    folds = [names[i:i + 4] for i in range(4, 32, 4)]  # the first 4 subjects are a held-out fold
    held = np.isin(subj, names[:4])
    rows = np.ones(len(y), dtype=bool)
    c, scores = select_c(x, present, y, fm, subj, rows & ~held, rows & ~held, folds)
    scrambled = x.copy()
    scrambled[held] = np.random.default_rng(1).normal(size=scrambled[held].shape) * 100.0
    assert select_c(scrambled, present, y, fm, subj, rows & ~held, rows & ~held, folds) == (c, scores)
    assert c in C_GRID and set(scores) == {str(v) for v in C_GRID}


def test_the_cv_head_and_its_platt_maps_never_read_the_held_out_fold() -> None:
    windows, block = _fake()
    names = sorted(set(windows.subjects.tolist()))
    held = np.isin(windows.subjects, names[:4])
    scrambled = block[0].copy()
    scrambled[held] = np.random.default_rng(3).normal(size=scrambled[held].shape) * 100.0
    heads = []
    for x in (block[0], scrambled):
        fitted: dict = {}
        fold_block = (x, block[1], block[2])
        run_fold(fold_block, windows, block[1], windows.baseline(30.0), names[:4], True,
                 [names[i:i + 4] for i in range(0, 32, 4)], fitted, (0.01, 1.0))
        (head, c, _), = fitted.values()
        heads.append((head, c))
    (a, ca), (b, cb) = heads
    assert ca == cb
    for field in ("mean", "scale", "coef", "flag_coef", "platt"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.allclose(a.platt, [[1.0, 0.0]] * 3)  # the maps were fitted (on the 7 training folds' logits)


def test_smoothed_variants_average_each_recording_and_the_continuous_one_pays_the_lag() -> None:
    windows, block = _fake()
    weak = (block[0][:, 1:].copy(), block[1], block[2][1:])  # 0.5 * label + noise of SD 1: a noisy reading
    report = cross_validate(windows, {"weak": [weak]}, calibrate=30.0, c_grid=(1.0,),
                            smoothing=[Smoothing(30.0), Smoothing(30.0, continuous=True)])
    auroc = {k: a["summary"]["ecg"]["auroc"]["mean"] for k, a in report["arms"].items()}
    assert set(auroc) == {f"weak{v}/{c}" for v in ("", "+s30", "+s30c") for c in ("uncal", "cal")}
    for cal in ("uncal", "cal"):
        # six 5-s windows per mean: the noise shrinks; rest outputs carried into the task's first 30 s cost some
        assert auroc[f"weak+s30/{cal}"] > auroc[f"weak/{cal}"] + 0.05
        assert auroc[f"weak+s30c/{cal}"] < auroc[f"weak+s30/{cal}"]
        gain = report["paired_auroc_vs_classical"][f"weak+s30/{cal}"]["ecg"]  # against itself, window by window
        assert gain["mean"] == pytest.approx(auroc[f"weak+s30/{cal}"] - auroc[f"weak/{cal}"])
        runs = report["arms"][f"weak+s30/{cal}"]["runs"]
        assert [r["ecg"]["n_windows"] for r in runs] == [r["ecg"]["n_windows"] for r in
                                                          report["arms"][f"weak/{cal}"]["runs"]]


def test_attention_queries_of_a_fold_never_read_its_held_out_subjects(tmp_path) -> None:
    windows, _ = _fake(n_subjects=8, per=10)
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(len(windows), 2, 5, 200)).astype(np.float32)
    emb[:, 0, 0, 0] += 3.0 * windows.labels  # a label-carrying patch
    names = sorted(set(windows.subjects.tolist()))
    folds = [names[i:i + 4] for i in range(0, 8, 4)]
    held = np.isin(windows.subjects, folds[0])
    blocks = []
    for variant in ("as-is", "scrambled"):
        cache = tmp_path / variant
        cache.mkdir()
        e = emb.copy()
        if variant == "scrambled":
            e[held] = rng.normal(size=e[held].shape)
        np.save(cache / f"patches-eeg_enc-{fingerprint(windows)}.npy", e)  # read instead of running an encoder
        blocks.append(attention_blocks(windows, cache, [{"eeg": Path("enc")}] * 2, folds))
    (x_a, p_a, fm_a), (x_b, _, _) = blocks[0][0], blocks[1][0]
    assert x_a.shape == (len(windows), 200) and fm_a.tolist() == [0] * 200 and not p_a[:, 1].any()
    np.testing.assert_array_equal(x_a[~held], x_b[~held])  # same queries: the held-out fold was never read
    assert not np.array_equal(blocks[0][1][0], blocks[1][1][0])  # fold 1's queries did read fold 0


def test_region_block_reads_each_window_by_channel_name_and_leaves_ecg_presence_to_the_other_blocks(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    t = np.arange(4000) / 200.0  # 20 s: four 5-s windows per recording
    frontal = [i for i, n in enumerate(EEGMAT_EEG_CHANNELS) if n.startswith(("F", "Fp"))]
    recs = []
    for task in (False, True):
        eeg = rng.normal(scale=0.1, size=(len(EEGMAT_EEG_CHANNELS), t.size)).astype(np.float32)
        if task:
            eeg[frontal] += np.sin(2 * np.pi * 6.0 * t).astype(np.float32)  # frontal theta during the task
        signals = {"eeg": eeg} | ({} if task else {"ecg": rng.normal(size=(1, t.size)).astype(np.float32)})
        recs.append(PreparedRecording("S01", f"S01_{int(task) + 1}", "task" if task else "rest",
                                      {"workload": float(task)}, signals))
    ds = WindowDataset(recs, ["workload"], window_s=5.0, hop_s=5.0)
    windows = Windows(ds, ds.labels[:, 0].astype(np.float64), ds.subjects)
    x, present, fm = region_block(windows, tmp_path)
    assert x.shape == (8, len(REGION_FEATURES)) and fm.tolist() == [0] * len(REGION_FEATURES)
    assert present.all()  # EEG in every window; the ECG flag is the other blocks' to set
    theta = REGION_FEATURES.index("frontal_logpow_theta")
    assert x[windows.labels == 1, theta].min() > x[windows.labels == 0, theta].max() + 1.0
    assert len(list(tmp_path.glob("regions-*.npz"))) == 1
    compact, _, _ = region_block(windows, tmp_path, COMPACT_FEATURES)  # read from the cache, columns picked
    np.testing.assert_array_equal(compact, x[:, [REGION_FEATURES.index(n) for n in COMPACT_FEATURES]])
    other = (np.zeros((8, 1), dtype=np.float32), ds.present.copy(), np.array([1]))
    assert np.array_equal(combine(other, (x, present, fm))[1], ds.present)  # no ECG in the task windows stays so
    with pytest.raises(ValueError, match="channel_names"):
        region_block(windows, tmp_path, channel_names=["Fz", "Cz"])
