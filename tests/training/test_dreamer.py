"""The DREAMER loader on a synthetic DREAMER.mat with the real file's structure (the data cannot be shipped)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from rt_physio.errors import DatasetError
from rt_physio.training.datasets.dreamer import load_dreamer, read_dreamer
from rt_physio.training.datasets.dreamer_synthetic import DREAMER_ELECTRODES, SyntheticDreamer, write_synthetic_dreamer

N_SUBJECTS, N_CLIPS = 3, 18
#: 7-s clips: one 5-s window each.
SMALL = SyntheticDreamer(n_subjects=N_SUBJECTS, n_trials=N_CLIPS, stimulus_s=7.0, baseline_s=7.0)


def _cell(items: list[object], shape: tuple[int, int]) -> np.ndarray:
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def make_dreamer(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small DREAMER.mat (3 subjects, 18 clips of 7 s) with DREAMER's exact layout; returns its scores."""
    return write_synthetic_dreamer(path, replace(SMALL, seed=seed))


def test_loader_reads_the_structure(tmp_path: Path) -> None:
    path = tmp_path / "DREAMER.mat"
    scores = make_dreamer(path)
    recs = load_dreamer(path)
    assert len(recs) == N_SUBJECTS * N_CLIPS * 2
    stim = [r for r in recs if r.condition == "stimulus"]
    assert len(stim) == N_SUBJECTS * N_CLIPS
    first = stim[0]
    assert first.subject == "S01"
    assert first.signals["eeg"].channel_names == DREAMER_ELECTRODES
    assert first.signals["eeg"].sfreq == 128.0
    assert first.signals["ecg"].sfreq == 256.0
    assert first.signals["eeg"].n_channels == 14
    assert first.signals["ecg"].n_channels == 2
    # the raw Emotiv offset (~4200 µV per channel) is kept; the band-pass removes it
    assert np.all(np.abs(first.signals["eeg"].data.mean(axis=1) - 4200) < 400)
    for j, rec in enumerate(stim[:N_CLIPS]):
        assert rec.labels["arousal"] == float(scores["arousal"][0, j] > 3)
        assert rec.labels["valence"] == float(scores["valence"][0, j] > 3)
        assert rec.labels["dominance"] == float(scores["dominance"][0, j] > 3)
    loose = [r for r in load_dreamer(path, threshold=2.5) if r.condition == "stimulus"]
    assert [r.labels["valence"] for r in loose[:N_CLIPS]] == [float(v >= 3) for v in scores["valence"][0]]


def test_both_loadmat_forms_give_the_same_recordings(tmp_path: Path) -> None:
    path = tmp_path / "DREAMER.mat"
    make_dreamer(path, seed=1)
    a = read_dreamer(scipy.io.loadmat(str(path)), source=path)
    b = read_dreamer(scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False), source=path)
    assert [r.name for r in a] == [r.name for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.labels == y.labels
        np.testing.assert_array_equal(x.signals["eeg"].data, y.signals["eeg"].data)
        np.testing.assert_array_equal(x.signals["ecg"].data, y.signals["ecg"].data)


def test_wrong_structure_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    scipy.io.savemat(str(path), {"DREAMER": {"Data": _cell([{"EEG": {"stimuli": 1}}], (1, 1)),
                                             "EEG_SamplingRate": 128.0, "ECG_SamplingRate": 256.0,
                                             "EEG_Electrodes": _cell(list(DREAMER_ELECTRODES), (1, 14))}})
    with pytest.raises(DatasetError, match=r"DREAMER.Data\[0\] has no field 'ECG'"):
        load_dreamer(path)
    scipy.io.savemat(str(path), {"X": np.zeros(3)})
    with pytest.raises(DatasetError, match="no 'DREAMER' struct"):
        load_dreamer(path)
    with pytest.raises(DatasetError, match="not found"):
        load_dreamer(tmp_path / "absent.mat")


def test_finetune_and_evaluate_on_dreamer(tmp_path: Path) -> None:
    import io
    import json

    from rt_physio.cli import main
    from rt_physio.nn import load_model

    path = tmp_path / "DREAMER.mat"
    make_dreamer(path, seed=2)
    out = tmp_path / "dreamer-tiny"
    common = ["--cache", str(tmp_path / "cache")]
    rc = main(["train", "finetune", "--dataset", "dreamer", "--data", str(path), "--out", str(out), "--epochs", "1",
               "--eeg-layers", "1", "--ecg-layers", "1", "--eeg-ff", "16", "--ecg-ff", "16", "--threads", "1",
               "--val-subjects", "S03", "--no-progress", *common], out=io.StringIO())
    assert rc == 0
    spec = load_model(out).spec
    assert spec.outputs == ("arousal", "valence", "dominance")
    assert spec.provenance["split"] == {"train": ["S01", "S02"], "validation": ["S03"]}
    rc = main(["evaluate", "--dataset", "dreamer", "--model", str(out), "--data", str(path), "--json",
               str(tmp_path / "r.json"), "--modalities", "eeg,ecg", *common], out=io.StringIO())
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())["eeg,ecg"]
    assert report["n_windows"] == N_SUBJECTS * N_CLIPS  # one 5-s window per 6-8 s synthetic clip
    assert set(report["outputs"]) == {"arousal", "valence", "dominance"}
