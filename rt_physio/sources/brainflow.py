"""BrainFlow boards as sources: one :class:`BrainFlowSource` per modality, views on one shared board session.

:func:`open_brainflow` resolves a board by name or id, checks the rows a modality reads (from the board's
descriptor or a device profile) and joins the :class:`~rt_physio.sources.brainflow_session.BoardSession` of that
board (prepared once for both modalities; released when the last source stops). The session's thread drains the
board, maps BrainFlow's wall-clock stamps onto the engine clock, and prepares the board again when it fails or
goes silent (see :mod:`rt_physio.sources.brainflow_session`); each source gets its own rows, in µV.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.base import Chunk, ChunkSink, Modality, SourceStats, StreamInfo, deliver
from rt_physio.sources.brainflow_boards import board_descr, board_from_name, board_name, input_params
from rt_physio.sources.brainflow_session import _REGISTRY as _REGISTRY  # the open sessions (tests check them)
from rt_physio.sources.brainflow_session import BoardSession, acquire_session
from rt_physio.sources.profiles import ModalityProfile

__all__ = ["BoardSession", "BrainFlowSource", "acquire_session", "open_brainflow"]

log = logging.getLogger(__name__)


class BrainFlowSource:
    """The rows of one modality of a shared :class:`BoardSession`, as a :class:`~rt_physio.sources.Source`.

    Parameters
    ----------
    session : BoardSession
        The board (one reference of it is owned by this source and dropped by :meth:`stop`).
    info : StreamInfo
        What this source delivers.
    rows : tuple of int
        Rows of the board's data array, in channel order.
    scale : float
        Factor from the board's values to microvolts.
    """

    def __init__(self, session: BoardSession, info: StreamInfo, rows: tuple[int, ...], scale: float) -> None:
        self._session = session
        self._info = info
        self._rows = np.asarray(rows, dtype=np.intp)
        self._scale = np.float32(scale)
        self._stats = SourceStats(extra={"lost_samples": 0, "reconnects": 0, "clock_steps": 0})
        self._sink: ChunkSink | None = None
        self._stopped = False

    @property
    def info(self) -> StreamInfo:
        """Static description of the stream."""
        return self._info

    @property
    def stats(self) -> SourceStats:
        """Live counters; ``extra["lost_samples"]`` counts gaps in the board's package counter."""
        return self._stats

    @property
    def session(self) -> BoardSession:
        """The shared board session."""
        return self._session

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the board's acquisition thread, if any."""
        return self._session.failure

    @property
    def last_error(self) -> str | None:
        """Why the board is being prepared again (None while it streams)."""
        return self._session.last_error

    @property
    def running(self) -> bool:
        """True while this source is started and the board's thread is alive."""
        return self._sink is not None and not self._stopped and self._session.running

    def start(self, sink: ChunkSink) -> None:
        """Start delivering this modality's chunks to ``sink`` (on the board's acquisition thread)."""
        if self._sink is not None or self._stopped:
            raise RuntimeError(f"source {self._info.name!r} already started or stopped; open a new one")
        self._sink = sink
        self._session.attach(self)

    def stop(self) -> None:
        """Stop delivering; the board is released when no other source uses it. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._session.release(self)

    def _deliver(self, data: NDArray[np.float64], timestamps: NDArray[np.float64], received: float,
                 lost: int) -> None:
        sink = self._sink
        if sink is None:
            return
        values = data[self._rows].T.astype(np.float32, order="C")  # (samples, channels)
        if self._scale != 1:
            values *= self._scale
        if lost:
            self._stats.extra["lost_samples"] += lost
        deliver(sink, Chunk(values, timestamps, received), self._stats, self._info.name)


def open_brainflow(board: str | int, params: dict[str, str | int], modality: Modality,
                   profile: ModalityProfile | None = None, *, name: str | None = None) -> BrainFlowSource:
    """Open (or join) a BrainFlow board session and return the source of one modality.

    Parameters
    ----------
    board : str or int
        Board name or id (``"synthetic"``, ``"cyton"``, ``38``).
    params : dict
        BrainFlowInputParams fields (``serial_port``, ``mac_address``, …); string values are converted.
    modality : {"eeg", "ecg"}
        Which rows to deliver.
    profile : ModalityProfile, optional
        Rows, channel names, expected rate and scale from a device profile; default: the board descriptor's
        rows for the modality, EEG names from ``eeg_names``, values in µV.
    name : str, optional
        Stream name shown in logs and messages (default ``brainflow:<board>``).

    Returns
    -------
    BrainFlowSource
        The source (not started). Stop it to release its reference to the board.

    Raises
    ------
    ConfigError
        Unknown board or parameter, or rows the board does not have.
    SourceError
        The board failed to prepare, or its rate contradicts the profile.
    """
    board_id = board_from_name(board)
    label = f"brainflow:{board_name(board_id)}"
    inputs = input_params(params, where=label)
    descr = board_descr(board_id, inputs)
    profile = profile or ModalityProfile(modality)
    rows = profile.rows or descr.rows[modality]
    if not rows:
        raise ConfigError(f"{label}: the board has no {modality.upper()} rows in BrainFlow's descriptor; use a device "
                          f"profile with [{modality}].rows = [...] to choose them.")
    bad = [r for r in rows if r >= descr.num_rows]
    if bad:
        raise ConfigError(f"{label}: rows {bad} do not exist; the board's data has rows 0..{descr.num_rows - 1}.")
    if profile.sfreq is not None and abs(profile.sfreq - descr.sfreq) > 1e-3 * descr.sfreq:
        raise SourceError(f"{label} samples at {descr.sfreq:g} Hz but the profile expects {profile.sfreq:g} Hz; "
                          "fix the profile's sfreq.")
    if profile.channels is not None:
        channels = profile.channels
    else:
        eeg_names = dict(zip(descr.rows["eeg"], descr.eeg_names, strict=False)) if modality == "eeg" else {}
        channels = tuple(eeg_names.get(r, f"{modality.upper()}{i + 1}") for i, r in enumerate(rows))
    info = StreamInfo(name=name or label, modality=modality, sfreq=descr.sfreq, channel_names=channels,
                      source_id=f"{label}?{urlencode(sorted(params.items()))}" if params else label)
    session = acquire_session(board_id, inputs)
    return BrainFlowSource(session, info, tuple(rows), profile.scale if profile.scale is not None else 1.0)
