"""Replay of a recording into real LSL outlets, on a drift-free schedule, and the ``replay:`` source SPEC.

A :class:`Player` makes one outlet per modality of a :class:`~rt_physio.io.Recording` (EEG and
ECG of one file go to two outlets, with channel labels, types and µV units in their XML description) and
pushes them from one thread on one clock: sample ``k`` of a stream is due at ``t0 + (offset + k / fs) / speed``
and carries exactly that time as its LSL timestamp (``pylsl.local_clock``). Every due time is computed from
``t0``, never by accumulating sleeps, so a replay of any length ends when it should; a late wake-up delays a
push, not the schedule. ``loop`` goes on with sample ``n`` after sample ``n - 1`` (timestamps keep counting).

``rt-physio run --eeg replay:FILE --ecg replay:FILE`` opens both modalities on one shared player (one replay
clock for both) through :func:`open_replay`: the player's outlets live in the engine's process, each modality
is read back through a real LSL inlet (:class:`ReplaySource`), and the player starts once every source opened
on it has subscribed, so no sample is pushed before anyone listens.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl

from rt_physio.checks import check_int, check_positive, parse_int, parse_number
from rt_physio.clock import local_clock
from rt_physio.errors import ConfigError
from rt_physio.io import Recording, Signal, read_recording
from rt_physio.sources.base import ChunkSink, Modality, SourceStats, StreamInfo
from rt_physio.sources.lsl import LslSource
from rt_physio.sources.lsl_streams import quiet_liblsl

__all__ = ["REPLAY_OPTIONS", "Player", "ReplaySource", "open_replay", "replay_options"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Track:
    """The push state of one outlet."""

    signal: Signal  # invalid samples held (see _hold_invalid)
    outlet: pylsl.StreamOutlet
    name: str
    source_id: str
    chunk: int
    next_index: int = 0  # absolute sample index (keeps counting across loops)
    done: bool = False


class Player:
    """Push a recording into LSL outlets in real time (or ``speed`` times faster).

    Parameters
    ----------
    recording : Recording
        What to replay.
    name : str, optional
        Stream name stem (default: the file name without suffix); outlets are ``<name>-EEG`` and ``<name>-ECG``.
    speed : float
        Playback speed (1 = real time). Timestamps follow the playback: at 2× they step by half a period, and
        the outlets declare twice the recorded rate (their description keeps ``recorded_srate``).
    loop : bool
        Start over at the end, forever (until :meth:`stop`).
    chunk : int, optional
        Samples per push (default: about 20 ms of samples, at least 1).
    source_id : str, optional
        Stem of the outlets' source_id (default ``rt_physio-replay:<name>``); ``-eeg`` / ``-ecg`` is appended.
        A consumer's inlet recovers onto a new replay with the same source_id.

    Notes
    -----
    The outlets exist from construction on (consumers may resolve and subscribe); pushing starts with
    :meth:`start`. Samples pushed before a consumer subscribes are not delivered to it, as with any LSL outlet.
    """

    #: Seconds between :meth:`start` and the first sample's due time.
    lead: float = 0.02

    def __init__(self, recording: Recording, *, name: str | None = None, speed: float = 1.0, loop: bool = False,
                 chunk: int | None = None, source_id: str | None = None) -> None:
        check_positive("speed", speed, error=ConfigError)
        if chunk is not None:
            check_int("chunk", chunk, error=ConfigError)
        quiet_liblsl()
        self.recording = recording
        self.name = name or recording.path.stem
        self.speed = float(speed)
        self.loop = bool(loop)
        stem = source_id or f"rt_physio-replay:{self.name}"
        self.tracks: dict[Modality, _Track] = {}
        for signal in recording.signals.values():
            modality, stream = signal.modality, _hold_invalid(signal, recording.path.name)
            outlet_name = f"{self.name}-{modality.upper()}"
            sid = f"{stem}-{modality}"
            n_chunk = chunk if chunk is not None else max(1, round(0.02 * stream.sfreq))
            outlet = pylsl.StreamOutlet(self._info(outlet_name, sid, stream), chunk_size=n_chunk, max_buffered=360)
            self.tracks[modality] = _Track(stream, outlet, outlet_name, sid, n_chunk)
        self.t0 = math.nan
        self.finished_at = math.nan
        self.max_late = 0.0
        self.loops = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _info(self, outlet_name: str, source_id: str, stream: Signal) -> pylsl.StreamInfo:
        kind = stream.modality.upper()
        # At speed X the samples go out X times faster, with timestamps to match: that is the stream's true rate
        # (a consumer checking stamps against the nominal rate, or dejittering, must see the same clock)
        rate = stream.sfreq * self.speed
        info = pylsl.StreamInfo(outlet_name, kind, stream.n_channels, rate, pylsl.cf_float32, source_id)
        channels = info.desc().append_child("channels")
        for label in stream.channel_names:
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", kind)
        acquisition = info.desc().append_child("acquisition")
        acquisition.append_child_value("manufacturer", "rt_physio replay")
        acquisition.append_child_value("file", str(self.recording.path))
        acquisition.append_child_value("speed", f"{self.speed:g}")
        acquisition.append_child_value("recorded_srate", f"{stream.sfreq:g}")
        return info

    # -- control -----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the push thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once every sample was pushed (never, with ``loop``) or the player was stopped."""
        return self._done.is_set()

    def start(self, at: float | None = None) -> float:
        """Start pushing; sample 0 is due at ``at`` (engine clock; default: now + :attr:`lead`). Returns t0."""
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError("this player was already started; make a new one to replay again")
        self.t0 = local_clock() + self.lead if at is None else float(at)
        self._thread = threading.Thread(target=self._run, name=f"replay-{self.name}", daemon=True)
        self._thread.start()
        return self.t0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the replay finished (or ``timeout`` seconds); return whether it finished."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop pushing and destroy the outlets (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._done.set()
        for track in self.tracks.values():
            track.outlet = None  # liblsl destroys the outlet with its last reference

    def due(self, modality: Modality, index: int) -> float:
        """Engine-clock time at which sample ``index`` of ``modality`` is (or was) due."""
        stream = self.tracks[modality].signal
        return self.t0 + (stream.offset + index / stream.sfreq) / self.speed

    # -- push thread -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._push_all()
        except Exception as exc:  # an outlet error is the end of this replay; say so, do not hang consumers
            self.failure = exc
            log.exception("replay of %s stopped", self.recording.path.name)
        finally:
            self.finished_at = local_clock()
            self._done.set()

    def _push_all(self) -> None:
        tracks = list(self.tracks.items())
        while not self._stop.is_set():
            pending = [(m, t) for m, t in tracks if not t.done]
            if not pending:
                return
            # the chunk whose last sample is due first goes next
            modality, track = min(pending, key=lambda mt: self.due(mt[0], self._chunk_end(mt[1]) - 1))
            end = self._chunk_end(track)
            due = self.due(modality, end - 1)
            delay = due - local_clock()
            if delay > 0 and self._stop.wait(delay):
                return
            self.max_late = max(self.max_late, local_clock() - due)
            self._push(modality, track, end)

    def _chunk_end(self, track: _Track) -> int:
        end = track.next_index + track.chunk
        return end if self.loop else min(end, track.signal.n_samples)

    def _push(self, modality: Modality, track: _Track, end: int) -> None:
        start = track.next_index
        n = track.signal.n_samples
        index = np.arange(start, end)
        if end <= n:
            data = track.signal.data[start:end]
        else:
            data = track.signal.data[index % n]
            if start // n != (end - 1) // n:
                self.loops = max(self.loops, (end - 1) // n)
                log.info("replay of %s: %s starts over (loop %d)", self.recording.path.name, modality.upper(),
                         (end - 1) // n)
        stamps = self.t0 + (track.signal.offset + index / track.signal.sfreq) / self.speed
        assert track.outlet is not None
        track.outlet.push_chunk(np.ascontiguousarray(data), stamps.tolist())
        track.next_index = end
        if not self.loop and end >= n:
            track.done = True


# -- the replay: SPEC ------------------------------------------------------------------------------------------
#: Options a ``replay:FILE?k=v&…`` SPEC accepts.
REPLAY_OPTIONS = ("loop", "chunk", "rate", "subject", "clip", "part", "unit", "eeg_channels", "ecg_channels",
                  "duration", "name", "session")


def _hold_invalid(signal: Signal, where: str) -> Signal:
    """Replace NaN / inf samples by the previous valid value of their channel (the first valid one at the start).

    WFDB's "missing" samples and CSV gaps would reach the outlet as NaN; the engine copes, but other consumers of
    the replayed stream may not.
    """
    valid = np.isfinite(signal.data)
    if valid.all():
        return signal
    data = signal.data.copy()
    for j in range(data.shape[1]):
        invalid = int(np.count_nonzero(~valid[:, j]))
        if not invalid:
            continue
        log.warning("%s: channel %s has %d invalid samples; replayed as the previous valid value", where,
                    signal.channel_names[j], invalid)
        column, ok = data[:, j], valid[:, j]
        if not ok.any():
            column[:] = 0.0
            continue
        idx = np.where(ok, np.arange(len(column)), 0)
        np.maximum.accumulate(idx, out=idx)
        held = column[idx]
        held[: int(np.argmax(ok))] = column[int(np.argmax(ok))]
        data[:, j] = held
    return dataclasses.replace(signal, data=data)


def _flag(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"The replay option {key!r} must be true or false, got {text!r}.")


def _number(key: str, text: str, kind: type[int] | type[float]) -> float:
    try:
        return parse_int(text) if kind is int else parse_number(text)
    except ValueError as exc:
        raise ConfigError(f"The replay option {key!r}: {exc}.") from None


def replay_options(params: Mapping[str, str]) -> tuple[dict[str, object], dict[str, object]]:
    """Split ``replay:`` SPEC parameters into (read_recording keywords, Player keywords), validated."""
    if "speed" in params:
        raise ConfigError("The engine replays in real time: 'speed' is for `rt-physio replay FILE --speed X` "
                          "(read it with lsl:<name>).")
    unknown = sorted(set(params) - set(REPLAY_OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown replay options {unknown}; valid ones: {', '.join(REPLAY_OPTIONS)}.")
    read: dict[str, object] = {}
    play: dict[str, object] = {}
    for key, text in params.items():
        if key == "loop":
            play["loop"] = _flag(key, text)
        elif key == "chunk":
            play["chunk"] = int(_number(key, text, int))
        elif key == "name":
            play["name"] = text
        elif key in ("rate", "duration"):
            read[key] = _number(key, text, float)
        elif key in ("subject", "clip"):
            read[key] = int(_number(key, text, int))
        elif key in ("eeg_channels", "ecg_channels"):
            read[key] = tuple(c.strip() for c in text.split(",") if c.strip())
        else:
            read[key] = text
    return read, play


class _SharedPlayer:
    """A player used by several sources of one engine: starts when all of them have subscribed."""

    def __init__(self, key: tuple[str, str], player: Player) -> None:
        self.key = key
        self.player = player
        self.refs = 0
        self.subscribed = 0

    def subscribed_one(self) -> None:
        with _PLAYERS_LOCK:
            self.subscribed += 1
            if self.subscribed >= self.refs and not self.player.running and not self.player.finished:
                self.player.start()
                log.info("replay of %s started (%s)", self.player.recording.describe(),
                         ", ".join(t.name for t in self.player.tracks.values()))

    def release(self) -> None:
        with _PLAYERS_LOCK:
            self.refs -= 1
            if self.refs > 0:
                return
            if _PLAYERS.get(self.key) is self:
                del _PLAYERS[self.key]
        self.player.stop()


_PLAYERS: dict[tuple[str, str], _SharedPlayer] = {}
_PLAYERS_LOCK = threading.RLock()


class ReplaySource:
    """One modality of an in-process replay, read back through a real LSL inlet.

    Parameters
    ----------
    shared : _SharedPlayer
        The player (one reference of it is owned by this source and dropped by :meth:`stop`).
    inlet_source : LslSource
        The inlet on this modality's outlet.
    """

    def __init__(self, shared: _SharedPlayer, inlet_source: LslSource) -> None:
        self._shared = shared
        self._lsl = inlet_source
        self._stopped = False

    @property
    def info(self) -> StreamInfo:
        """What the source delivers."""
        return self._lsl.info

    @property
    def stats(self) -> SourceStats:
        """The inlet's counters."""
        return self._lsl.stats

    @property
    def player(self) -> Player:
        """The shared player."""
        return self._shared.player

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the inlet or the player, if any."""
        return self._lsl.failure or self._shared.player.failure

    @property
    def running(self) -> bool:
        """True while the inlet's thread runs."""
        return self._lsl.running

    def start(self, sink: ChunkSink) -> None:
        """Subscribe to the outlet; the replay starts once every source of the player has subscribed."""
        self._lsl.start(sink)
        self._shared.subscribed_one()

    def stop(self) -> None:
        """Stop reading; the replay stops when no other source uses it. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._lsl.stop()
        self._shared.release()


def open_replay(target: str, params: Mapping[str, str], modality: Modality, *,
                resolve_timeout: float = 5.0) -> ReplaySource:
    """Open (or join) the in-process replay of a file and return the source of one modality.

    Parameters
    ----------
    target : str
        The file.
    params : mapping
        ``replay:`` options (:data:`REPLAY_OPTIONS`).
    modality : {"eeg", "ecg"}
        Which of the file's streams to read.
    resolve_timeout : float
        Seconds to wait for the outlet to become visible to the inlet.

    Returns
    -------
    ReplaySource
        Not started; stop it to release its reference to the player.
    """
    read_kw, play_kw = replay_options(params)
    path = Path(target).expanduser()
    key = (str(path.resolve()), repr(sorted(params.items())))
    with _PLAYERS_LOCK:
        shared = _PLAYERS.get(key)
        if shared is None or shared.player.finished:
            recording = read_recording(path, **read_kw)  # type: ignore[arg-type]
            token = uuid.uuid4().hex[:8]  # two engines replaying one file must not read each other's outlets
            player = Player(recording, source_id=f"rt_physio-replay:{token}:{path.stem}",
                            **play_kw)  # type: ignore[arg-type]
            shared = _SharedPlayer(key, player)
            _PLAYERS[key] = shared
        track = shared.player.tracks.get(modality)
        if track is None:
            has = ", ".join(m.upper() for m in shared.player.tracks)
            if shared.refs == 0:
                del _PLAYERS[key]
                shared.player.stop()
            raise ConfigError(f"{path.name} has no {modality.upper()} channels (it has {has}); give "
                              f"{modality}_channels=… to name them, or choose another {modality.upper()} source.")
        shared.refs += 1
    try:
        inlet = LslSource.open({"source_id": track.source_id}, modality, timeout=resolve_timeout)
    except BaseException:
        shared.release()
        raise
    return ReplaySource(shared, inlet)
