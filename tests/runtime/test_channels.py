"""Models that name their channels get them by name, whatever order (or superset) a stream delivers."""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.errors import ConfigError
from rt_physio.runtime.engine import match_channels

MODEL = ("Fp1", "Fp2", "Cz")


def test_same_order_needs_no_selection() -> None:
    assert match_channels(MODEL, ("EEG Fp1", "EEG Fp2", "EEG Cz"), "m", "s") is None
    assert match_channels((), ("a", "b"), "m", "s") is None  # a model that accepts any montage


def test_reordered_or_superset_streams_are_picked_by_name() -> None:
    idx = match_channels(MODEL, ("cz", "FP2", "x", "EEG Fp1"), "m", "s")
    assert idx is not None and idx.tolist() == [3, 1, 0]
    chunk = np.arange(8.0).reshape(2, 4)  # (samples, channels) as sources deliver
    assert chunk[:, idx].tolist() == [[3.0, 1.0, 0.0], [7.0, 5.0, 4.0]]


def test_generic_names_with_the_right_count_keep_the_stream_order(caplog: pytest.LogCaptureFixture) -> None:
    assert match_channels(MODEL, ("ch1", "ch2", "ch3"), "m", "s") is None
    assert "do not match" in caplog.text


def test_missing_channels_are_named() -> None:
    with pytest.raises(ConfigError, match="lacks Cz"):
        match_channels(MODEL, ("Fp1", "Fp2"), "Model 'm'", "'lsl:x' (EEG)")
