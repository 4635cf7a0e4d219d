"""When to drop and re-open a wireless link: silence while streaming, and the backoff between reconnections.

A Bluetooth LE link can stay "connected" while the device sends nothing (the strap lost skin contact and slept,
the phone grabbed the stream, the radio is saturated): waiting for the disconnection callback would wait for
ever. :class:`LinkWatch` holds the decision, free of any radio code so it is tested on its own: the source
reports frames and (re)connections, asks :meth:`LinkWatch.silent` once a second, and asks
:meth:`LinkWatch.next_delay` before each reconnection attempt.
"""

from __future__ import annotations

import math

__all__ = ["LinkWatch"]


class LinkWatch:
    """Silence detection and reconnection backoff of one link.

    Parameters
    ----------
    silence_after : float
        Seconds without a frame, while streaming was requested, after which the link is dropped and re-opened.
    first_delay, max_delay : float
        Backoff between reconnection attempts: the first delay, doubled after each failure, up to the longest.
    """

    def __init__(self, silence_after: float = 5.0, first_delay: float = 1.0, max_delay: float = 10.0) -> None:
        if not 0 < first_delay <= max_delay or not silence_after > 0:
            raise ValueError(f"LinkWatch needs silence_after > 0 and 0 < first_delay <= max_delay; got "
                             f"{silence_after!r}, {first_delay!r}, {max_delay!r}.")
        self.silence_after = silence_after
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._delay = first_delay
        self._streaming_since = math.nan  # when streaming was (re)requested; nan: not requested
        self._last_frame = math.nan
        self.drops = 0  # links dropped for silence

    def streaming(self, now: float) -> None:
        """Start the silence clock: streaming was requested now (start, or a reconnection)."""
        self._streaming_since = now
        self._last_frame = math.nan

    def connected(self) -> None:
        """Restart the backoff from its first delay: a (re)connection succeeded."""
        self._delay = self.first_delay

    def frame(self, now: float) -> None:
        """Record that a frame arrived now."""
        self._last_frame = now

    def silent(self, now: float) -> bool:
        """Whether the link should be dropped now (no frame for ``silence_after`` seconds of streaming)."""
        if math.isnan(self._streaming_since):
            return False
        since = self._streaming_since if math.isnan(self._last_frame) else max(self._last_frame,
                                                                                self._streaming_since)
        if now - since <= self.silence_after:
            return False
        self.drops += 1
        self._streaming_since = math.nan  # until the reconnection requests streaming again
        return True

    def next_delay(self) -> float:
        """Seconds to wait before the next reconnection attempt (doubling, capped)."""
        delay = self._delay
        self._delay = min(2 * self._delay, self.max_delay)
        return delay
