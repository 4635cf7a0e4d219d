"""BrainFlow boards by name, their input parameters, descriptors and BrainFlow's own logger.

Everything here is static (no board is opened): it turns what a user typed (``cyton``, ``38``,
``serial_port=/dev/ttyUSB0``) into BrainFlow objects, with errors that list the valid choices.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_physio.errors import ConfigError

with warnings.catch_warnings():
    # brainflow 5.23 falls back to pkg_resources (deprecated, warns) when it loads its library on first use:
    # load it now, inside this guard, so the warning never reaches the CLI's stderr.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams, IpProtocolTypes, LogLevels
    from brainflow.exit_codes import BrainFlowError, BrainFlowExitCodes

    BRAINFLOW_VERSION = str(BoardShim.get_version())

__all__ = [
    "BRAINFLOW_VERSION",
    "INPUT_PARAM_FIELDS",
    "BoardDescription",
    "BoardIds",
    "BoardLog",
    "BoardShim",
    "BrainFlowError",
    "BrainFlowInputParams",
    "PackageCounter",
    "board_descr",
    "board_from_name",
    "board_name",
    "brainflow_error_name",
    "input_params",
    "known_boards",
]

log = logging.getLogger("rt_physio.sources.brainflow")

# Boards that only exist as a layout of another board (master_board) or not at all.
_VIRTUAL_BOARDS = {BoardIds.PLAYBACK_FILE_BOARD, BoardIds.STREAMING_BOARD}
_INT_FIELDS = {"ip_port", "ip_port_aux", "ip_port_anc", "ip_protocol", "timeout", "master_board"}
#: BrainFlowInputParams fields accepted as query or profile parameters.
INPUT_PARAM_FIELDS: tuple[str, ...] = tuple(sorted(BrainFlowInputParams().__dict__))


def board_name(board_id: int) -> str:
    """Return the short user-facing name of a board id (``CYTON_DAISY_BOARD`` → ``cyton_daisy``)."""
    name = str(BoardIds(board_id).name)
    return name[: -len("_BOARD")].lower() if name.endswith("_BOARD") else name.lower()


def known_boards() -> dict[str, int]:
    """Return ``{short name: board id}`` of every board BrainFlow knows, sorted by id."""
    return {board_name(b.value): b.value for b in sorted(BoardIds, key=lambda b: b.value) if b != BoardIds.NO_BOARD}


def board_from_name(board: str | int, *, where: str = "brainflow") -> int:
    """Resolve a board name (any case, ``_BOARD`` optional, ``-`` for ``_``) or numeric id to a board id.

    Parameters
    ----------
    board : str or int
        ``"synthetic"``, ``"SYNTHETIC_BOARD"``, ``"cyton-daisy"``, ``38`` or ``"38"``.
    where : str
        Context named in the error message.

    Returns
    -------
    int
        The BrainFlow board id.

    Raises
    ------
    ConfigError
        For an unknown board, listing the valid names.
    """
    boards = known_boards()
    text = str(board).strip()
    try:
        number = int(text)
    except ValueError:
        key = text.lower().replace("-", "_")
        key = key[: -len("_board")] if key.endswith("_board") else key
        if key in boards:
            return boards[key]
    else:
        if number in boards.values():
            return number
    listing = ", ".join(f"{n} ({i})" for n, i in boards.items())
    raise ConfigError(f"{where}: unknown BrainFlow board {board!r}. Valid boards (name or id): {listing}.")


def input_params(params: dict[str, str | int], *, where: str = "brainflow") -> BrainFlowInputParams:
    """Build BrainFlowInputParams from ``{field: value}`` (values may be strings, as in a URL query).

    ``ip_protocol`` accepts ``tcp``/``udp``/``none`` and ``master_board`` accepts a board name.

    Raises
    ------
    ConfigError
        For an unknown field (listing the valid ones) or a value of the wrong type.
    """
    out = BrainFlowInputParams()
    for key, value in params.items():
        if key not in INPUT_PARAM_FIELDS:
            raise ConfigError(f"{where}: unknown parameter {key!r}. Valid parameters: {', '.join(INPUT_PARAM_FIELDS)}.")
        if key == "master_board":
            setattr(out, key, board_from_name(value, where=f"{where}: master_board"))
        elif key == "ip_protocol" and isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            protocols = {p.name.lower().replace("_ip_protocol", ""): p.value for p in IpProtocolTypes}
            if value.strip().lower() not in protocols:
                raise ConfigError(f"{where}: ip_protocol must be one of {sorted(protocols)}, got {value!r}.")
            setattr(out, key, protocols[value.strip().lower()])
        elif key in _INT_FIELDS:
            try:
                setattr(out, key, int(value))
            except ValueError:
                raise ConfigError(f"{where}: {key} must be an integer, got {value!r}.") from None
        else:
            setattr(out, key, str(value))
    return out


@dataclass(frozen=True, slots=True)
class BoardDescription:
    """The parts of BrainFlow's board descriptor rt_physio uses.

    Attributes
    ----------
    board_id : int
        The board (for playback/streaming boards: the one whose layout they replay).
    sfreq : float
        Sampling rate in Hz.
    num_rows : int
        Rows of the array ``get_board_data`` returns.
    timestamp_row : int
        Row of the (wall-clock) timestamps.
    package_row : int or None
        Row of the package counter, used to count lost samples.
    rows : dict
        ``{"eeg": (...), "ecg": (...)}``: the descriptor's rows for each modality (may be empty).
    eeg_names : tuple of str
        Names of the EEG rows, in the order of ``rows["eeg"]`` (empty when the board has none).
    raw : dict
        The whole descriptor.
    """

    board_id: int
    sfreq: float
    num_rows: int
    timestamp_row: int
    package_row: int | None
    rows: dict[str, tuple[int, ...]]
    eeg_names: tuple[str, ...]
    raw: dict[str, Any]


def board_descr(board_id: int, params: BrainFlowInputParams | None = None) -> BoardDescription:
    """Return the descriptor of ``board_id`` (of ``master_board`` for playback and streaming boards)."""
    layout_id = board_id
    if board_id in _VIRTUAL_BOARDS:
        layout_id = params.master_board if params is not None else BoardIds.NO_BOARD.value
        if layout_id == BoardIds.NO_BOARD.value:
            raise ConfigError(f"brainflow:{board_name(board_id)} replays another board's layout: give "
                              "master_board=<board name or id>.")
    try:
        raw: dict[str, Any] = BoardShim.get_board_descr(layout_id)
    except BrainFlowError as exc:
        raise ConfigError(f"BrainFlow has no description of board {board_name(layout_id)}: {exc}") from exc
    names = tuple(n.strip() for n in str(raw.get("eeg_names", "")).split(",") if n.strip())
    eeg_rows = tuple(int(r) for r in raw.get("eeg_channels", ()))
    return BoardDescription(
        board_id=layout_id,
        sfreq=float(raw["sampling_rate"]),
        num_rows=int(raw["num_rows"]),
        timestamp_row=int(raw["timestamp_channel"]),
        package_row=int(raw["package_num_channel"]) if "package_num_channel" in raw else None,
        rows={"eeg": eeg_rows, "ecg": tuple(int(r) for r in raw.get("ecg_channels", ()))},
        eeg_names=names if len(names) == len(eeg_rows) else (),
        raw=raw,
    )


class PackageCounter:
    """Counts samples lost by a board from its package-counter row (BrainFlow's ``package_num_channel``).

    Boards number their packages with a wrapping counter (0..255 on most). A step of k between consecutive
    samples means k - 1 were lost. The wrap is learnt as one more than the largest value seen, so it is exact
    once the counter has shown its maximum (after one cycle; within the first cycle only a loss of that very
    maximum can be miscounted) and works for counters of any width.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self._max = 0
        self.lost = 0

    def update(self, values: NDArray[np.float64]) -> int:
        """Take the next counter values (one per sample, in order); return how many samples were lost."""
        if values.size == 0:
            return 0
        counter: NDArray[np.int64] = values.astype(np.int64)
        self._max = max(self._max, int(counter.max()))
        previous = counter[:1] if self._last is None else np.array([self._last], dtype=np.int64)
        steps = np.mod(np.diff(np.concatenate((previous, counter))), self._max + 1)
        self._last = int(counter[-1])
        lost = int(np.maximum(steps - 1, 0).sum())
        self.lost += lost
        return lost


def brainflow_error_name(exc: BrainFlowError) -> str:
    """Return the symbolic name of a BrainFlowError's exit code (``UNABLE_TO_OPEN_PORT_ERROR``)."""
    try:
        return str(BrainFlowExitCodes(exc.exit_code).name)
    except ValueError:
        return f"error {exc.exit_code}"


class BoardLog:
    """BrainFlow's C++ board logger, routed to a private file instead of the console.

    BrainFlow prints ``[board_logger] [info] incoming json: …`` blocks to stderr on every prepare. Here its
    level is WARN (INFO when ``rt_physio.sources.brainflow`` logs at DEBUG) and its output goes to a
    per-process temporary file; :meth:`lines_since` lets a failed prepare quote BrainFlow's explanation and
    :meth:`forward` copies new lines into Python logging.
    """

    _lock = threading.Lock()
    _path: Path | None = None
    _forwarded = 0

    @classmethod
    def install(cls) -> None:
        """Route the board logger (once per process)."""
        with cls._lock:
            if cls._path is not None:
                return
            fd, name = tempfile.mkstemp(prefix=f"rt_physio-brainflow-{os.getpid()}-", suffix=".log")
            os.close(fd)
            path = Path(name)
            try:
                BoardShim.set_log_file(str(path))
                BoardShim.set_log_level(LogLevels.LEVEL_INFO if log.isEnabledFor(logging.DEBUG)
                                        else LogLevels.LEVEL_WARN)
            except BrainFlowError as exc:  # keep BrainFlow's console logging rather than fail
                log.debug("could not route BrainFlow's logger: %s", exc)
                path.unlink(missing_ok=True)
                return
            cls._path = path
            atexit.register(path.unlink, missing_ok=True)

    @classmethod
    def mark(cls) -> int:
        """Return the current end of the log (pass to :meth:`lines_since`)."""
        try:
            return cls._path.stat().st_size if cls._path is not None else 0
        except OSError:
            return 0

    @classmethod
    def lines_since(cls, mark: int) -> list[str]:
        """Return BrainFlow's log lines written after ``mark``, without the timestamp/logger prefix."""
        if cls._path is None:
            return []
        try:
            with cls._path.open("rb") as fh:
                fh.seek(mark)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line.split("] ", 2)[-1].strip() for line in text.splitlines() if line.strip()]

    @classmethod
    def forward(cls) -> None:
        """Copy log lines written since the last call into Python logging (warnings and errors as warnings)."""
        with cls._lock:
            end = cls.mark()
            if end <= cls._forwarded:
                cls._forwarded = min(cls._forwarded, end)
                return
            start, cls._forwarded = cls._forwarded, end
        for line in cls.lines_since(start):
            level = logging.WARNING if line.startswith(("[warn", "[error", "[critical")) else logging.DEBUG
            log.log(level, "BrainFlow: %s", line)

    @classmethod
    def explain(cls, mark: int) -> str:
        """Return BrainFlow's warnings/errors since ``mark`` as one sentence for an error message."""
        with contextlib.suppress(Exception):
            lines = [ln.split("] ", 1)[-1] for ln in cls.lines_since(mark)
                     if ln.startswith(("[warn", "[error", "[critical"))]
            if lines:
                sentences = [ln.strip() if ln.strip().endswith((".", "!", "?")) else ln.strip() + "."
                             for ln in dict.fromkeys(lines)]
                return " BrainFlow says: " + " ".join(sentences)
        return ""
