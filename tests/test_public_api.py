"""The package root: the public names are importable from ``rt_physio`` and cost nothing until used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rt_physio
from rt_physio.config import EngineConfig
from rt_physio.nn.registry import load_model
from rt_physio.publish.schema import Prediction
from rt_physio.runtime.engine import Engine
from rt_physio.sources.base import Chunk
from rt_physio.sources.spec import open_source


def test_the_public_names_are_the_library_objects() -> None:
    expected = {"Chunk": Chunk, "Engine": Engine, "EngineConfig": EngineConfig, "Prediction": Prediction,
                "load_model": load_model, "open_source": open_source}
    assert sorted(rt_physio.__all__) == sorted([*expected, "__version__"])
    for name, obj in expected.items():
        assert getattr(rt_physio, name) is obj
    assert set(rt_physio.__all__) <= set(dir(rt_physio))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Engin'"):
        rt_physio.Engin  # noqa: B018


def test_importing_the_package_loads_no_submodule_and_no_torch() -> None:
    # every ``import rt_physio.<module>`` runs the package first, so the root must stay light
    code = ("import json, sys, rt_physio; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('rt_physio', 'torch', 'numpy')))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["rt_physio"]
