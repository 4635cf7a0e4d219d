"""The package's import structure: arrows that must not point back against the flow."""

from __future__ import annotations

import json
import subprocess
import sys


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
