"""SPEC parsing and the checks open_source makes before opening anything."""

from __future__ import annotations

import pytest

from rt_physio.errors import ConfigError, RtPhysioError
from rt_physio.sources.spec import SourceSpec, open_source, parse_spec


@pytest.mark.parametrize(("text", "expected"), [
    ("synthetic", SourceSpec("profile", "brainflow-synthetic", {}, "synthetic")),
    ("SYNTHETIC", SourceSpec("profile", "brainflow-synthetic", {}, "SYNTHETIC")),
    ("profile:emotiv-epoc", SourceSpec("profile", "emotiv-epoc", {}, "profile:emotiv-epoc")),
    ("profile:openbci-cyton?serial_port=/dev/ttyUSB1",
     SourceSpec("profile", "openbci-cyton", {"serial_port": "/dev/ttyUSB1"},
                "profile:openbci-cyton?serial_port=/dev/ttyUSB1")),
    ("brainflow:cyton?serial_port=/dev/ttyUSB0&timeout=5",
     SourceSpec("brainflow", "cyton", {"serial_port": "/dev/ttyUSB0", "timeout": "5"},
                "brainflow:cyton?serial_port=/dev/ttyUSB0&timeout=5")),
    ("brainflow:38", SourceSpec("brainflow", "38", {}, "brainflow:38")),
    ("lsl:MyHeadset", SourceSpec("lsl", "", {"name": "MyHeadset"}, "lsl:MyHeadset")),
    ("lsl:My Headset (2)", SourceSpec("lsl", "", {"name": "My Headset (2)"}, "lsl:My Headset (2)")),
    ("lsl:type=EEG", SourceSpec("lsl", "", {"type": "EEG"}, "lsl:type=EEG")),
    ("lsl:source_id=xyz", SourceSpec("lsl", "", {"source_id": "xyz"}, "lsl:source_id=xyz")),
    ("lsl:name=A%26B&type=EEG", SourceSpec("lsl", "", {"name": "A&B", "type": "EEG"}, "lsl:name=A%26B&type=EEG")),
    ("brainflow:playback_file?file=/data/a+b.csv&master_board=synthetic",
     SourceSpec("brainflow", "playback_file", {"file": "/data/a+b.csv", "master_board": "synthetic"},
                "brainflow:playback_file?file=/data/a+b.csv&master_board=synthetic")),
    (" none ", None),
    ("None", None),
])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "Accepted forms"),
    ("muse", "Accepted forms"),
    ("serial:/dev/ttyUSB0", "Accepted forms"),
    ("lsl:", "names no stream"),
    ("lsl:typ=EEG", "unknown LSL stream properties ['typ']"),
    ("lsl:type=", "empty value"),
    ("brainflow:", "no board name"),
    ("profile:?x=1", "no profile name"),
    ("brainflow:cyton?serial_port=a&serial_port=b", "given twice"),
    ("brainflow:cyton?serial_port", "k=v"),
])
def test_malformed_specs_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(text)


def test_open_source_validates_its_arguments():
    with pytest.raises(ConfigError, match="modality"):
        open_source("synthetic", "emg")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="resolve_timeout"):
        open_source("lsl:x", "eeg", resolve_timeout=0)
    with pytest.raises(ConfigError, match="leave the ECG modality out"):
        open_source("none", "ecg")


def test_user_errors_are_rt_physio_errors():
    assert issubclass(ConfigError, RtPhysioError)
    with pytest.raises(RtPhysioError):
        open_source("profile:does-not-exist", "eeg")
