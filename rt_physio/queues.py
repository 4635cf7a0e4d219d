"""A bounded hand-off queue between threads that never blocks the producer.

Real-time data goes stale: when a consumer falls behind, the oldest item is dropped (and counted) so the
newest one always gets through. ``put`` never blocks; ``get`` blocks with a timeout. The bound is a number of
items and, optionally, a number of bytes (items of very different sizes, such as raw chunks of a 64-channel
headset and of a one-lead ECG, make an item count a poor memory bound).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DropOldestQueue"]

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """Bounded FIFO whose ``put`` drops the oldest item when full.

    Parameters
    ----------
    maxsize : int
        Capacity in items; must be at least 1.
    max_bytes : int, optional
        Capacity in bytes, as measured by ``size``; an item larger than this on its own is dropped itself.
    size : callable, optional
        ``size(item) -> int`` bytes; required with ``max_bytes``.
    on_drop : callable, optional
        Called with each dropped item, under the queue's lock (it must be quick and must not use the queue).
    """

    def __init__(self, maxsize: int, *, max_bytes: int | None = None, size: Callable[[T], int] | None = None,
                 on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"The 'maxsize' parameter must be at least 1, got {maxsize}.")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"The 'max_bytes' parameter must be at least 1, got {max_bytes}.")
        if (max_bytes is None) != (size is None):
            raise ValueError("The 'max_bytes' and 'size' parameters go together: give both or neither.")
        self._items: deque[tuple[int, T]] = deque()
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._size = size
        self._on_drop = on_drop
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0
        self.bytes = 0  # bytes queued now (0 without a byte bound)
        self._closed = False

    def put(self, item: T) -> T | None:
        """Append ``item``; return the (last) item dropped to make room, if any (``item`` itself when too large)."""
        n = self._size(item) if self._size is not None else 0
        with self._cond:
            if self._max_bytes is not None and n > self._max_bytes:  # the queued items are not at fault
                self._drop(item)
                return item
            dropped = None
            while self._items and (len(self._items) >= self._maxsize
                                   or (self._max_bytes is not None and self.bytes + n > self._max_bytes)):
                size, dropped = self._items.popleft()
                self.bytes -= size
                self._drop(dropped)
            self._items.append((n, item))
            self.bytes += n
            self._cond.notify()
            return dropped

    def _drop(self, item: T) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(item)

    def get(self, timeout: float | None = None) -> T | None:
        """Pop the oldest item, waiting up to ``timeout`` seconds; None on timeout or when closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                size, item = self._items.popleft()
                self.bytes -= size
                return item
            return None

    def close(self) -> None:
        """Wake every waiting consumer; items already queued can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
