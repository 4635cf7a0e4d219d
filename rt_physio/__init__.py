"""rt_physio: real-time streaming inference for physiological signals (EEG + ECG).

Live streams arrive over LSL or BrainFlow, are filtered, resampled to 200 Hz and windowed, run through a
dual-backbone CBraMod fusion model, and the predictions are published over ZeroMQ (and MQTT).

The names most programs need are importable from here::

    from rt_physio import Engine, EngineConfig, open_source, load_model, Chunk, Prediction

They are loaded on first use, so ``import rt_physio`` (and every ``import rt_physio.<module>``, which runs this
file first) stays light: the engine and the model registry pull in torch, which takes seconds to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rt_physio.config import EngineConfig
    from rt_physio.nn.registry import load_model
    from rt_physio.publish.schema import Prediction
    from rt_physio.runtime.engine import Engine
    from rt_physio.sources.base import Chunk
    from rt_physio.sources.spec import open_source

__version__ = "0.1.0"

__all__ = ["Chunk", "Engine", "EngineConfig", "Prediction", "__version__", "load_model", "open_source"]

# public name -> the module that defines it
_LAZY = {
    "Chunk": "rt_physio.sources.base",
    "Engine": "rt_physio.runtime.engine",
    "EngineConfig": "rt_physio.config",
    "Prediction": "rt_physio.publish.schema",
    "load_model": "rt_physio.nn.registry",
    "open_source": "rt_physio.sources.spec",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_physio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
