from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from rt_physio.config import EngineConfig, SessionConfig, config_key, load_engine_config
from rt_physio.errors import ConfigError


def test_config_file_with_sessions_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sessions.toml"
    path.write_text(
        'model = "untrained-demo"\nhop = 0.5\npublish = "zmq://127.0.0.1:6000"\n'
        '[[sessions]]\nid = "alice"\neeg = "lsl:AliceEEG"\necg = "none"\n'
        '[[sessions]]\nid = "bob"\neeg = "synthetic"\necg = "synthetic"\n'
    )
    config = load_engine_config(path, window_s=4.0)
    assert config.hop_s == 0.5
    assert config.window_s == 4.0
    assert config.publish == ("zmq://127.0.0.1:6000",)
    assert config.sessions[0] == SessionConfig("alice", "lsl:AliceEEG", None)
    assert config.sessions[1].session_id == "bob"


@pytest.mark.parametrize(("text", "match"), [
    ("hop = 0.5\nfoo = 1\n", "unknown key"),
    ("window = 2.5\n", "whole number"),
    ("[[sessions]]\nid = 'a'\neeg = 'none'\necg = 'none'\n", "neither"),
    ("[[sessions]]\nid = 'a b'\neeg = 'synthetic'\n", "Session id"),
    ("[[sessions]]\nid = '..'\neeg = 'synthetic'\n", "Session id"),
    ("[[sessions]]\nid = 'a'\neeg = 'x'\n[[sessions]]\nid = 'a'\necg = 'y'\n", "unique"),
    ("hop = [\n", "invalid TOML"),
    ("line_freq = 55\n", "50 or 60"),
    ("inline = 'yes'\n", "'inline' parameter must be true or false"),
])
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_engine_config(path)


def test_defaults_are_the_synthetic_demo() -> None:
    config = EngineConfig()
    assert config.sessions == (SessionConfig("default", "synthetic", "synthetic"),)
    assert config.publish == ("zmq://127.0.0.1:5556",)
    assert (config.window_s, config.hop_s) == (5.0, 1.0)


def test_run_to_completion_can_be_switched_off_in_the_file_or_on_the_command_line(tmp_path: Path) -> None:
    from rt_physio.cli import build_parser

    path = tmp_path / "engine.toml"
    path.write_text("inline = false\n[[sessions]]\nid = 'a'\neeg = 'synthetic'\n")
    assert load_engine_config(path).inline is False
    assert load_engine_config(path, inline=None).inline is False  # an absent command-line flag changes nothing
    args = build_parser().parse_args(["run", "--no-inline"])
    assert args.inline is False
    assert build_parser().parse_args(["run"]).inline is None  # default: decided by the executor (device, threads)


@pytest.mark.parametrize(("text", "message"), [
    ('insecure = "false"\n', "The 'insecure' parameter must be true or false, got 'false' (a string)."),
    ("record = 5\n", "The 'record' parameter must be a string, got 5 (an integer)."),
    ("device = 5\n", "The 'device' parameter must be a string, got 5 (an integer)."),
    ("publish = [1]\n", "The 'publish' parameter must be a list of strings, got [1] (a list)."),
    ("publish = 5\n", "The 'publish' parameter must be a list of strings, got 5 (an integer)."),
    ("duration = inf\n", "The 'duration' parameter must be a finite number, got inf (a number)."),
    ("hop = nan\n", "The 'hop' parameter must be a finite number, got nan (a number)."),
    ("threads = 2.0\n", "The 'threads' parameter must be an integer, got 2.0 (a number)."),
    ("max_batch = true\n", "The 'max_batch' parameter must be an integer, got True (a boolean)."),
    ("inline = 'yes'\n", "The 'inline' parameter must be true or false, got 'yes' (a string)."),
    ('model = {name = "x"}\n', "The 'model' parameter must be a string, got {'name': 'x'} (a table)."),
    ("calibrate = 1e300\n", "The 'calibrate' parameter must be a finite number between 5 and 3600 (seconds; a "
                            "baseline is at least the window length), got 1e+300."),
    ("[[sessions]]\nid = 5\neeg = 'synthetic'\n", "sessions[0]: The 'id' parameter must be a string, got 5 "
                                                   "(an integer)."),
    ("[[sessions]]\nid = 'a'\neeg = 7\n", "sessions[0].eeg must be a source SPEC string"),
])
def test_every_value_is_type_checked_with_key_type_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    assert message in str(info.value)


def test_every_engine_field_is_type_checked() -> None:
    # driven by the annotations: a field added later is covered without a new check
    for field in fields(EngineConfig):
        with pytest.raises(ConfigError, match=f"The '{config_key(field.name)}' parameter must be .*got <object"):
            EngineConfig(**{field.name: object()})


def test_whole_numbers_for_seconds_become_floats(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("hop = 1\nwindow = 4\nduration = 30\n")
    config = load_engine_config(path)
    assert (config.hop_s, config.window_s, config.duration_s) == (1.0, 4.0, 30.0)
    assert all(type(v) is float for v in (config.hop_s, config.window_s, config.duration_s))
