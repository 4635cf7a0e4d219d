"""Reading recordings (rt_physio.io): real EEGMAT / WFDB / NeuroKit files, and XDF / DREAMER files the tests write."""

from __future__ import annotations

import numpy as np
import pyedflib
import pytest

from rt_physio.errors import ConfigError, SourceError
from rt_physio.io import channel_kind, read_recording
from tests.io.recording_files import DREAMER_ELECTRODES, write_dreamer, write_xdf


@pytest.mark.parametrize(("label", "declared", "kind"), [
    ("EEG Fp1", "", "eeg"), ("EEG A2-A1", "", "eeg"), ("ECG ECG", "", "ecg"), ("Fp1-F7", "", "eeg"),
    ("Cz", "", "eeg"), ("AF3", "", "eeg"), ("MLII", "", "ecg"), ("V5", "", "ecg"), ("aVR", "", "ecg"),
    ("II", "", "ecg"), ("vx", "", "ecg"), ("ECG_Raw", "", "ecg"), ("EKG", "", "ecg"), ("PLETH", "", None),
    ("RESP", "", None), ("EDA", "", None), ("Photosensor", "", None), ("Ch1", "EEG", "eeg"), ("Fp1", "EOG", None),
])
def test_channel_kind(label, declared, kind):
    assert channel_kind(label, declared) == kind


def test_eegmat_edf_ecg_channel_is_ecg_the_rest_eeg_in_microvolts(data_dir):
    path = data_dir / "eegmat" / "Subject00_2.edf"
    rec = read_recording(path)
    eeg, ecg = rec.signals["eeg"], rec.signals["ecg"]
    reader = pyedflib.EdfReader(str(path))
    try:
        labels = reader.getSignalLabels()
        expected_eeg = np.stack([reader.readSignal(i) for i in range(20)], axis=1).astype(np.float32)
        expected_ecg = (reader.readSignal(20) * 1000.0).astype(np.float32)  # mV in the file
    finally:
        reader.close()
    assert labels[20] == "ECG ECG"
    assert eeg.channel_names == tuple(label.removeprefix("EEG ") for label in labels[:20])
    assert eeg.channel_names[-1] == "A2-A1"
    assert ecg.channel_names == ("ECG",)
    assert eeg.sfreq == ecg.sfreq == 500.0
    assert eeg.data.shape == (31000, 20)
    assert eeg.data.dtype == np.float32
    np.testing.assert_array_equal(eeg.data, expected_eeg)
    np.testing.assert_array_equal(ecg.data[:, 0], expected_ecg)
    assert ecg.units == ("mV",)
    assert 0.3e3 < np.ptp(ecg.data) < 5e3  # an ECG in µV
    assert rec.duration == pytest.approx(62.0)


def test_wfdb_records_by_name_or_suffix_keep_only_ecg(data_dir):
    mitdb = read_recording(data_dir / "wfdb" / "100")
    assert set(mitdb.signals) == {"ecg"}
    assert mitdb.signals["ecg"].channel_names == ("MLII", "V5")
    assert mitdb.signals["ecg"].sfreq == 360.0
    assert mitdb.signals["ecg"].n_samples == 650000
    ptb = read_recording(data_dir / "wfdb" / "s0010_re.hea", duration=2.0)
    assert len(ptb.signals["ecg"].channel_names) == 15
    assert ptb.signals["ecg"].n_samples == 2000
    v102 = read_recording(data_dir / "wfdb" / "v102s.dat")
    ecg = v102.signals["ecg"]
    assert ecg.channel_names == ("II", "V")  # PLETH and RESP are left out
    assert np.count_nonzero(~np.isfinite(ecg.data)) == 5  # WFDB's invalid samples stay NaN (replay holds them)


def test_cinc2017_record_with_mat_signal_file_is_wfdb_by_mat_hea_or_name(data_dir):
    """A WFDB record may keep its samples in a .mat file (CinC 2017): beside a .hea it is WFDB, not DREAMER.mat."""
    import scipy.io

    base = data_dir / "cinc2017" / "A00001"
    raw = scipy.io.loadmat(str(base.with_suffix(".mat")))["val"][0]  # int16, 1000 adu/mV = 1 adu/µV
    for path in (base.with_suffix(".mat"), base.with_suffix(".hea"), base):
        rec = read_recording(path)
        assert rec.format == "wfdb", path
        assert set(rec.signals) == {"ecg"}
        ecg = rec.signals["ecg"]
        assert ecg.channel_names == ("ECG",)
        assert ecg.sfreq == 300.0
        assert ecg.n_samples == 9000
        np.testing.assert_allclose(ecg.data[:, 0], raw.astype(np.float32), atol=1e-3)


def test_neurokit_csv_needs_its_rate_and_reads_ecg_in_millivolts(data_dir):
    path = data_dir / "neurokit" / "bio_eventrelated_100hz.csv"
    with pytest.raises(ConfigError, match="rate"):
        read_recording(path)
    rec = read_recording(path, rate=100)
    assert set(rec.signals) == {"ecg"}
    ecg = rec.signals["ecg"]
    assert ecg.sfreq == 100.0
    assert ecg.n_samples == 15000
    column = np.loadtxt(path, delimiter=",", skiprows=1)[:, 0]
    np.testing.assert_allclose(ecg.data[:, 0], (column * 1000).astype(np.float32))
    as_uv = read_recording(path, rate=100, unit="uV")
    np.testing.assert_allclose(as_uv.signals["ecg"].data[:, 0], column.astype(np.float32))
    picked = read_recording(path, rate=100, ecg_channels=["ECG", "RSP"])
    assert picked.signals["ecg"].channel_names == ("ECG", "RSP")


