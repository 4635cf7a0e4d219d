"""Fixtures for the training tests: small EEGMAT folders built from the real shared files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def eegmat_subset(src: Path, dst: Path, subjects: list[int]) -> Path:
    """A folder holding symlinks to the rest and task files of ``subjects``."""
    dst.mkdir(parents=True, exist_ok=True)
    for s in subjects:
        for k in (1, 2):
            name = f"Subject{s:02d}_{k}.edf"
            (dst / name).symlink_to(src / name)
    return dst


@pytest.fixture(scope="session")
def eegmat_dir(data_dir: Path) -> Path:
    path = data_dir / "eegmat"
    assert (path / "Subject00_1.edf").is_file(), f"EEGMAT files missing from {path}"
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preprocessing cache for the whole test session (tests stay fast; no writes to ~/.cache)."""
    return tmp_path_factory.mktemp("prepared-cache")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and other suites run beside this one on a 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
