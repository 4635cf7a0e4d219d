"""`rt-physio devices`: visible LSL streams, BrainFlow boards and profiles."""

from __future__ import annotations

from rt_physio.sources.devices import format_report, list_devices


def test_devices_lists_streams_boards_and_profiles(make_outlet):
    _, name = make_outlet(14, 128.0, stype="EEG")
    report = list_devices(lsl_timeout=0.5)
    stream = next(s for s in report.lsl_streams if s.name == name)
    assert (stream.type, stream.n_channels, stream.sfreq, stream.source_id) == ("EEG", 14, 128.0, f"sid-{name}")
    boards = {b.name: b for b in report.boards}
    assert boards["synthetic"].board_id == -1
    assert boards["synthetic"].sfreq == 250
    assert boards["cyton"].n_eeg == 8
    assert "no_board" not in boards
    profiles = {p.name: p for p in report.profiles}
    assert profiles["brainflow-synthetic"].modalities == ("eeg", "ecg")
    assert profiles["polar-h10-lsl"].backend == "lsl"
    assert not report.profile_errors
    text = format_report(report)
    assert f"'{name}' (type EEG, 14 ch, 128 Hz" in text
    assert f"lsl:{name}" in text
    assert "brainflow-synthetic" in text
    assert "synthetic" in text
    assert "cyton" in text


def test_broken_profiles_are_reported_not_raised(tmp_path, monkeypatch):
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "broken.toml").write_text("backend = \n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    report = list_devices(lsl_timeout=0.1)
    assert any("broken.toml" in e for e in report.profile_errors)
    assert "broken.toml" in format_report(report)
    assert any(p.name == "brainflow-synthetic" for p in report.profiles)


def test_devices_ble_says_why_a_scan_cannot_run_here():
    import io

    from rt_physio.cli import main

    out = io.StringIO()
    assert main(["devices", "--ble", "--wait", "0.5"], out=out) == 0
    text = out.getvalue()
    assert "LSL streams visible within 0.5 s" in text
    assert "Bluetooth LE devices (Polar H10: --ecg polar:<address>):" in text
    assert "(scan failed) Bluetooth LE is not available here" in text  # no adapter on this machine
    assert "polar-h10" in text  # the native profile is listed with the others
