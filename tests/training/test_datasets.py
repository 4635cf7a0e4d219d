from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from rt_physio.dsp import StreamProcessor
from rt_physio.errors import DatasetError
from rt_physio.io import Signal
from rt_physio.nn.spec import Preprocessing
from rt_physio.training.datasets.edf import find_corpus, load_edf
from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS, load_eegmat, load_eegmat_file
from rt_physio.training.datasets.prepare import prepare, preprocess_signal
from rt_physio.training.datasets.wfdb import load_neurokit_csv, load_wfdb_record
from rt_physio.training.datasets.windows import WindowDataset

PRE = {"eeg": Preprocessing((0.3, 75.0), True), "ecg": Preprocessing((0.5, 45.0), True)}


def test_eegmat_window_counts_match_durations(eegmat_dir: Path, cache_dir: Path) -> None:
    # durations from the manifest: 31_1 80 s, 04_1 170 s, 10_1 188 s, rest 182 s, task 62 s
    recs = load_eegmat(eegmat_dir, subjects=[4, 10, 31])
    assert [r.name for r in recs] == ["Subject04_1", "Subject04_2", "Subject10_1", "Subject10_2", "Subject31_1",
                                      "Subject31_2"]
    prepared = prepare(recs, PRE, cache_dir=cache_dir)
    ds = WindowDataset(prepared, ["mental_workload"], window_s=5, hop_s=5)
    counts = Counter(ds.names.tolist())
    assert counts == {"Subject04_1": 34, "Subject04_2": 12, "Subject10_1": 37, "Subject10_2": 12,
                      "Subject31_1": 16, "Subject31_2": 12}
    assert ds.labels[ds.conditions == "task"].min() == 1.0
    assert ds.labels[ds.conditions == "rest"].max() == 0.0
    batch = ds.batch([0, len(ds) - 1])
    assert batch.inputs["eeg"].shape == (2, 20, 5, 200)
    assert batch.inputs["ecg"].shape == (2, 1, 5, 200)
    # µV / 100: EEG around 0.1, ECG (about a millivolt) around 1-10
    assert 0.02 < batch.inputs["eeg"].std() < 1.0
    assert 0.1 < np.abs(batch.inputs["ecg"]).max() < 50


def test_eegmat_channels_units_and_unusable_ecg(eegmat_dir: Path) -> None:
    rec = load_eegmat_file(eegmat_dir / "Subject02_1.edf")
    assert rec.signals["eeg"].channel_names == EEGMAT_EEG_CHANNELS
    assert rec.signals["eeg"].sfreq == 500.0
    assert "ecg" not in rec.signals
    assert "unusable" in rec.missing["ecg"]
    good = load_eegmat_file(eegmat_dir / "Subject02_2.edf")
    ecg = good.signals["ecg"].data
    assert 370.0 < np.ptp(ecg) < 5000.0  # µV (the file stores mV)
    assert good.labels == {"mental_workload": 1.0}


def test_offline_preprocessing_equals_the_engines_streaming_path(eegmat_dir: Path) -> None:
    sig = load_eegmat_file(eegmat_dir / "Subject31_2.edf").signals["eeg"]
    sig = Signal("eeg", sig.data[: 20 * 500], sig.sfreq, sig.channel_names)
    offline = preprocess_signal(sig, PRE["eeg"], 50.0)
    assert offline.shape == (20, 20 * 200)
    proc = StreamProcessor(500.0, 20, bandpass=(0.3, 75.0), notch=50.0, fs_out=200.0, capacity_s=60)
    x = sig.data
    ts = np.arange(x.shape[0]) / 500.0
    for start in range(0, x.shape[0], 37):  # live-sized chunks
        proc.push(x[start:start + 37], ts[start:start + 37])
    live, _stamps = proc.read_until(np.inf, proc.stats.samples_out)
    delay = proc.resampler.delay_out
    n = live.shape[0] - delay
    np.testing.assert_array_equal(offline[:, :n], live[delay:].T)


def test_missing_channel_is_named(eegmat_dir: Path, tmp_path: Path) -> None:
    src = pyedflib.EdfReader(str(eegmat_dir / "Subject31_2.edf"))
    try:
        keep = [i for i, label in enumerate(src.getSignalLabels()) if label != "EEG Cz"]
        headers = [src.getSignalHeader(i) for i in keep]
        data = [src.readSignal(i) for i in keep]
    finally:
        src.close()
    path = tmp_path / "Subject31_2.edf"
    writer = pyedflib.EdfWriter(str(path), len(keep), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.writeSamples(data)
    finally:
        writer.close()
    with pytest.raises(DatasetError, match=r"Subject31_2\.edf: channel 'Cz' is missing"):
        load_eegmat_file(path)


def test_folder_without_eegmat_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="no usable EEGMAT recordings"):
        load_eegmat(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_eegmat(tmp_path / "absent")


def test_wfdb_records_keep_ecg_leads_in_microvolts(data_dir: Path) -> None:
    rec = load_wfdb_record(data_dir / "wfdb" / "100.hea")
    sig = rec.signals["ecg"]
    assert sig.channel_names == ("MLII", "V5")
    assert sig.sfreq == 360.0
    assert sig.data.shape == (650000, 2)
    assert 1000 < np.ptp(sig.data[:, 0]) < 10000  # a few mV, in µV
    alarm = load_wfdb_record(data_dir / "wfdb" / "v102s")
    assert alarm.signals["ecg"].channel_names == ("II", "V")  # PLETH and RESP are not ECG


def test_neurokit_csv_rate_from_name(data_dir: Path, tmp_path: Path) -> None:
    rec = load_neurokit_csv(data_dir / "neurokit" / "bio_resting_5min_100hz.csv")
    assert rec.signals["ecg"].sfreq == 100.0
    assert rec.signals["ecg"].data.shape == (30000, 1)
    bad = tmp_path / "resp_100hz.csv"
    bad.write_text("RSP\n1\n2\n")
    with pytest.raises(DatasetError, match="channel 'ECG' is missing"):
        load_neurokit_csv(bad)


def test_corpus_skips_eegmat_validation_subjects(data_dir: Path) -> None:
    recs = find_corpus([data_dir / "eegmat" / "Subject29_1.edf", data_dir / "eegmat" / "Subject05_1.edf",
                        data_dir / "neurokit" / "ecg_1000hz.csv"], "ecg")
    assert [r.name for r in recs] == ["Subject05_1", "ecg_1000hz"]
    eeg = load_edf(data_dir / "eegmat" / "Subject05_2.edf", "eeg")
    assert eeg.signals["eeg"].n_channels == 20
    with pytest.raises(DatasetError, match="No usable EEG recordings"):
        find_corpus([data_dir / "neurokit"], "eeg")
