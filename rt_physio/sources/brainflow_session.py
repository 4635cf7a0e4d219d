"""One prepared BrainFlow board and the thread that drains it, shared by the sources of its modalities.

One board often serves both modalities (the synthetic board's EEG and ECG rows come from one ``BoardShim``,
and BrainFlow refuses a second session on the same board). So a :class:`BoardSession` owns the board and one
acquisition thread, and each :class:`~rt_physio.sources.brainflow.BrainFlowSource` is a view on it that receives
its own rows. Sessions live in a module registry keyed by (board id, input parameters) and are
reference-counted: the board is released when the last source using it stops, on every exit path (errors,
never-started sources, exit).

BrainFlow's timestamps are wall clock (``time.time``); they are mapped onto the engine clock with a
:class:`~rt_physio.clock.WallClockMap` measured at prepare and refreshed every ``clock_refresh`` seconds: small
changes are slewed (the sample grid never tears), a step of the wall clock (NTP, a suspended laptop) is followed
at once, and stamps that contradict their arrival time make the map re-measure immediately, so a step shows
neither as +Δ before the refresh nor as −Δ after it.

A board that fails (read errors for ``error_grace`` seconds, ``BoardShim.release_all_sessions()``, a dongle
pulled out) or goes silent for ``silence_after`` seconds is released and prepared again, with backoff (0.5 s
doubling to 5 s), until it streams again or the session is closed; the engine decides when to give up
(``--give-up-after``). Each success counts in the sources' ``stats.extra["reconnects"]``; while it fails,
:attr:`BoardSession.last_error` says why.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from rt_physio.clock import WallClockMap, local_clock
from rt_physio.errors import SourceError
from rt_physio.sources.brainflow_boards import (
    BoardDescription,
    BoardIds,
    BoardLog,
    BoardShim,
    BrainFlowError,
    BrainFlowInputParams,
    PackageCounter,
    board_descr,
    board_name,
    brainflow_error_name,
)

if TYPE_CHECKING:
    from rt_physio.sources.brainflow import BrainFlowSource

__all__ = ["BoardSession", "acquire_session"]

log = logging.getLogger("rt_physio.sources.brainflow")

_ADDRESS_FIELDS = ("serial_port", "mac_address", "ip_address", "serial_number", "file")


class BoardSession:
    """One prepared BrainFlow board and the thread that drains it.

    Created (and the board prepared) on the caller's thread by :func:`acquire_session`; streaming and the
    acquisition thread start when the first source attaches a sink. Use :func:`acquire_session` rather than
    the constructor so that every modality of a board shares one session.

    Parameters
    ----------
    board_id : int
        BrainFlow board id.
    params : BrainFlowInputParams
        Connection parameters.
    """

    #: Sleep between empty polls (the synthetic board produces a sample every 4 ms).
    poll_interval: float = 0.001
    #: Seconds between re-measurements of the wall-clock offset.
    clock_refresh: float = 10.0
    #: Seconds of consecutive read errors after which the board is released and prepared again.
    error_grace: float = 0.5
    #: Seconds without any data after which the board is released and prepared again.
    silence_after: float = 3.0
    #: First and longest delay between attempts to prepare the board again, seconds.
    backoff: tuple[float, float] = (0.5, 5.0)
    #: Stamps this far ahead of (or behind) their arrival, seconds, mean the wall clock stepped: re-measure now.
    implausible_after: tuple[float, float] = (0.25, 2.0)
    #: Seconds of data BrainFlow's ring buffer holds (we drain it every millisecond).
    buffer_seconds: float = 120.0

    def __init__(self, board_id: int, params: BrainFlowInputParams) -> None:
        self.board_id = board_id
        self.key = (board_id, params.to_json())
        self.descr: BoardDescription = board_descr(board_id, params)
        address = next((f"{getattr(params, f)}" for f in _ADDRESS_FIELDS if getattr(params, f)), "")
        self.label = board_name(board_id) + (f" on {address}" if address else "")
        self.failure: BaseException | None = None
        self.last_error: str | None = None  # why the board is being prepared again (None while it streams)
        self.reconnects = 0
        self._params = params
        self._last_step_check = -float("inf")
        self._subscribers: tuple[BrainFlowSource, ...] = ()
        self._refs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._packages = PackageCounter()
        BoardLog.install()
        mark = BoardLog.mark()
        self._board: BoardShim | None = None
        try:
            self._board = BoardShim(board_id, params)
            self._board.prepare_session()
            if board_id == BoardIds.PLAYBACK_FILE_BOARD.value:
                # A replayed recording is live input for the engine: stamp samples when they are played.
                self._board.config_board("new_timestamps")
        except BrainFlowError as exc:
            self._board = None  # let BoardShim.__del__ run now, not at interpreter exit
            code = brainflow_error_name(exc)
            if code == "ANOTHER_BOARD_IS_CREATED_ERROR":
                hint = " Something else in this process already holds this board with the same parameters."
            else:
                hint = (" Check that it is switched on, connected and not used by another program, and its "
                        "parameters (serial_port=…, mac_address=…).")
            raise SourceError(f"board {self.label} failed to prepare: {code}.{BoardLog.explain(mark)}{hint}") from exc
        self.clock = WallClockMap()

    @property
    def running(self) -> bool:
        """True while the acquisition thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def usable(self) -> bool:
        """True until the session is closed or its acquisition thread ended (another source may then join it)."""
        return not self._closed and (self._thread is None or self._thread.is_alive())

    def attach(self, source: BrainFlowSource) -> None:
        """Start delivering to ``source``; the first attach starts streaming and the acquisition thread."""
        with self._lock:
            if self._closed or self._board is None or not self.usable:
                reason = f" ({self.failure})" if self.failure is not None else ""
                raise SourceError(f"board {self.label} is already released{reason}; open the source again.")
            self._subscribers = (*self._subscribers, source)
            if self._thread is not None:
                return
            mark = BoardLog.mark()
            try:
                self._board.start_stream(max(1024, int(self.descr.sfreq * self.buffer_seconds)))
            except BrainFlowError as exc:
                self._subscribers = tuple(s for s in self._subscribers if s is not source)
                raise SourceError(f"board {self.label} failed to start streaming: {brainflow_error_name(exc)}."
                                  f"{BoardLog.explain(mark)}") from exc
            self.clock.refresh()
            self._thread = threading.Thread(target=self._run, name=f"src-brainflow-{self.label}", daemon=True)
            self._thread.start()

    def release(self, source: BrainFlowSource) -> None:
        """Drop ``source``; the last release stops the thread and releases the board."""
        with _REGISTRY_LOCK:  # so that a concurrent acquire_session either keeps this session or waits for it
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not source)
                self._refs -= 1
                last = self._refs <= 0
            if last:
                self.close()

    def close(self) -> None:
        """Stop acquisition and release the board now (idempotent; waits up to 2 s for the thread)."""
        with _REGISTRY_LOCK:
            if _REGISTRY.get(self.key) is self:
                del _REGISTRY[self.key]
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is None:
            self._release_board()
        elif thread is not threading.current_thread():
            thread.join(timeout=2.0)
            if thread.is_alive():
                log.warning("board %s: acquisition thread did not stop within 2 s", self.label)

    # -- acquisition thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        failing_since: float | None = None
        last_data = local_clock()
        next_housekeeping = last_data + self.clock_refresh
        try:
            while not self._stop.is_set():
                now = local_clock()
                if now >= next_housekeeping:
                    next_housekeeping = now + self.clock_refresh
                    self._housekeeping()
                data, why = self._read(now, last_data)
                if data is not None:
                    failing_since = None
                    last_data = local_clock()
                    self._dispatch(data, last_data)
                    continue
                if why is None:  # nothing yet
                    time.sleep(self.poll_interval)  # lighter than Event.wait; stop is checked each loop
                    continue
                if why.startswith("read failed"):
                    for s in self._subscribers:
                        s.stats.errors += 1
                    failing_since = now if failing_since is None else failing_since
                    if now - failing_since < self.error_grace and "BOARD_NOT_CREATED" not in why:
                        self._stop.wait(0.05)  # a hiccup: read again before releasing anything
                        continue
                # Outside any except block and with no reference to the old BoardShim left: BoardShim.__del__
                # releases whatever board is prepared under the same (board id, parameters), so an old shim kept
                # alive (by a local, or an exception's traceback) and collected later would release the new board.
                self._reprepare(why)
                failing_since = None
                last_data = local_clock()
        except Exception as exc:
            self.failure = exc
            log.exception("board %s: acquisition stopped", self.label)
        finally:
            self._release_board()

    def _read(self, now: float, last_data: float) -> tuple[NDArray[np.float64] | None, str | None]:
        """Drain the board: (data, None), (None, None) when nothing is there yet, (None, why) when it failed."""
        board = self._board
        if board is None:  # an earlier attempt to prepare it again was cut short
            return None, "the board is not prepared"
        try:
            n = board.get_board_data_count()
            if n == 0:
                return None, (f"no data for {now - last_data:.1f} s" if now - last_data > self.silence_after else None)
            return board.get_board_data(n), None
        except BrainFlowError as exc:
            return None, f"read failed: {brainflow_error_name(exc)}"

    def _reprepare(self, why: str) -> None:
        """Release the board and prepare it again, with backoff, until it streams or the session stops."""
        self.last_error = why
        log.warning("board %s: %s; releasing it and preparing it again", self.label, why)
        self._release_board()
        delay, attempt = self.backoff[0], 0
        while not self._stop.wait(delay):
            attempt += 1
            mark = BoardLog.mark()
            board = None
            try:
                board = BoardShim(self.board_id, self._params)
                board.prepare_session()
                if self.board_id == BoardIds.PLAYBACK_FILE_BOARD.value:
                    board.config_board("new_timestamps")
                board.start_stream(max(1024, int(self.descr.sfreq * self.buffer_seconds)))
            except BrainFlowError as exc:
                self.last_error = f"{why}; preparing it again failed ({attempt}×): {brainflow_error_name(exc)}"
                log.debug("board %s: %s.%s", self.label, self.last_error, BoardLog.explain(mark))
                if board is not None and board.is_prepared():
                    with contextlib.suppress(BrainFlowError):
                        board.release_session()
                board = None  # collected now, while no other board of its kind is prepared (see _run)
                delay = min(2 * delay, self.backoff[1])
                continue
            self._board = board
            self.clock.step()  # a new stream: map it from a fresh measurement
            self.reconnects += 1
            self.last_error = None
            for s in self._subscribers:
                s.stats.extra["reconnects"] = self.reconnects
            log.warning("board %s: prepared again and streaming (attempt %d)", self.label, attempt)
            return

    def _housekeeping(self) -> None:
        change = self.clock.refresh()
        if abs(change) > self.clock.step_after:
            log.warning("board %s: the wall clock stepped by %+.3f s; timestamps follow it", self.label, change)
        self._count_clock_steps()
        BoardLog.forward()

    def _count_clock_steps(self) -> None:
        for s in self._subscribers:
            s.stats.extra["clock_steps"] = self.clock.steps

    def _dispatch(self, data: NDArray[np.float64], received: float) -> None:
        clock = self.clock
        clock.advance(received)
        stamps = data[self.descr.timestamp_row]
        timestamps = stamps - clock.offset
        ahead = float(timestamps[-1]) - received
        ahead_max, behind_max = self.implausible_after
        if (ahead > ahead_max or -ahead > behind_max) and received - self._last_step_check > 1.0:
            # the wall clock stepped since the last measurement: re-measure now, not at the next refresh
            self._last_step_check = received
            change = clock.step()
            if abs(change) > clock.step_after:
                log.warning("board %s: the wall clock stepped by %+.3f s; re-mapped at once", self.label, change)
                self._count_clock_steps()
            timestamps = stamps - clock.offset
        row = self.descr.package_row
        lost = self._packages.update(data[row]) if row is not None else 0
        subscribers = self._subscribers
        for i, source in enumerate(subscribers):
            source._deliver(data, timestamps if i == len(subscribers) - 1 else timestamps.copy(), received, lost)

    def _release_board(self) -> None:
        board, self._board = self._board, None  # dropped here: BoardShim.__del__ must not run at interpreter exit
        try:
            if board is not None and board.is_prepared():
                if self._thread is not None:
                    try:
                        board.stop_stream()
                    except BrainFlowError as exc:
                        log.debug("board %s: stop_stream: %s", self.label, exc)
                board.release_session()
                log.debug("board %s released", self.label)
        except BrainFlowError as exc:
            log.warning("board %s: release failed: %s", self.label, brainflow_error_name(exc))
        BoardLog.forward()


_REGISTRY: dict[tuple[int, str], BoardSession] = {}
_REGISTRY_LOCK = threading.RLock()


def acquire_session(board_id: int, params: BrainFlowInputParams) -> BoardSession:
    """Return the open session for (board, params), preparing the board if there is none; adds a reference."""
    key = (board_id, params.to_json())
    with _REGISTRY_LOCK:
        session = _REGISTRY.get(key)
        if session is None or not session.usable:  # none yet, or its thread died and released the board
            session = BoardSession(board_id, params)
            _REGISTRY[key] = session
        with session._lock:
            session._refs += 1
        return session


@atexit.register
def _release_all() -> None:
    for session in list(_REGISTRY.values()):
        session.close()
