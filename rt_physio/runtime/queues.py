"""A bounded hand-off queue between threads that never blocks the producer.

Real-time data goes stale: when a consumer falls behind, the oldest item is dropped (and counted) so the
newest one always gets through. ``put`` never blocks; ``get`` blocks with a timeout.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["DropOldestQueue"]

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """Bounded FIFO whose ``put`` drops the oldest item when full.

    Parameters
    ----------
    maxsize : int
        Capacity; must be at least 1.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"The 'maxsize' parameter must be at least 1, got {maxsize}.")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0
        self._closed = False

    def put(self, item: T) -> T | None:
        """Append ``item``; return the item dropped to make room, if any."""
        with self._cond:
            dropped = None
            if len(self._items) >= self._maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Pop the oldest item, waiting up to ``timeout`` seconds; None on timeout or when closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                return self._items.popleft()
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
