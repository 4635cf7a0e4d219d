"""Bad input on the command line: a clear message, exit status 2, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pylsl
import pytest

from rt_physio.cli import main
from tests.conftest import REPO_ROOT, free_port

RT_PHYSIO = str(Path(sys.executable).parent / "rt-physio")


def _run_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    if "--publish" not in argv and "--config" not in argv:
        # never the default port: another engine on this machine must not change the error
        argv = (*argv, "--publish", f"zmq://127.0.0.1:{free_port()}")
    status = main(["run", *argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    assert err.startswith("rt-physio: error: ")
    return err


def test_unknown_lsl_stream_names_what_is_visible(capsys: pytest.CaptureFixture[str]) -> None:
    uid = uuid.uuid4().hex[:8]
    info = pylsl.StreamInfo(f"visible-{uid}", "EEG", 4, 128.0, "float32", f"visible-{uid}")
    outlet = pylsl.StreamOutlet(info)
    try:
        err = _run_error(capsys, "--eeg", f"lsl:missing-{uid}", "--ecg", "none", "--resolve-timeout", "1.5")
    finally:
        del outlet
    assert f"missing-{uid}" in err
    assert f"visible-{uid}" in err


def test_unknown_board_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_error(capsys, "--eeg", "brainflow:no_such_board", "--ecg", "none")
    assert "no_such_board" in err
    assert "synthetic" in err.lower()


def test_unknown_profile_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_error(capsys, "--eeg", "profile:no-such-profile", "--ecg", "none")
    assert "no-such-profile" in err
    assert "emotiv-epoc" in err
    assert "brainflow-synthetic" in err


def test_unknown_spec_kind(capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_error(capsys, "--eeg", "bluetooth:foo", "--ecg", "none")
    assert "bluetooth:foo" in err


def test_missing_model_folder_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _run_error(capsys, "--model", str(tmp_path / "nope"))
    assert "nope" in err


def test_unknown_model_name_lists_available(capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_error(capsys, "--model", "no-such-model")
    assert "untrained-demo" in err


def test_corrupt_model_weights_name_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "untrained-demo"
    shutil.copytree(REPO_ROOT / "models" / "untrained-demo", folder)
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1000])
    err = _run_error(capsys, "--model", str(folder))
    assert "weights.safetensors" in err


def test_corrupt_model_toml_names_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "untrained-demo"
    shutil.copytree(REPO_ROOT / "models" / "untrained-demo", folder)
    (folder / "model.toml").write_text("name = [unclosed\n")
    err = _run_error(capsys, "--model", str(folder))
    assert "model.toml" in err


def test_bad_publish_url(capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_error(capsys, "--publish", "http://127.0.0.1:80")
    assert "http://127.0.0.1:80" in err


def test_cuda_requested_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CPU-only error path cannot be exercised here")
    err = _run_error(capsys, "--device", "cuda", "--eeg", "synthetic", "--ecg", "none")
    assert "cuda" in err.lower()


def test_argparse_errors_exit_2_without_traceback() -> None:
    proc = subprocess.run([RT_PHYSIO, "run", "--window", "-1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--window" in proc.stderr


def test_models_command_lists_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "untrained-demo" in out
    assert "UNTRAINED" in out


@pytest.mark.parametrize(("text", "message"), [
    ('insecure = "false"\n', "The 'insecure' parameter must be true or false, got 'false' (a string)."),
    ("record = 5\n", "The 'record' parameter must be a string, got 5 (an integer)."),
    ("device = 5\n", "The 'device' parameter must be a string, got 5 (an integer)."),
    ("publish = [1]\n", "The 'publish' parameter must be a list of strings, got [1] (a list)."),
])
def test_wrongly_typed_config_values_exit_2_naming_key_type_and_value(capsys: pytest.CaptureFixture[str],
                                                                       tmp_path: Path, text: str,
                                                                       message: str) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(text)
    err = _run_error(capsys, "--config", str(path))
    assert err == f"rt-physio: error: {message}\n"


@pytest.mark.parametrize("argv", [["--duration", "inf"], ["--duration", "nan"], ["--hop", "1e999"],
                                  ["--max-wait-ms", "nan"], ["--resolve-timeout", "inf"]])
def test_non_finite_numbers_on_the_command_line_exit_2(argv: list[str]) -> None:
    proc = subprocess.run([RT_PHYSIO, "run", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"argument {argv[0]}: expected a " in proc.stderr
    assert f"finite number, got {argv[1]!r}" in proc.stderr
