"""The byte bound and drop callback of the drop-oldest hand-off queue."""

from __future__ import annotations

import pytest

from rt_physio.queues import DropOldestQueue


def test_byte_bound_drops_the_oldest_until_the_new_item_fits() -> None:
    dropped: list[bytes] = []
    q: DropOldestQueue[bytes] = DropOldestQueue(100, max_bytes=10, size=len, on_drop=dropped.append)
    for item in (b"aaaa", b"bbbb", b"cc"):
        assert q.put(item) is None
    assert q.bytes == 10
    assert q.put(b"ddddd") == b"bbbb"  # 5 more bytes: both of the two oldest must go
    assert dropped == [b"aaaa", b"bbbb"]
    assert (q.dropped, q.bytes, len(q)) == (2, 7, 2)
    assert q.get(0) == b"cc"
    assert q.bytes == 5


def test_an_item_over_the_whole_bound_is_dropped_itself() -> None:
    dropped: list[bytes] = []
    q: DropOldestQueue[bytes] = DropOldestQueue(100, max_bytes=10, size=len, on_drop=dropped.append)
    q.put(b"keep")
    assert q.put(b"x" * 11) == b"x" * 11
    assert dropped == [b"x" * 11]
    assert [q.get(0), q.get(0)] == [b"keep", None]
    assert (q.dropped, q.bytes) == (1, 0)


def test_item_bound_still_holds_and_counts_through_the_callback() -> None:
    dropped: list[int] = []
    q: DropOldestQueue[int] = DropOldestQueue(2, on_drop=dropped.append)
    for i in range(5):
        q.put(i)
    assert dropped == [0, 1, 2]
    assert q.bytes == 0


def test_byte_bound_needs_a_size() -> None:
    with pytest.raises(ValueError, match="'max_bytes' and 'size' parameters go together"):
        DropOldestQueue(4, max_bytes=10)
    with pytest.raises(ValueError, match="'max_bytes' parameter must be at least 1, got 0"):
        DropOldestQueue(4, max_bytes=0, size=len)
