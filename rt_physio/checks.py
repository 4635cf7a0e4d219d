"""Boundary validation: one check, one clear message naming the argument, the value received and what was expected.

Every boundary that takes a number or an array from outside uses these helpers: the command line
(``rt-physio run --calibrate 60``), the config file (``calibrate = 60``), a control message
(``{"cmd": "calibrate", "seconds": 60}``), a model's ``model.toml``, a device profile, and the constructors of the
dsp classes. One number is then held to the same bounds, with the same message, whichever way it came, e.g.
``The 'seconds' parameter must be a finite number between 5 and 3600 (seconds; a baseline is at least the window
length), got 1e+300.`` Non-finite numbers (NaN, ±inf) are always refused: no parameter means anything infinite.

This module imports only the standard library and NumPy, so that every layer — dsp included — may use it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "as_chunk", "as_timestamps", "check_int", "check_number", "check_positive", "int_arg", "number_arg",
    "parse_int", "parse_number", "positive_entry", "positive_int_entry", "show_value",
]

_SHOW = 40  # characters of a refused value shown in a message (a control message can hold a 60-kB string)
_REAL = (int, float, np.integer, np.floating)
_INTEGER = (int, np.integer)


def show_value(value: Any) -> str:
    """``repr(value)``, cut to a length a message can carry."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits: Python refuses to convert it to text
        return f"an integer of about {round(value.bit_length() * math.log10(2))} digits"
    return text if len(text) <= _SHOW else f"{text[:_SHOW]}… ({len(text)} characters)"


