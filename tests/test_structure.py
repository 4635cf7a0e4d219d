"""The package's import structure: arrows that must not point back against the flow.

The main path runs sources -> dsp -> runtime (with nn) -> publish; training sits beside it and the dashboard reads
only what is published. The rules are read from the source text (every ``import`` statement, at module level,
inside functions and under ``TYPE_CHECKING`` alike), so a lazy import against the flow fails too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import rt_physio

PACKAGE = Path(rt_physio.__file__).parent
#: Modules below every room: each imports nothing else of rt_physio, so any room may use them.
FOUNDATION = ("checks", "errors", "queues")


def _loaded_after_import(module: str, prefix: str) -> list[str]:
    """Modules under ``prefix`` that importing ``module`` loads, in a fresh interpreter."""
    code = (f"import json, sys, {module}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefix!r}))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_live_engine_loads_no_training_module() -> None:
    # runtime -> nn -> features: the features live in dsp, so the engine never pulls training code in
    assert _loaded_after_import("rt_physio.runtime.engine", "rt_physio.training") == []


def _imports(room: str) -> list[tuple[str, str]]:
    """``(where, imported room)`` for every rt_physio import in ``room`` (a subpackage or a top-level module).

    ``where`` is ``path:line imports name``; the imported room is the name's first part below ``rt_physio``.
    """
    base = PACKAGE / room
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files and files[0].exists(), f"no module {room!r} in {PACKAGE}"
    found = []
    for path in files:
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                stem = package[:len(package) - node.level + 1] if node.level else []
                module = ".".join([*stem, node.module] if node.module else stem)
                # ``from rt_physio import training`` names a room in the alias, not in the module
                names = [f"{module}.{alias.name}" for alias in node.names] if module == "rt_physio" else [module]
            else:
                continue
            for name in names:
                bits = name.split(".")
                if bits[0] == "rt_physio" and len(bits) > 1:
                    found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {name}", bits[1]))
    return found


def _against(room: str, forbidden: set[str]) -> list[str]:
    return [where for where, target in _imports(room) if target in forbidden]


def test_the_foundation_imports_no_other_rt_physio_module() -> None:
    for module in FOUNDATION:
        assert [where for where, target in _imports(module) if target != module] == []


def test_dsp_imports_only_itself_and_the_foundation() -> None:
    allowed = {"dsp", *FOUNDATION}
    assert [where for where, target in _imports("dsp") if target not in allowed] == []


def test_io_imports_only_itself_and_the_foundation() -> None:
    # replay, training and the recorder all read files through io: it must not reach back into any of them
    allowed = {"io", *FOUNDATION}
    assert [where for where, target in _imports("io") if target not in allowed] == []


def test_sources_never_import_runtime_or_publish() -> None:
    assert _against("sources", {"runtime", "publish", "training", "dashboard"}) == []


def test_nn_never_imports_runtime_publish_training_or_sources() -> None:
    assert _against("nn", {"runtime", "publish", "training", "sources", "dashboard"}) == []


def test_publish_never_imports_runtime_nn_or_training() -> None:
    assert _against("publish", {"runtime", "nn", "training", "dashboard"}) == []


def test_runtime_never_imports_training() -> None:
    assert _against("runtime", {"training", "dashboard"}) == []


def test_training_never_imports_the_live_path() -> None:
    # training reads files through io and builds models through nn; the live path must not become its dependency
    assert _against("training", {"sources", "runtime", "publish", "dashboard"}) == []


def test_the_dashboard_reads_only_what_is_published() -> None:
    assert _against("dashboard", {"runtime", "nn", "training", "sources", "dsp"}) == []


def test_the_rule_reader_sees_every_import() -> None:
    # the rules above pass on an empty list, so check that the reader finds what it must: a module-level import
    # into another room, one inside a function, and one under TYPE_CHECKING
    engine = [where for where, _ in _imports("runtime") if where.startswith("rt_physio/runtime/engine.py:")]
    assert any(where.endswith(" imports rt_physio.nn.registry") for where in engine)
    assert any(where.endswith(" imports rt_physio.publish.recorder") for where in engine)  # TYPE_CHECKING
    publishers = [where for where, _ in _imports("publish") if where.startswith("rt_physio/publish/publishers.py:")]
    assert any(where.endswith(" imports rt_physio.publish.mqtt") for where in publishers)  # inside a function


def test_nothing_imports_the_experiments() -> None:
    # experiments measure; the library, the CLI and the engine must run without them
    rooms = sorted({p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")})
    assert "experiments" in rooms and "training" in rooms
    assert [where for room in rooms if room != "experiments" for where in _against(room, {"experiments"})] == []
