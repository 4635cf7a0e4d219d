"""A console line printer that never holds up the engine: its own bounded queue and its own thread.

``rt-physio run`` prints one line per prediction. A write to stdout can block: a pipe that nobody reads is full
after 64 KiB, and every later write waits. So the engine's callbacks only append the line to a bounded queue
(:class:`~rt_physio.queues.DropOldestQueue`: when it is full, the oldest line is dropped and counted)
and return; the printer's thread formats and writes. A blocked write blocks that thread alone; when it gets
going again, it first prints how many lines were lost.

When the output has a file descriptor (a terminal, a pipe, a file), the thread writes to the descriptor with
``os.write`` rather than through ``sys.stdout``: a thread blocked inside ``sys.stdout.write`` holds the stream's
buffer lock, and the interpreter's last flush of stdout at exit would wait for it (and then abort with "could
not acquire lock … at interpreter shutdown"). Blocked on the bare descriptor, the daemon thread holds no lock,
so a run still ends when stdout is stuck.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from typing import TextIO

from rt_physio.queues import DropOldestQueue

__all__ = ["LinePrinter"]

log = logging.getLogger(__name__)

Line = str | Callable[[], str]
"""A line of text, or a function that makes it (called on the printer's thread, off the caller's)."""

_BATCH = 256  # lines written with one system call at most


class LinePrinter:
    """Write lines to ``out`` from a dedicated thread; :meth:`put` never blocks.

    Parameters
    ----------
    out : TextIO
        Where lines go (``sys.stdout`` for the CLI; any text stream works, e.g. ``io.StringIO``).
    maxsize : int
        Lines waiting before the oldest is dropped (and counted). The default, 100, is ten seconds of a
        0.1-s hop: more than a person reads, little memory.
    """

    def __init__(self, out: TextIO, *, maxsize: int = 100) -> None:
        self._out = out
        self._fd = _file_descriptor(out)
        self._encoding = getattr(out, "encoding", None) or "utf-8"
        if self._fd is not None:
            out.flush()  # what was written through the stream so far comes before our lines
        self._queue: DropOldestQueue[Line] = DropOldestQueue(maxsize)
        self.written = 0  # lines written
        self._lost = 0  # lines that could not be written (the output was closed)
        self._reported = 0  # drops already announced in the output
        self._broken: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Lines not printed: dropped because the output was not read fast enough, or lost because it closed."""
        return self._queue.dropped + self._lost

    def put(self, line: Line) -> None:
        """Queue one line (without its newline), or a function that makes it; returns at once."""
        self._queue.put(line)

    def close(self, timeout: float = 2.0) -> bool:
        """Print what is queued (waiting at most ``timeout`` s) and stop; False when the output stayed blocked."""
        self._queue.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the output is not being read: %d line(s) still queued, %d not printed; giving up on them",
                        len(self._queue), self.dropped)
            return False
        return True

    # -- the printer's thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get(timeout=0.5)
            if first is None:
                if self._queue.closed:
                    break
                continue
            batch = [first]
            while len(batch) < _BATCH and (line := self._queue.get(timeout=0)) is not None:
                batch.append(line)
            self._write(self._notice() + "".join(_text(line) + "\n" for line in batch), len(batch))
        notice = self._notice()  # drops after the last line written
        if notice:
            self._write(notice, 0)

    def _notice(self) -> str:
        dropped = self._queue.dropped
        if dropped <= self._reported:
            return ""
        text = f"rt-physio: {dropped - self._reported} line(s) not printed: the output was not read fast enough\n"
        self._reported = dropped
        return text

    def _write(self, text: str, lines: int) -> None:
        if self._broken is not None:
            self._lost += lines
            return
        try:
            if self._fd is None:
                self._out.write(text)
                self._out.flush()
            else:
                data = memoryview(text.encode(self._encoding, errors="replace"))
                while data:
                    data = data[os.write(self._fd, data):]
        except (OSError, ValueError) as exc:  # a closed pipe (the reader went away) or a closed stream
            self._broken = exc if isinstance(exc, OSError) else OSError(str(exc))
            self._lost += lines
            log.warning("cannot print to the output any more (%s); predictions are still published", exc)
            return
        self.written += lines


def _text(line: Line) -> str:
    if isinstance(line, str):
        return line
    try:
        return line()
    except Exception:  # a formatting bug must not end the printer
        log.exception("printer: could not format a line")
        return "rt-physio: (a line could not be formatted; see the log)"


def _file_descriptor(out: TextIO) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
