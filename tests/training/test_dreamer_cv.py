"""The DREAMER protocols (``train cv``) on a synthetic DREAMER.mat whose arousal labels the signals carry."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from rt_physio.errors import DatasetError
from rt_physio.training.datasets.dreamer import load_dreamer, read_dreamer
from rt_physio.training.datasets.dreamer_synthetic import SyntheticDreamer, write_synthetic_dreamer
from rt_physio.training.dreamer_cv import Use, run_protocol
from rt_physio.training.dreamer_trials import TrialTable, load_trials
from rt_physio.training.protocols import make_folds

N_SUBJECTS, N_TRIALS = 6, 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], TrialTable]:
    folder = tmp_path_factory.mktemp("dreamer")
    path = folder / "DREAMER.mat"
    scores = write_synthetic_dreamer(path, SyntheticDreamer(n_subjects=N_SUBJECTS, n_trials=N_TRIALS, stimulus_s=20.0,
                                                            baseline_s=10.0))
    return path, scores, load_trials(path, cache=folder / "cache")


def test_synthetic_file_has_dreamer_layout_and_labels(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable]
                                                      ) -> None:
    path, scores, table = synthetic
    a = read_dreamer(scipy.io.loadmat(str(path)), source=path)
    b = load_dreamer(path)  # squeeze_me / struct_as_record=False
    assert [r.name for r in a] == [r.name for r in b]
    assert len(b) == N_SUBJECTS * N_TRIALS * 2
    assert b[0].signals["eeg"].sfreq == 128.0 and b[0].signals["ecg"].n_channels == 2
    assert len(table.subject_of) == N_SUBJECTS * N_TRIALS
    for s in range(N_SUBJECTS):
        for j in range(N_TRIALS):
            assert table.labels["arousal"][f"S{s + 1:02d}_clip{j + 1:02d}"] == int(scores["arousal"][s, j] > 3)
    assert sum(table.labels["arousal"].values()) == N_SUBJECTS * N_TRIALS // 2


def test_protocol_folds() -> None:
    subject_of = {f"S{s}_t{t}": f"S{s}" for s in range(5) for t in range(6)}
    loso = make_folds("loso", subject_of)
    assert [f.name for f in loso] == [f"S{s}" for s in range(5)]
    kfold = make_folds("kfold", subject_of, folds=2, seed=3)
    assert sorted(t for f in kfold for t in f.test) == sorted(subject_of)
    labels = {t: int(t.endswith(("t0", "t1", "t2"))) for t in subject_of}
    dep = make_folds("subject-dependent", subject_of, folds=3, labels=labels)
    assert len(dep) == 15
    for fold in dep:
        assert {subject_of[t] for t in fold.test} == {subject_of[t] for t in fold.train} == {fold.group}
        assert sorted(labels[t] for t in fold.test) == [0, 1]  # stratified: 3 high + 3 low over 3 folds
    for fold in (*loso, *kfold, *dep):
        for fit, select in fold.inner:
            assert fit and select and not set(fit + select) & set(fold.test)
    with pytest.raises(ValueError, match="loso has one fold per subject"):
        make_folds("loso", subject_of, folds=3)
    with pytest.raises(ValueError, match="kfold needs 2 <= folds"):
        make_folds("kfold", subject_of, folds=6)
    with pytest.raises(ValueError, match="fewest trials"):
        make_folds("subject-dependent", subject_of, folds=7)


def test_loso_recovers_arousal_on_held_out_subjects(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable]
                                                    ) -> None:
    table = synthetic[2]
    report = run_protocol(table, "loso", target="arousal", baseline="trial")
    assert [g["group"] for g in report["groups"]] == [f"S{s + 1:02d}" for s in range(N_SUBJECTS)]
    trial = report["summary"]["trial"]
    assert trial["auroc"]["n"] == N_SUBJECTS
    assert trial["auroc"]["mean"] >= 0.9, trial
    assert trial["balanced_accuracy"]["mean"] >= 0.8, trial
    assert min(g["trial"]["auroc"] for g in report["groups"]) >= 0.75
    assert report["pooled"]["trial"]["auroc"] >= 0.9
    assert report["summary"]["window"]["auroc"]["mean"] >= 0.85
    assert all(g["trial"]["n"] == N_TRIALS for g in report["groups"])


@pytest.mark.parametrize(("protocol", "folds", "baseline"), [
    ("loso", None, "subject"), ("loso", None, "trial"), ("kfold", 3, "subject"),
    ("subject-dependent", 3, "subject"), ("subject-dependent", 2, "trial"),
])
def test_no_test_window_reaches_fitting_or_selection(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable],
                                                     protocol: str, folds: int | None, baseline: str) -> None:
    table = synthetic[2]
    uses: list[Use] = []
    report = run_protocol(table, protocol, target="arousal", baseline=baseline, folds=folds, seed=1,
                          audit=uses.append)
    test_of = {f["fold"]: set(f["test_trials"]) for g in report["groups"] for f in g["folds"]}
    tested: list[str] = []
    stages = {u.stage for u in uses}
    assert stages == {"select-fit", "select-score", "fit", "test"}
    for use in uses:
        test = test_of[use.fold]
        assert use.n_windows > 0
        if use.stage == "test":
            assert use.trials == test
            tested.extend(use.trials)
            continue
        touched = use.trials | use.baseline_trials
        assert not touched & test, (use.stage, use.fold, sorted(touched & test))
        if protocol == "subject-dependent":
            assert {table.subject_of[t] for t in touched} == {table.subject_of[t] for t in test}
        else:  # no window of a test subject, stimulus or baseline, in fitting or selection
            assert not {table.subject_of[t] for t in touched} & {table.subject_of[t] for t in test}
    assert sorted(tested) == sorted(table.subject_of)  # each trial scored exactly once


def test_test_labels_never_used(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable]) -> None:
    table = synthetic[2]
    flipped = {t: 1 - y if table.subject_of[t] == "S03" else y for t, y in table.labels["arousal"].items()}
    poisoned = dataclasses.replace(table, labels={**table.labels, "arousal": flipped})
    a = {g["group"]: g for g in run_protocol(table, "loso", target="arousal", baseline="subject")["groups"]}
    b = {g["group"]: g for g in run_protocol(poisoned, "loso", target="arousal", baseline="subject")["groups"]}
    # the held-out subject's labels only score its fold: same C, same selection, mirrored AUROC
    assert a["S03"]["folds"][0]["C"] == b["S03"]["folds"][0]["C"]
    assert a["S03"]["folds"][0]["selection_window_auroc"] == b["S03"]["folds"][0]["selection_window_auroc"]
    assert b["S03"]["window"]["auroc"] == pytest.approx(1.0 - a["S03"]["window"]["auroc"])
    assert b["S03"]["trial"]["auroc"] == pytest.approx(1.0 - a["S03"]["trial"]["auroc"])
    assert a["S01"]["window"]["auroc"] != b["S01"]["window"]["auroc"]  # where they train, they matter


def test_baseline_modes_remove_subject_and_trial_offsets(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable]
                                                         ) -> None:
    table = synthetic[2]
    runs = {mode: run_protocol(table, "loso", target="arousal", baseline=mode) for mode in ("none", "subject", "trial")}
    bal = {m: r["summary"]["trial"]["balanced_accuracy"]["mean"] for m, r in runs.items()}
    within = {m: r["summary"]["trial"]["auroc"]["mean"] for m, r in runs.items()}
    pooled = {m: r["pooled"]["trial"]["auroc"] for m, r in runs.items()}
    # a subject offset shifts all of a held-out subject's probabilities: accuracy, and AUROC pooled over subjects
    assert bal["trial"] >= bal["none"] + 0.15, bal
    assert bal["subject"] >= bal["none"] + 0.05, bal
    assert pooled["trial"] >= pooled["none"] + 0.1, pooled
    assert pooled["subject"] > pooled["none"], pooled
    # a per-trial drift reorders a subject's trials: only the trial's own baseline removes it
    assert within["trial"] >= within["subject"], within
    assert within["trial"] >= 0.95, within


def test_units_are_checked(tmp_path: Path) -> None:
    small = SyntheticDreamer(n_subjects=2, n_trials=2, stimulus_s=6.0, baseline_s=6.0)
    path = tmp_path / "mV.mat"
    write_synthetic_dreamer(path, dataclasses.replace(small, ecg_unit="mV"))
    with pytest.raises(DatasetError, match=r"ECG amplitudes are implausible for unit 'uV'.*suggests mV"):
        load_dreamer(path)
    ok = load_dreamer(path, ecg_unit="mV")
    assert 500 < np.ptp(ok[0].signals["ecg"].data[:, 0]) < 5000  # ~1 mV R waves, in µV
    path = tmp_path / "V.mat"
    write_synthetic_dreamer(path, dataclasses.replace(small, eeg_unit="V"))
    with pytest.raises(DatasetError, match=r"EEG amplitudes are implausible for unit 'mV': .* mV \(.* µV\)"):
        load_dreamer(path, eeg_unit="mV")
    load_dreamer(path, eeg_unit="V")


def test_train_cv_command(synthetic: tuple[Path, dict[str, np.ndarray], TrialTable], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from rt_physio.cli import main

    path = synthetic[0]
    out = io.StringIO()
    args = ["train", "cv", "--dataset", "dreamer", "--data", str(path), "--cache", str(tmp_path / "cache")]
    rc = main([*args, "--protocol", "kfold", "--folds", "3", "--seeds", "0", "1", "--baseline", "trial",
               "--json", str(tmp_path / "cv.json")], out=out)
    assert rc == 0
    report = json.loads((tmp_path / "cv.json").read_text())
    assert report["protocol"] == "kfold" and report["baseline"] == "trial" and report["seeds"] == [0, 1]
    assert report["units"] == {"eeg": "uV", "ecg": "uV"} and report["label_rule"] == "score > 3 is high"
    arousal = report["targets"]["arousal"]
    assert len(arousal["seeds"]) == 2 and len(arousal["seeds"][0]["groups"]) == 3
    assert arousal["summary"]["trial"]["auroc"]["mean"] >= 0.9
    assert "arousal   trial  bal-acc" in out.getvalue()
    assert main([*args, "--ecg-unit", "mV"], out=io.StringIO()) == 2
    assert "ECG amplitudes are implausible for unit 'mV'" in capsys.readouterr().err
    assert main([*args, "--folds", "4"], out=io.StringIO()) == 2
    assert "loso has one fold per subject" in capsys.readouterr().err