def test_xdf_streams_channel_types_units_and_start_offsets(tmp_path):
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((600, 3)).astype(np.float32)
    ecg = rng.standard_normal((260, 1)).astype(np.float32)
    path = tmp_path / "session.xdf"
    write_xdf(path, [
        {"name": "Headset", "type": "EEG", "sfreq": 200.0, "data": eeg, "t0": 100.0,
         "labels": ["Fz", "Cz", "ECG chest"], "units": ["microvolts", "microvolts", "millivolts"],
         "types": ["EEG", "EEG", "ECG"]},
        {"name": "Strap", "type": "ECG", "sfreq": 130.0, "data": ecg, "t0": 100.5, "labels": ["lead"],
         "units": ["uV"]},
        {"name": "Markers", "type": "Markers", "sfreq": 0.0, "data": ["start", "stop"], "t0": 101.0,
         "fmt": "string"},
    ])
    rec = read_recording(path)
    assert rec.format == "xdf"
    # channel-level types win over the stream type; the ECG channel of the headset is in mV
    assert rec.signals["eeg"].channel_names == ("Fz", "Cz")
    np.testing.assert_array_equal(rec.signals["eeg"].data, eeg[:, :2])
    assert rec.signals["eeg"].offset == 0.0
    # two ECG channels at two rates: the most common rate wins (here a tie → the first), the other is left out
    ecg_stream = rec.signals["ecg"]
    assert ecg_stream.sfreq in (200.0, 130.0)
    chest = read_recording(path, ecg_channels=["ECG chest"]).signals["ecg"]
    np.testing.assert_allclose(chest.data[:, 0], eeg[:, 2].astype(np.float64) * 1000, rtol=1e-6)
    strap = read_recording(path, ecg_channels=["lead"]).signals["ecg"]
    assert strap.sfreq == 130.0
    assert strap.offset == pytest.approx(0.5)
    np.testing.assert_array_equal(strap.data, ecg)


def test_dreamer_mat_subject_and_clip(tmp_path):
    path = tmp_path / "DREAMER.mat"
    arrays = write_dreamer(path)
    with pytest.raises(ConfigError, match="subject=N"):
        read_recording(path)
    rec = read_recording(path, subject=2, clip=3)
    eeg, ecg = rec.signals["eeg"], rec.signals["ecg"]
    assert eeg.sfreq == 128.0
    assert ecg.sfreq == 256.0
    assert eeg.channel_names == tuple(DREAMER_ELECTRODES)
    assert ecg.channel_names == ("ECG1", "ECG2")
    np.testing.assert_array_equal(eeg.data, arrays[(2, 3, "stimuli", "eeg")].astype(np.float32))
    np.testing.assert_array_equal(ecg.data, arrays[(2, 3, "stimuli", "ecg")].astype(np.float32))
    base = read_recording(path, subject=1, clip=1, part="baseline")
    np.testing.assert_array_equal(base.signals["eeg"].data, arrays[(1, 1, "baseline", "eeg")].astype(np.float32))
    with pytest.raises(ConfigError, match=r"subject must be 1\.\.2, got 3"):
        read_recording(path, subject=3, clip=1)
    with pytest.raises(ConfigError, match=r"clip must be 1\.\.3, got 4"):
        read_recording(path, subject=1, clip=4)


def test_bad_inputs_get_clear_errors(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="does not exist"):
        read_recording(tmp_path / "missing.edf")
    with pytest.raises(ConfigError, match="Cannot tell the format") as info:
        read_recording(tmp_path / "notes.docx")
    # a .mat is WFDB beside a .hea (CinC 2017), DREAMER.mat otherwise: the list says both
    assert "wfdb (.hea .dat, or .mat beside a .hea of the same name, as in PhysioNet/CinC 2017)" in str(info.value)
    assert "dreamer (.mat, without a .hea beside it)" in str(info.value)
    with pytest.raises(ConfigError, match="'rate' option is for CSV"):
        read_recording(data_dir / "eegmat" / "Subject00_2.edf", rate=250)
    with pytest.raises(ConfigError, match="channel 'Lead II' is missing"):
        read_recording(data_dir / "eegmat" / "Subject00_2.edf", ecg_channels=["Lead II"])
    broken = tmp_path / "broken.edf"
    broken.write_bytes(b"0       not an edf header")
    with pytest.raises(SourceError, match=r"broken\.edf"):
        read_recording(broken)
    other = tmp_path / "other.csv"
    other.write_text("EDA,RSP\n1,2\n3,4\n")
    with pytest.raises(SourceError, match=r"no EEG or ECG channels .*EDA, RSP"):
        read_recording(other, rate=10)
    bogus = tmp_path / "bogus.mat"
    import scipy.io

    scipy.io.savemat(str(bogus), {"x": np.zeros(3)})
    with pytest.raises(SourceError, match="no 'DREAMER' struct"):
        read_recording(bogus, subject=1, clip=1)
