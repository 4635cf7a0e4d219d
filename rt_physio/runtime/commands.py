"""The control commands a running engine answers: one explicit table, strict arguments.

Each :class:`Command` lists the arguments it takes and the check each must pass. Requests are dispatched only
through a :class:`CommandTable` (never by attribute lookup), so nothing but the listed commands can be reached
from the wire. A request naming an unknown command, carrying a key the command does not take, or a value out
of bounds is refused with a :class:`~rt_physio.publish.control.CommandError` that says which and why; the
transports answer it as ``{"ok": false, "error": …}``. Numbers are held to the same bounds as on the command
line (:func:`rt_physio.checks.check_number`, with the bounds from :class:`~rt_physio.config.EngineConfig`).

The engine's commands (:func:`engine_commands`):

``{"cmd": "ping"}``
    ``{"ok": true, "cmd": "ping"}``: the session is there and listening (answered while the engine starts too).
``{"cmd": "calibrate", "seconds": S}``
    The next S seconds of the session are a new baseline; S between the window length and 3600, default: the
    ``--calibrate`` value, else the model's own baseline length.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rt_physio.checks import check_number, show_value
from rt_physio.publish.control import CommandError

if TYPE_CHECKING:
    from rt_physio.runtime.engine import Engine

__all__ = ["Argument", "Command", "CommandTable", "engine_commands"]

Run = Callable[[str, dict[str, Any]], dict[str, Any]]
"""``run(session_id, arguments) -> reply``: carries out a command whose arguments passed their checks."""


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of a command: ``check(value)`` returns the value to use or raises ``ValueError``."""

    check: Callable[[Any], Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """A command: its name (the ``cmd`` string), what runs it, and the arguments it takes.

    ``before_start``: the command may run while the engine is still starting (the transports open before
    the sessions and the executor exist).
    """

    name: str
    run: Run
    arguments: Mapping[str, Argument] = field(default_factory=dict)
    before_start: bool = False


class CommandTable:
    """Dispatch requests to a fixed set of commands after checking their arguments.

    An instance is a :data:`~rt_physio.publish.control.ControlHandler`: ``table(session_id, request)``.

    Parameters
    ----------
    commands : sequence of Command
        The commands, with unique names.
    ready : callable
        ``ready()`` is False while the engine is still starting: commands without ``before_start`` are then
        refused with a "try again" answer.
    """

    def __init__(self, commands: Sequence[Command], ready: Callable[[], bool]) -> None:
        self._commands = {c.name: c for c in commands}
        if len(self._commands) != len(commands):
            raise ValueError(f"The 'commands' parameter names a command twice: {[c.name for c in commands]}.")
        self._ready = ready

    @property
    def names(self) -> tuple[str, ...]:
        """The command names, in table order."""
        return tuple(self._commands)

    def __call__(self, session_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``request`` (``cmd`` and the command's arguments) and run it for ``session_id``.

        Raises
        ------
        CommandError
            Unknown command, unknown or missing argument, or the engine still starting.
        ValueError
            An argument's value failed its check (the message names the argument, the value and the bounds).
        """
        name = request.get("cmd")
        command = self._commands.get(name) if isinstance(name, str) else None
        if command is None:
            raise CommandError(f"unknown command {show_value(name)}; known: {', '.join(self._commands)}")
        unknown = [key for key in request if key != "cmd" and key not in command.arguments]
        if unknown:
            takes = ("only " + ", ".join(repr(k) for k in command.arguments)) if command.arguments else "no arguments"
            raise CommandError(f"command {name!r} takes {takes}; unknown key(s): "
                               f"{', '.join(show_value(k) for k in sorted(unknown))}")
        arguments: dict[str, Any] = {}
        for key, argument in command.arguments.items():
            if key in request:
                arguments[key] = argument.check(request[key])
            elif argument.required:
                raise CommandError(f"command {name!r} needs {key!r}")
        if not command.before_start and not self._ready():
            raise CommandError(f"the engine is still starting; send {name!r} again in a moment")
        return command.run(session_id, arguments)


def engine_commands(engine: Engine) -> CommandTable:
    """Build the command table of a running :class:`~rt_physio.runtime.engine.Engine` (see the module docstring)."""
    seconds = Argument(functools.partial(check_number, "seconds", **engine.config.calibrate_range()))
    return CommandTable([
        Command("ping", lambda session_id, arguments: {"ok": True, "cmd": "ping"}, before_start=True),
        Command("calibrate", functools.partial(_calibrate, engine), {"seconds": seconds}),
    ], ready=lambda: not math.isnan(engine.started_at))


def _calibrate(engine: Engine, session_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "calibrate", "seconds": S}``: the next S seconds of the session are a new baseline."""
    calibration = engine.executor.calibrations.get(session_id)
    if calibration is None:
        raise CommandError(f"model {engine.model.spec.name!r} cannot be calibrated (no [calibration] in its "
                           "model.toml)")
    spec_cal = engine.model.spec.calibration
    default = engine.config.calibrate_s or (spec_cal.seconds if spec_cal is not None else 60.0)
    seconds = float(arguments.get("seconds", default))
    data_now = engine.sessions[session_id].data_clock()
    t0 = None if math.isnan(data_now) else data_now
    calibration.start(seconds, t0)  # ValueError for a default shorter than the window: answered as an error
    return {"ok": True, "cmd": "calibrate", "seconds": seconds, "t0": t0}
