"""Report writing shared by the training and evaluation commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from rt_physio.training.reports import write_report


def test_report_is_strict_json_in_a_new_folder_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "new" / "r.json"
    said = io.StringIO()
    write_report(path, {"auroc": float("nan"), "per_fold": [0.5, np.float64(0.75)], "n": 3}, said)
    text = path.read_text()
    assert "NaN" not in text  # Python's json would write NaN, which strict JSON readers refuse
    assert json.loads(text) == {"auroc": None, "per_fold": [0.5, 0.75], "n": 3}
    assert said.getvalue() == f"wrote {path}\n"


def test_no_path_writes_nothing(tmp_path: Path) -> None:
    said = io.StringIO()
    write_report(None, {"a": 1}, said)
    assert said.getvalue() == "" and not any(tmp_path.iterdir())
