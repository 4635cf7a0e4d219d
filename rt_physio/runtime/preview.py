"""The signal preview (``rt-physio run --preview``): a decimated copy of each filtered stream, for display only.

A thread of its own wakes every :attr:`Previewer.every` seconds, copies the samples each stream's processor wrote
to its ring since the last look (under the stream's lock, as the windower does: a copy of a few hundred values),
averages them in blocks down to at most :data:`MAX_RATE` Hz per channel, and hands one ``rt_physio.preview/1``
message per session to the publishers (``<prefix>/<session>/preview``). Acquisition, windows and inference never
wait for it beyond that copy; a preview that cannot be sent is dropped like any message of a slow subscriber.
The message is bounded: at most :data:`MAX_CHANNELS` channels and :data:`MAX_SAMPLES` samples per channel.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rt_physio.clock import local_clock
from rt_physio.runtime.session import ModalityStream, Session

__all__ = ["MAX_CHANNELS", "MAX_RATE", "MAX_SAMPLES", "Previewer"]

log = logging.getLogger(__name__)

MAX_RATE = 25.0  # samples per second per channel in a preview
MAX_CHANNELS = 64
MAX_SAMPLES = 50  # per channel and message (2 s at 25 Hz: a preview that fell behind skips ahead)

PreviewSink = Callable[[str, dict[str, Any]], None]


class _Cursor:
    """Where the previous look at one stream's ring stopped."""

    def __init__(self) -> None:
        self.next = -1  # absolute ring index of the first sample not previewed yet (-1: start from now)


class Previewer:
    """Publish each session's decimated filtered streams from a thread of its own (see the module docstring).

    Parameters
    ----------
    sessions : mapping
        Session id → :class:`Session`.
    publish : callable
        ``publish(session_id, message)`` hands a preview map (without ``schema``/``session``) to every publisher.
    every : float
        Seconds between messages.
    """

    def __init__(self, sessions: Mapping[str, Session], publish: PreviewSink, every: float = 0.25) -> None:
        self.sessions = sessions
        self._publish = publish
        self.every = every
        self._cursors = {(sid, m): _Cursor() for sid, s in sessions.items() for m in s.streams}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)
        self.published = 0

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (bounded wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for session_id, session in self.sessions.items():
                try:
                    message = self.message(session_id, session)
                    if message is not None:
                        self._publish(session_id, message)
                        self.published += 1
                except Exception:  # a preview must never stop anything else
                    log.exception("session %s: preview failed", session_id)

    def message(self, session_id: str, session: Session) -> dict[str, Any] | None:
        """Build the session's next preview map from what its streams wrote since the last one (None: nothing)."""
        now, wall = local_clock(), time.time()
        streams: dict[str, Any] = {}
        for modality, stream in session.streams.items():
            entry = self._stream(stream, self._cursors[(session_id, modality)])
            if entry is not None:
                entry["t_end_wall"] = round(wall - (now - entry["t_end"]), 3)
                streams[modality] = entry
        if not streams:
            return None
        return {"t_wall": round(wall, 3), "streams": streams}

    @staticmethod
    def _stream(stream: ModalityStream, cursor: _Cursor) -> dict[str, Any] | None:
        processor = stream.processor
        factor = max(1, math.ceil(processor.fs_out / MAX_RATE))
        with stream.lock:  # the acquisition thread writes the ring under this lock
            ring = processor.ring
            hi = ring.n_written
            lo = max(ring.oldest, ring.segment_start, hi - MAX_SAMPLES * factor,
                     cursor.next if cursor.next >= 0 else hi)
            n = (hi - lo) // factor * factor
            if n <= 0:
                if cursor.next < 0:
                    cursor.next = hi
                return None
            data, stamps = ring.slice(lo, lo + n)
            data = np.array(data[:, :MAX_CHANNELS], dtype=np.float64)  # (n, channels), a copy
            t_end = float(stamps[-1])
        cursor.next = lo + n
        blocks = data.reshape(n // factor, factor, -1).mean(axis=1)  # (n / factor, channels): block means
        info = stream.source.info
        names = list(info.channel_names)
        if stream.select is not None:
            names = [names[i] for i in stream.select]
        return {
            "sfreq": processor.fs_out / factor,
            "t_end": round(t_end - (factor - 1) / (2 * processor.fs_out), 6),  # the centre of the last block
            "channels": names[:MAX_CHANNELS],
            "data": np.round(np.nan_to_num(blocks.T, nan=0.0, posinf=0.0, neginf=0.0), 2).tolist(),
        }