def _expected(minimum: float | None, maximum: float | None, exclusive_minimum: bool, unit: str) -> str:
    noun = "finite number"
    what = f"a {noun}"
    suffix = f" ({unit})" if unit else ""
    if minimum is not None and maximum is not None:
        low = f"greater than {minimum:g} and at most" if exclusive_minimum else f"between {minimum:g} and"
        return f"{what} {low} {maximum:g}{suffix}"
    if minimum == 0:
        return f"a {'strictly positive' if exclusive_minimum else 'non-negative'} {noun}{suffix}"
    if minimum is not None:
        return f"{what} {'greater than' if exclusive_minimum else 'at least'} {minimum:g}{suffix}"
    if maximum is not None:
        return f"{what} at most {maximum:g}{suffix}"
    return what + suffix


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a real number (booleans are not) or not finite."""
    if not isinstance(value, _REAL) or isinstance(value, bool | np.bool_):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None


def _in_range(number: float, minimum: float | None, maximum: float | None, exclusive_minimum: bool) -> bool:
    if minimum is not None and not (number > minimum if exclusive_minimum else number >= minimum):
        return False
    return maximum is None or number <= maximum


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, unit: str = "", error: type[Exception] = ValueError) -> float:
    """Return ``value`` as a float after checking it is a finite number in range.

    Parameters
    ----------
    name : str
        The parameter's name as the user wrote it (``'calibrate'``, ``'seconds'``).
    value : object
        What the user gave; booleans and strings are not numbers (NumPy scalars are).
    minimum, maximum : float, optional
        Inclusive bounds.
    exclusive_minimum : bool
        ``minimum`` itself is refused (``minimum=0`` then means strictly positive).
    unit : str
        Shown after the range in the message, e.g. ``seconds``.
    error : type of Exception
        What to raise (``ConfigError`` where the value comes from a user's config or command line).

    Returns
    -------
    float
        The checked number.

    Raises
    ------
    ValueError
        (or ``error``) Naming the parameter, the value and what was expected.
    """
    number = _finite(value)
    if number is None or not _in_range(number, minimum, maximum, exclusive_minimum):
        expected = _expected(minimum, maximum, exclusive_minimum, unit)
        raise error(f"The {name!r} parameter must be {expected}, got {show_value(value)}.")
    return number


def check_positive(name: str, value: Any, *, allow_zero: bool = False, unit: str = "",
                   error: type[Exception] = ValueError) -> float:
    """Return ``value`` as a float after checking it is a finite, strictly positive (or non-negative) number.

    The message reads ``The 'fs' parameter must be a strictly positive finite number, got -1.0.``; ``unit`` and
    ``error`` as in :func:`check_number`.
    """
    return check_number(name, value, minimum=0.0, exclusive_minimum=not allow_zero, unit=unit, error=error)


def check_int(name: str, value: Any, *, minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """Return ``value`` as an int after checking it is an integer ≥ ``minimum`` (``error`` as in check_number)."""
    if not isinstance(value, _INTEGER) or isinstance(value, bool) or int(value) < minimum:
        raise error(f"The '{name}' parameter must be an integer >= {minimum}, got {show_value(value)}.")
    return int(value)


def positive_entry(where: str, value: Any) -> float:
    """Return the value of a file's entry ``where`` (``inputs.sfreq``) after checking it is a finite number > 0.

    For entries of a TOML file (a model's ``model.toml``, a device profile), named by their dotted key rather than
    as a parameter: ``inputs.scale_uv must be a positive number, got -1.0.``

    Raises
    ------
    ValueError
        Naming the entry, the value and what was expected.
    """
    number = _finite(value)
    if number is None or number <= 0:
        raise ValueError(f"{where} must be a positive number, got {show_value(value)}.")
    return number


def positive_int_entry(where: str, value: Any) -> int:
    """Return the value of a file's entry ``where`` after checking it is an integer >= 1.

    Raises
    ------
    ValueError
        ``architecture.head.hidden must be a positive integer, got 1.5.``
    """
    if not isinstance(value, _INTEGER) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {show_value(value)}.")
    return int(value)


def parse_number(text: str, *, minimum: float | None = 0.0, maximum: float | None = None,
                 exclusive_minimum: bool = True) -> float:
    """Read a number a user typed (a command-line option, a SPEC option): finite and in range (default: > 0).

    ``float()`` alone would take ``nan``, ``inf`` and ``1e999``; these are refused here.

    Raises
    ------
    ValueError
        ``expected a strictly positive finite number, got '0'``: the caller puts it in its own context.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    number = _finite(value)
    if number is None or not _in_range(number, minimum, maximum, exclusive_minimum):
        raise ValueError(f"expected {_expected(minimum, maximum, exclusive_minimum, '')}, got {text!r}")
    return number


def parse_int(text: str, *, minimum: int = 1) -> int:
    """Read a whole number ≥ ``minimum`` (default 1) a user typed.

    Raises
    ------
    ValueError
        ``expected a whole number >= 1, got '0'``: the caller puts it in its own context.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


def number_arg(*, minimum: float | None = 0.0, maximum: float | None = None,
               exclusive_minimum: bool = True) -> Callable[[str], float]:
    """Return an ``argparse`` ``type=`` that reads a finite number in range (default: strictly positive).

    A refused value makes argparse exit with status 2, the usage line, the option's name and
    :func:`parse_number`'s message.
    """

    def parse(text: str) -> float:
        try:
            return parse_number(text, minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "number"  # argparse names the type in some messages
    return parse


def int_arg(*, minimum: int = 1) -> Callable[[str], int]:
    """Return an ``argparse`` ``type=`` that reads a whole number ≥ ``minimum`` (default: 1)."""

    def parse(text: str) -> int:
        try:
            return parse_int(text, minimum=minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "integer"
    return parse


def as_chunk(name: str, data: Any, n_channels: int) -> NDArray[np.float32] | NDArray[np.float64]:
    """Return ``data`` as a C-contiguous float32/float64 (samples, n_channels) array (no copy when it already is)."""
    if not isinstance(data, np.ndarray):
        raise ValueError(f"The '{name}' parameter must be a NumPy array of shape (samples, {n_channels}), "
                         f"got {type(data).__name__}.")
    if data.ndim != 2 or data.shape[1] != n_channels:
        raise ValueError(f"The '{name}' parameter must have shape (samples, {n_channels}), got {data.shape}.")
    if data.dtype != np.float32 and data.dtype != np.float64:
        raise ValueError(f"The '{name}' parameter must be float32 or float64, got {data.dtype}.")
    if not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    out: NDArray[np.float32] | NDArray[np.float64] = data
    return out


def as_timestamps(name: str, timestamps: Any, n_samples: int) -> NDArray[np.float64]:
    """Return ``timestamps`` as a contiguous float64 (n_samples,) array (no copy when it already is)."""
    if not isinstance(timestamps, np.ndarray) or timestamps.shape != (n_samples,):
        shape = getattr(timestamps, "shape", type(timestamps).__name__)
        raise ValueError(f"The '{name}' parameter must be an array of shape ({n_samples},) (one timestamp per "
                         f"sample), got {shape}.")
    if timestamps.dtype != np.float64 or not timestamps.flags.c_contiguous:
        timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
    out: NDArray[np.float64] = timestamps
    return out
