from __future__ import annotations

import threading
import time

import pytest

from rt_physio.queues import DropOldestQueue


def test_fifo_and_drop_oldest() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(3)
    assert [q.put(i) for i in range(5)] == [None, None, None, 0, 1]
    assert q.dropped == 2
    assert [q.get(0) for _ in range(3)] == [2, 3, 4]
    assert q.get(0.01) is None


def test_get_wakes_on_put_and_close() -> None:
    q: DropOldestQueue[str] = DropOldestQueue(1)
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(5)))
    t.start()
    time.sleep(0.05)
    q.put("x")
    t.join(1)
    assert got == ["x"]
    t = threading.Thread(target=lambda: got.append(q.get(5)))
    t.start()
    q.close()
    t.join(1)
    assert not t.is_alive()
    assert got == ["x", None]


def test_maxsize_validated() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        DropOldestQueue(0)
