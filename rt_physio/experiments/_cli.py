"""What every experiment's command line shares: ``--data`` and ``--json``, INFO logging, the recorded command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["experiment_parser", "recorded_command", "start_logging"]


def experiment_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """Return a parser for ``python -m <module>`` with the ``--data`` (EEGMAT folder) and ``--json`` options."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--data", required=True, type=Path, help="EEGMAT folder of EDFs")
    parser.add_argument("--json", required=True, type=Path, help="report to write")
    return parser


def recorded_command(module: str, argv: Sequence[str] | None) -> str:
    """Return the command line recorded in the report (``argv`` or, when None, this process's arguments)."""
    return f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)


def start_logging() -> None:
    """Log INFO and above to stderr with timestamps (an experiment runs for minutes to hours)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
