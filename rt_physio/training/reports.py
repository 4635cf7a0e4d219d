"""Writing what a training or evaluation command measured: its JSON report and the command line that made it."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from rt_physio.training.metrics import json_safe

__all__ = ["command_line", "write_report"]


def command_line() -> str:
    """Return this process's ``rt-physio ...`` command line, shell-quoted (recorded in reports and model cards)."""
    return "rt-physio " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def write_report(path: str | Path | None, report: Mapping[str, Any], out: TextIO | None = None, *,
                 indent: int = 2) -> None:
    """Write ``report`` as JSON, non-finite numbers as null (:func:`~rt_physio.training.metrics.json_safe`).

    Parameters
    ----------
    path : str | Path | None
        The file; its folder is created if needed. None writes nothing (an optional ``--json`` not given).
    report : Mapping
        JSON-ready apart from NumPy scalars and non-finite floats.
    out : TextIO | None
        Where to say ``wrote PATH`` (nothing is said when None).
    indent : int
        JSON indentation.
    """
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(report), indent=indent) + "\n")
    if out is not None:
        out.write(f"wrote {path}\n")
