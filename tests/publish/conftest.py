"""Fixtures for the publishing tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.publish._brokers import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """An anonymous mosquitto on a free loopback port."""
    b = Mosquitto(tmp_path, free_port()).start()
    yield b
    b.stop()
