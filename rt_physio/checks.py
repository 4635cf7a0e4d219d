"""Checks of the numbers a user hands the engine, shared by every boundary that takes them.

The command line (``rt-physio run --calibrate 60``), the config file (``calibrate = 60``) and a control message
(``{"cmd": "calibrate", "seconds": 60}``) all end in :func:`check_number`, so one number is held to the same
bounds, with the same message, whichever way it came: the message names the parameter, the value received and
what was expected, e.g. ``The 'seconds' parameter must be a finite number between 5 and 3600 (seconds; a baseline
is at least the window length), got 1e+300.`` Non-finite numbers (NaN, ±inf) are always refused: no parameter of
the engine means anything infinite.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_number", "number_arg", "show_value"]

_SHOW = 40  # characters of a refused value shown in a message (a control message can hold a 60-kB string)


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


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, unit: str = "") -> float:
    """Return ``value`` as a float after checking it is a finite number in range.

    Parameters
    ----------
    name : str
        The parameter's name as the user wrote it (``'calibrate'``, ``'seconds'``).
    value : object
        What the user gave; booleans and strings are not numbers.
    minimum, maximum : float, optional
        Inclusive bounds.
    exclusive_minimum : bool
        ``minimum`` itself is refused (``minimum=0`` then means strictly positive).
    unit : str
        Shown after the range in the message, e.g. ``seconds``.

    Raises
    ------
    ValueError
        Naming the parameter, the value and what was expected.
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        number = float(value) if ok else math.nan
    except OverflowError:  # an int beyond float range
        number = math.inf
    ok = ok and math.isfinite(number)
    if ok and minimum is not None:
        ok = number > minimum if exclusive_minimum else number >= minimum
    if ok and maximum is not None:
        ok = number <= maximum
    if not ok:
        expected = _expected(minimum, maximum, exclusive_minimum, unit)
        raise ValueError(f"The {name!r} parameter must be {expected}, got {show_value(value)}.")
    return number


def number_arg(name: str, *, minimum: float | None = 0.0, maximum: float | None = None,
               exclusive_minimum: bool = True) -> Callable[[str], float]:
    """Return an ``argparse`` ``type=`` that reads a finite number in range (default: strictly positive).

    ``float()`` alone would take ``nan``, ``inf`` and ``1e999``; these are refused here, with the bounds in the
    message (argparse then exits with status 2 and the usage line).
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return check_number(name, value, minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum)
        except ValueError:
            expected = _expected(minimum, maximum, exclusive_minimum, "")
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    parse.__name__ = "number"  # argparse names the type in some messages
    return parse
