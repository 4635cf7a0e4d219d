"""Device profiles: the shipped ones validate, bad ones are named, and LSL streams are checked against them."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.profiles import find_profiles, load_profile, load_profile_file
from rt_physio.sources.spec import open_source

REPO_DRIVERS = Path(__file__).resolve().parents[2] / "drivers"
SHIPPED = ["brainflow-synthetic", "emotiv-epoc", "lsl-ecg", "lsl-eeg", "openbci-cyton", "polar-h10",
           "polar-h10-lsl"]
EPOC = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads(name):
    path = REPO_DRIVERS / f"{name}.toml"
    profile = load_profile_file(path)
    assert profile.name == name
    assert profile.description
    assert profile.modalities
    assert load_profile(name).path == path


def test_no_unexpected_shipped_profiles():
    assert sorted(p.stem for p in REPO_DRIVERS.glob("*.toml")) == SHIPPED


def test_shipped_profiles_say_what_the_devices_are():
    synthetic = load_profile("brainflow-synthetic")
    assert synthetic.backend == "brainflow"
    assert synthetic.params["board"] == "synthetic"
    assert synthetic.modalities["eeg"].rows == tuple(range(1, 15))
    assert synthetic.modalities["ecg"].rows == (15, 16)
    epoc = load_profile("emotiv-epoc").modalities["eeg"]
    assert epoc.channels == tuple(EPOC)
    assert epoc.sfreq == 128
    polar = load_profile("polar-h10-lsl").modalities["ecg"]
    assert polar.sfreq == 130
    assert polar.channels == ("ECG",)
    assert polar.scale == 1.0
    cyton = load_profile("openbci-cyton")
    assert cyton.modalities["eeg"].sfreq == 250
    assert len(cyton.modalities["eeg"].rows or ()) == 8
    assert "serial_port" in cyton.params
    assert load_profile("lsl-eeg").params == {"stream_type": "EEG"}
    assert load_profile("lsl-ecg").params == {"stream_type": "ECG"}


def test_unknown_profile_lists_the_valid_ones_and_the_folders():
    with pytest.raises(ConfigError) as err:
        load_profile("no-such-device")
    msg = str(err.value)
    assert "no-such-device" in msg
    assert all(name in msg for name in SHIPPED)
    assert str(REPO_DRIVERS) in msg


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_broken_toml_names_the_file(tmp_path):
    path = write(tmp_path, "broken", 'name = "broken"\nbackend = [unclosed\n')
    with pytest.raises(ConfigError, match=str(path)):
        load_profile_file(path)


@pytest.mark.parametrize(("body", "field"), [
    ('description = "x"\nbackend = "serial"\n[eeg]\n', "backend"),
    ('description = "x"\nbackend = "lsl"\n[lsl]\nstream_type = "EEG"\n[eeg]\nsfreq = -1\n', "[eeg].sfreq"),
    ('description = "x"\nbackend = "lsl"\n[lsl]\nstream_type = "EEG"\n[eeg]\nrows = [1]\n', "[eeg].rows"),
    ('description = "x"\nbackend = "lsl"\n[lsl]\nstream_type = "EEG"\n[eeg]\nunits = "furlongs"\n', "[eeg].units"),
    ('description = "x"\nbackend = "lsl"\n[lsl]\nstream_kind = "EEG"\n[eeg]\n', "[lsl]"),
    ('description = "x"\nbackend = "lsl"\n[eeg]\n', "[eeg]"),
    ('description = "x"\nbackend = "brainflow"\n[brainflow]\nboard = "nosuchboard"\n[eeg]\n', "nosuchboard"),
    ('description = "x"\nbackend = "brainflow"\n[brainflow]\nboard = "cyton"\nport = "x"\n[eeg]\n', "port"),
    ('description = "x"\nbackend = "brainflow"\n[brainflow]\nboard = "cyton"\n[eeg]\nrows = [1, 2]\n'
     'channels = ["a"]\n', "2 rows but 1 channel"),
    ('description = "x"\nbackend = "lsl"\n[lsl]\nstream_type = "EEG"\n', "[eeg] and/or an [ecg]"),
    ('name = "other"\ndescription = "x"\nbackend = "lsl"\n[lsl]\nstream_type = "EEG"\n[eeg]\n', "name"),
])
def test_invalid_fields_name_the_file_and_the_field(tmp_path, body, field):
    path = write(tmp_path, "bad", body)
    with pytest.raises(ConfigError) as err:
        load_profile_file(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_a_drivers_folder_in_the_working_directory_overrides_and_extends(tmp_path, monkeypatch):
    write(tmp_path / "drivers", "my-headset", '''
        description = "mine"
        backend = "lsl"
        [lsl]
        stream_name = "MyHeadset"
        [eeg]
        sfreq = 500
    ''')
    monkeypatch.chdir(tmp_path)
    found, folders = find_profiles()
    assert folders[0] == (tmp_path / "drivers").resolve()
    assert found["my-headset"].parent == (tmp_path / "drivers").resolve()
    assert "brainflow-synthetic" in found  # the packaged ones are still there
    assert load_profile("my-headset").modalities["eeg"].sfreq == 500


# -- profiles against real LSL streams ---------------------------------------------------------------------

def test_epoc_profile_names_unlabelled_channels(make_outlet, recorder):
    _outlet, name = make_outlet(14, 128.0)
    source = open_source(f"profile:emotiv-epoc?stream_name={name}", "eeg", resolve_timeout=3.0)
    assert source.info.channel_names == tuple(EPOC)
    assert source.info.name == name
    source.stop()


def test_epoc_profile_picks_eeg_channels_by_label(make_outlet, recorder):
    labels = ["COUNTER", "INTERPOLATED", *EPOC, "RAW_CQ"]
    outlet, name = make_outlet(len(labels), 128.0, labels=labels)
    source = open_source(f"profile:emotiv-epoc?stream_name={name}", "eeg", resolve_timeout=3.0)
    source.start(recorder)
    try:
        data = np.arange(3 * len(labels), dtype=np.float32).reshape(3, len(labels))
        now = local_clock()
        outlet.push_chunk(data, [now - 0.02, now - 0.01, now])
        assert recorder.wait_samples(3)
    finally:
        source.stop()
    assert source.info.channel_names == tuple(EPOC)
    np.testing.assert_array_equal(recorder.data(), data[:, 2:16])


def test_channel_count_contradicting_the_profile(make_outlet):
    _, name = make_outlet(8, 128.0)
    with pytest.raises(SourceError) as err:
        open_source(f"profile:emotiv-epoc?stream_name={name}", "eeg", resolve_timeout=3.0)
    assert "8 channels" in str(err.value)
    assert "expects 14" in str(err.value)


def test_rate_contradicting_the_profile(make_outlet):
    _, name = make_outlet(14, 256.0)
    with pytest.raises(SourceError) as err:
        open_source(f"profile:emotiv-epoc?stream_name={name}", "eeg", resolve_timeout=3.0)
    assert "256 Hz" in str(err.value)
    assert "128 Hz" in str(err.value)


def test_polar_profile_on_an_ecg_bridge(make_outlet, recorder):
    outlet, name = make_outlet(1, 130.0, stype="ECG", unit="microvolts")
    source = open_source(f"profile:polar-h10-lsl?stream_name={name}", "ecg", resolve_timeout=3.0)
    assert source.info.channel_names == ("ECG",)
    assert source.info.sfreq == 130
    source.start(recorder)
    try:
        outlet.push_sample([812.5], local_clock())
        assert recorder.wait_samples(1)
    finally:
        source.stop()
    assert recorder.data().tolist() == [[812.5]]


def test_profile_without_the_modality(make_outlet):
    with pytest.raises(ConfigError, match="provides ECG only"):
        open_source("profile:polar-h10-lsl", "eeg", resolve_timeout=1.0)


def test_profile_override_must_be_known():
    start = time.monotonic()
    with pytest.raises(ConfigError, match="stream_name"):
        open_source("profile:lsl-eeg?stream=x", "eeg", resolve_timeout=1.0)
    assert time.monotonic() - start < 0.5  # rejected before any resolving
