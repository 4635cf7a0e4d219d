"""rt_physio.io is a foundation room: it imports nothing from the rooms that read through it."""

from __future__ import annotations

import ast
from pathlib import Path

import rt_physio.io

ALLOWED = ("rt_physio.io", "rt_physio.errors")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_io_imports_no_other_room() -> None:
    folder = Path(rt_physio.io.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 8
    wrong = {f"{path.name}: {name}" for path in files for name in _imports(path)
             if name.startswith("rt_physio") and not name.startswith(ALLOWED)}
    assert not wrong, f"rt_physio.io must import only {ALLOWED} from rt_physio: {sorted(wrong)}"
