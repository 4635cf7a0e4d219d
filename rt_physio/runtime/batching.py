"""The executor's queue: windows grouped by shape, handed out as batches, bounded with drop-oldest.

A batch is formed from windows of one :class:`~rt_physio.runtime.runners.ShapeKey`. The executor asks for
the next batch with :meth:`BatchQueue.take`: the key whose oldest window waited longest goes first; up to
``max_batch`` of its windows are taken. If fewer are there, it waits up to ``max_wait`` seconds (measured from
the oldest window's hand-over) for more of the same key — unless every session known to send this shape is
already in the batch, in which case waiting cannot help and the batch goes at once. So a single session never
pays the batching wait, and under load batches form by themselves from what queued up during the previous
forward pass.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["BatchQueue"]

K = TypeVar("K")
T = TypeVar("T")


class BatchQueue(Generic[K, T]):
    """Bounded multi-key FIFO handing out same-key batches.

    Parameters
    ----------
    maxsize : int
        Items held in total; when full, the oldest item overall is dropped (and counted).
    clock : callable
        Time source in seconds (the engine clock).
    """

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        if maxsize < 1:
            raise ValueError(f"The 'maxsize' parameter must be at least 1, got {maxsize}.")
        self._maxsize = maxsize
        self._clock = clock
        self._by_key: dict[K, deque[tuple[float, str, T]]] = {}
        self._count = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._senders: dict[K, dict[str, float]] = {}
        self.sender_ttl = 10.0
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return self._count

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def put(self, key: K, sender: str, item: T, t_ready: float) -> T | None:
        """Queue ``item`` (ready at engine time ``t_ready``) from ``sender``; return the item dropped, if any."""
        if not math.isfinite(t_ready):  # an unstamped item waits from now (a NaN deadline would never pass)
            t_ready = self._clock()
        with self._cond:
            dropped = None
            if self._count >= self._maxsize:
                dropped = self._pop_oldest()
            self._by_key.setdefault(key, deque()).append((t_ready, sender, item))
            self._count += 1
            self._senders.setdefault(key, {})[sender] = t_ready
            self._cond.notify()
            return dropped

    def _pop_oldest(self) -> T:
        key = min((k for k, q in self._by_key.items() if q), key=lambda k: self._by_key[k][0][0])
        _, _, item = self._by_key[key].popleft()
        self._count -= 1
        self.dropped += 1
        return item

    def close(self) -> None:
        """Wake the consumer; queued items can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, max_batch: int, max_wait: float, timeout: float) -> tuple[K, list[T]] | None:
        """Next batch (key, items), or None after ``timeout`` s with nothing queued (or closed and empty)."""
        with self._cond:
            if self._count == 0 and not self._closed:
                self._cond.wait(timeout)
            if self._count == 0:
                return None
            key = min((k for k, q in self._by_key.items() if q), key=lambda k: self._by_key[k][0][0])
            queue = self._by_key[key]
            deadline = queue[0][0] + max_wait
            batch: list[tuple[float, str, T]] = []
            while True:
                while queue and len(batch) < max_batch:
                    batch.append(queue.popleft())
                    self._count -= 1
                if len(batch) >= max_batch or self._closed or self._all_senders_in(key, {s for _, s, _ in batch}):
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return key, [item for _, _, item in batch]

    def runs_alone(self, key: K, sender: str, t_ready: float) -> bool:
        """Note that ``sender`` has an item of ``key`` ready; True when batching could add nothing to it.

        That is: nothing is queued (so nothing older is owed the device first), the queue is open, and no other
        sender is known to send ``key``. The caller may then run the item itself instead of queueing it.
        """
        if not math.isfinite(t_ready):
            t_ready = self._clock()
        with self._cond:
            self._senders.setdefault(key, {})[sender] = t_ready
            return not self._closed and self._count == 0 and self._all_senders_in(key, {sender})

    def _all_senders_in(self, key: K, batch_senders: set[str]) -> bool:
        senders = self._senders.get(key, {})
        now = self._clock()
        for sender, last in list(senders.items()):
            if now - last > self.sender_ttl:
                del senders[sender]  # a session that stopped sending this shape no longer holds batches back
        return batch_senders >= set(senders)
