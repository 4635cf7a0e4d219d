"""What an LSL source does while its stream is silent: find the stream again by the original query, or re-subscribe.

liblsl's own recovery (``recover=True``) reconnects an inlet only to a stream with the *same* source_id; a sender
restarted with another source_id (many apps make one up at start), or a stream without one, leaves the inlet
silent for ever. So while the stream is silent, :class:`LslRecovery` watches the network for streams matching
the query the user gave (``name``, ``type``, ``source_id``), and:

- a matching stream with another uid (a new outlet) → a new inlet on it replaces the old one (after a short
  grace when its source_id is the same, to let liblsl's own recovery act first);
- the stream we are subscribed to is still there but nothing arrives → the subscription is renewed
  (close and reopen the data connection), in case it was lost on the way.

Attempts back off (1 s doubling to 5 s) and never give up; the engine decides when a silence is too long
(``--give-up-after``). Everything runs on the source's acquisition thread, each call bounded by ``open_timeout``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from rt_physio.clock import local_clock
from rt_physio.sources.lsl_streams import StreamWatch, describe_query, summarize

__all__ = ["LslRecovery", "Reopened"]

log = logging.getLogger("rt_physio.sources.lsl")


@dataclass(frozen=True, slots=True)
class Reopened:
    """A new inlet on a stream found again by the query."""

    inlet: pylsl.StreamInlet
    time_correction: float
    uid: str
    description: str


class LslRecovery:
    """Re-resolve and re-subscribe one LSL source's stream while it is silent (see the module docstring).

    Parameters
    ----------
    query : mapping
        The properties the stream was resolved by.
    name : str
        The stream's name, for logs.
    uid, source_id : str
        The stream currently subscribed to.
    signature : (int, float, int)
        Channel count, nominal rate and channel format a replacement must have (the processing is set up for
        them).
    max_buflen : int
        Seconds of data a new inlet buffers.
    """

    #: First delay between attempts, seconds (doubling up to :attr:`max_delay`).
    first_delay: float = 1.0
    #: Longest delay between attempts, seconds.
    max_delay: float = 5.0
    #: Seconds a new outlet with the *same* source_id is left to liblsl's own recovery before we switch to it.
    grace: float = 3.0
    #: Seconds a new subscription (or a new inlet's set-up) may take.
    open_timeout: float = 1.0

    def __init__(self, query: Mapping[str, str], name: str, uid: str, source_id: str,
                 signature: tuple[int, float, int], max_buflen: int = 360) -> None:
        self.query = dict(query)
        self.name = name
        self.uid = uid
        self.source_id = source_id
        self.signature = signature
        self.max_buflen = max_buflen
        self._watch: StreamWatch | None = None
        self._delay = self.first_delay
        self._next = -math.inf
        self._first_seen: dict[str, float] = {}
        self._refused: set[str] = set()
        self.last_error: str | None = None
        self.reopened = 0
        self.resubscribed = 0
        #: engine-clock time of the current subscription (the source sets it when it subscribes)
        self.subscribed_at = -math.inf

    def reset(self) -> None:
        """Stop watching and forget the backoff: data flow again."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._delay = self.first_delay
        self._next = -math.inf
        self._first_seen.clear()
        self.last_error = None

    def due(self, now: float) -> bool:
        """Whether an attempt is due at ``now``."""
        return now >= self._next

    def attempt(self, now: float, inlet: pylsl.StreamInlet | None) -> Reopened | None:
        """One recovery attempt; returns the new inlet when the stream was found again elsewhere.

        ``inlet`` is the current one (None after liblsl declared it lost). A renewed subscription is done in
        place (and returns None).
        """
        self._next = now + self._delay
        self._delay = min(2 * self._delay, self.max_delay)
        if self._watch is None:  # its first results come in about half a second: used by the next attempt
            self._watch = StreamWatch(self.query)
            return None
        matches = self._watch.matches()
        for found in matches:
            uid = found.uid()
            if uid == self.uid or uid in self._refused:
                continue
            first_seen = self._first_seen.setdefault(uid, now)
            same_id = bool(self.source_id) and found.source_id() == self.source_id
            if same_id and inlet is not None and now - first_seen < self.grace:
                continue  # liblsl's recover=True is reconnecting this inlet to it: give it its chance
            return self._open(found)
        if inlet is not None and any(f.uid() == self.uid for f in matches) and now - self.subscribed_at > self._delay:
            self._resubscribe(inlet, now)
        return None

    def _open(self, found: pylsl.StreamInfo) -> Reopened | None:
        uid = found.uid()
        signature = (found.channel_count(), float(found.nominal_srate()), found.channel_format())
        description = summarize(found).describe()
        if signature != self.signature:
            self._refused.add(uid)
            self.last_error = (f"a stream matching {describe_query(self.query)} came back with another layout "
                               f"({description}); not using it")
            log.error("LSL stream %s: %s", self.name, self.last_error)
            return None
        inlet = pylsl.StreamInlet(found, max_buflen=self.max_buflen, recover=True, processing_flags=pylsl.proc_none)
        try:
            inlet.open_stream(timeout=self.open_timeout)
            correction = float(inlet.time_correction(timeout=self.open_timeout))
        except (LslTimeoutError, LostError) as exc:
            inlet.close_stream()
            self.last_error = f"found {description} but it did not answer ({type(exc).__name__})"
            log.debug("LSL stream %s: %s", self.name, self.last_error)
            return None
        self.uid = uid
        self.source_id = found.source_id() or uid
        self.reopened += 1
        self.subscribed_at = local_clock()
        log.warning("LSL stream %s: found again by %s as %s; reading from it now", self.name,
                    describe_query(self.query), description)
        return Reopened(inlet, correction, uid, description)

    def _resubscribe(self, inlet: pylsl.StreamInlet, now: float) -> None:
        self.subscribed_at = now
        try:
            inlet.close_stream()
            inlet.open_stream(timeout=self.open_timeout)
        except (LslTimeoutError, LostError) as exc:
            self.last_error = f"re-subscribing failed ({type(exc).__name__})"
            log.debug("LSL stream %s: %s", self.name, self.last_error)
            return
        self.resubscribed += 1
        log.info("LSL stream %s: still visible but silent; renewed the subscription (%d so far)", self.name,
                 self.resubscribed)
