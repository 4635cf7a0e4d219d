"""The DREAMER loader on a synthetic DREAMER.mat with the real file's structure (the data cannot be shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from rt_physio.training.datasets.base import DatasetError
from rt_physio.training.datasets.dreamer import load_dreamer, read_dreamer

ELECTRODES = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]
N_SUBJECTS, N_CLIPS = 3, 18


def _cell(items: list[object], shape: tuple[int, int]) -> np.ndarray:
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def make_dreamer(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small DREAMER.mat (3 subjects, 18 clips of a few seconds) with DREAMER's exact layout."""
    rng = np.random.default_rng(seed)
    subjects = []
    scores = {}
    for s in range(N_SUBJECTS):
        def clips(fs: int, ch: int, offset: float) -> np.ndarray:
            return _cell([offset + rng.normal(0, 10, (fs * int(rng.integers(6, 9)), ch)) for _ in range(N_CLIPS)],
                         (N_CLIPS, 1))
        sc = {k: rng.integers(1, 6, (N_CLIPS, 1)).astype(np.float64) for k in ("Valence", "Arousal", "Dominance")}
        scores[s] = sc
        subjects.append({
            "Age": "22", "Gender": "male" if s % 2 else "female",
            "EEG": {"baseline": clips(128, 14, 4200.0), "stimuli": clips(128, 14, 4200.0)},
            "ECG": {"baseline": clips(256, 2, 0.0), "stimuli": clips(256, 2, 0.0)},
            "ScoreValence": sc["Valence"], "ScoreArousal": sc["Arousal"], "ScoreDominance": sc["Dominance"],
        })
    dreamer = {
        "Data": _cell(subjects, (1, N_SUBJECTS)),
        "EEG_SamplingRate": 128.0, "ECG_SamplingRate": 256.0,
        "EEG_Electrodes": _cell(ELECTRODES, (1, 14)),
        "noOfSubjects": float(N_SUBJECTS), "noOfVideoSequences": float(N_CLIPS),
        "Disclaimer": "synthetic", "Provider": "tests", "Version": "1.0.2", "Acknowledgement": "none",
    }
    scipy.io.savemat(str(path), {"DREAMER": dreamer})
    return {f"{s}-{k}": v for s, sc in scores.items() for k, v in sc.items()}


def test_loader_reads_the_structure(tmp_path: Path) -> None:
    path = tmp_path / "DREAMER.mat"
    scores = make_dreamer(path)
    recs = load_dreamer(path)
    assert len(recs) == N_SUBJECTS * N_CLIPS * 2
    stim = [r for r in recs if r.condition == "stimulus"]
    assert len(stim) == N_SUBJECTS * N_CLIPS
    first = stim[0]
    assert first.subject == "S01"
    assert first.signals["eeg"].channel_names == tuple(ELECTRODES)
    assert first.signals["eeg"].sfreq == 128.0
    assert first.signals["ecg"].sfreq == 256.0
    assert first.signals["eeg"].n_channels == 14
    assert first.signals["ecg"].n_channels == 2
    assert abs(first.signals["eeg"].data.mean() - 4200) < 5  # raw Emotiv offset kept; the band-pass removes it
    for j, rec in enumerate(stim[:N_CLIPS]):
        assert rec.labels["arousal"] == float(scores["0-Arousal"][j, 0] > 3)
        assert rec.labels["valence"] == float(scores["0-Valence"][j, 0] > 3)
        assert rec.labels["dominance"] == float(scores["0-Dominance"][j, 0] > 3)
    loose = [r for r in load_dreamer(path, threshold=2.5) if r.condition == "stimulus"]
    assert loose[0].labels["arousal"] == float(scores["0-Arousal"][0, 0] >= 3)


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
                                             "EEG_Electrodes": _cell(ELECTRODES, (1, 14))}})
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
