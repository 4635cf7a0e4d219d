"""What ``rt-physio devices`` shows: visible LSL streams, BrainFlow boards, device profiles, BLE devices if asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rt_physio.checks import check_positive
from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.brainflow_boards import board_descr, known_boards
from rt_physio.sources.lsl_streams import LslStreamSummary, quiet_liblsl, visible_streams
from rt_physio.sources.polar import BleDevice
from rt_physio.sources.profiles import find_profiles, load_profile_file

__all__ = ["BoardSummary", "DeviceReport", "ProfileSummary", "format_report", "list_devices"]


@dataclass(frozen=True, slots=True)
class BoardSummary:
    """A BrainFlow board: its name and id, and (when BrainFlow describes it) rate and EEG/ECG row counts."""

    name: str
    board_id: int
    sfreq: float | None
    n_eeg: int
    n_ecg: int


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """A valid device profile found in a ``drivers/`` folder."""

    name: str
    description: str
    backend: str
    modalities: tuple[str, ...]
    path: Path


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """Everything ``rt-physio devices`` lists.

    Attributes
    ----------
    lsl_streams : list of LslStreamSummary
        LSL streams visible within the wait.
    lsl_wait : float
        How long we listened for LSL streams, seconds.
    boards : list of BoardSummary
        Every board BrainFlow knows.
    profiles : list of ProfileSummary
        Valid profiles, by name.
    profile_errors : list of str
        One message per profile file that failed to load (named in the message).
    profile_dirs : list of Path
        The ``drivers/`` folders searched, in order.
    ble : list of BleDevice or None
        Bluetooth LE devices seen (None when not asked for).
    ble_error : str
        Why the BLE scan could not run ('' when it ran or was not asked for).
    """

    lsl_streams: list[LslStreamSummary]
    lsl_wait: float
    boards: list[BoardSummary]
    profiles: list[ProfileSummary]
    profile_errors: list[str]
    profile_dirs: list[Path]
    ble: list[BleDevice] | None = None
    ble_error: str = ""


def list_devices(lsl_timeout: float = 1.0, *, ble: bool = False) -> DeviceReport:
    """Collect the visible LSL streams, BrainFlow's boards and the device profiles.

    Parameters
    ----------
    lsl_timeout : float
        Seconds to listen for LSL streams (LSL needs ~0.5 s or more to hear every outlet on a network), and to
        scan for Bluetooth LE devices (at least 3 s).
    ble : bool
        Also scan for Bluetooth LE devices (Polar H10 chest straps).

    Returns
    -------
    DeviceReport
        The report; pass it to :func:`format_report` for display.
    """
    check_positive("lsl_timeout", lsl_timeout, unit="seconds", error=ConfigError)
    quiet_liblsl()
    boards = []
    for name, board_id in known_boards().items():
        try:
            descr = board_descr(board_id)
        except ConfigError:  # playback / streaming boards take the layout of a master_board
            boards.append(BoardSummary(name, board_id, None, 0, 0))
        else:
            boards.append(BoardSummary(name, board_id, descr.sfreq, len(descr.rows["eeg"]), len(descr.rows["ecg"])))
    found, folders = find_profiles()
    profiles, errors = [], []
    for _name, path in sorted(found.items()):
        try:
            p = load_profile_file(path)
        except ConfigError as exc:
            errors.append(str(exc))
        else:
            profiles.append(ProfileSummary(p.name, p.description, p.backend, tuple(p.modalities), path))
    ble_devices: list[BleDevice] | None = None
    ble_error = ""
    if ble:
        from rt_physio.sources.polar import scan_ble

        try:
            ble_devices = scan_ble(max(3.0, float(lsl_timeout)))
        except SourceError as exc:
            ble_error = str(exc)
    return DeviceReport(visible_streams(float(lsl_timeout)), float(lsl_timeout), boards, profiles, errors, folders,
                        ble_devices, ble_error)


def format_report(report: DeviceReport) -> str:
    """Render a :class:`DeviceReport` as the text ``rt-physio devices`` prints."""
    lines = [f"LSL streams visible within {report.lsl_wait:g} s:"]
    if report.lsl_streams:
        lines += [f"  {s.describe()}   → lsl:{s.name}" for s in report.lsl_streams]
    else:
        lines.append("  (none; start the device's LSL app, or replay a recording)")
    lines += ["", "Device profiles (use profile:<name>; `synthetic` = profile:brainflow-synthetic):"]
    width = max((len(p.name) for p in report.profiles), default=0)
    for p in report.profiles:
        lines.append(f"  {p.name:<{width}}  {p.backend:<9} {'+'.join(m.upper() for m in p.modalities):<7}  "
                     f"{p.description}")
    if not report.profiles:
        lines.append("  (none found)")
    lines += [f"  ! {err}" for err in report.profile_errors]
    folders = ", ".join(str(d) for d in report.profile_dirs) or "(no drivers/ folder found)"
    lines += [f"  searched: {folders}", "",
              "BrainFlow boards (use brainflow:<name or id>[?serial_port=…&mac_address=…]):"]
    width = max((len(b.name) for b in report.boards), default=0)
    for b in report.boards:
        rate = f"{b.sfreq:g} Hz" if b.sfreq is not None else "layout of master_board=…"
        rows = f", {b.n_eeg} EEG, {b.n_ecg} ECG rows" if b.sfreq is not None else ""
        lines.append(f"  {b.name:<{width}} {b.board_id:>4}  {rate}{rows}")
    if report.ble is not None or report.ble_error:
        lines += ["", "Bluetooth LE devices (Polar H10: --ecg polar:<address>):"]
        if report.ble_error:
            lines.append(f"  (scan failed) {report.ble_error}")
        elif not report.ble:
            lines.append("  (none; a Polar H10 advertises only while worn)")
        for d in report.ble or []:
            rssi = f", {d.rssi} dBm" if d.rssi is not None else ""
            hint = f"   → polar:{d.address}" if d.is_polar else ""
            lines.append(f"  {d.name or '(no name)'} ({d.address}{rssi}){hint}")
    return "\n".join(lines)
