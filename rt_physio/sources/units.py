"""Physical units of incoming signals and their scale factors to microvolts (the unit every Chunk carries)."""

from __future__ import annotations

import math

__all__ = ["UNIT_SCALES", "scale_to_uv"]

#: Factor that turns a value in the named unit into microvolts. Keys are lower-case; "µ" (micro sign) and
#: "μ" (Greek mu) are both accepted. MNE-LSL writes units as a power-of-ten exponent of volts ("-6" = µV),
#: which :func:`scale_to_uv` also understands.
UNIT_SCALES: dict[str, float] = {
    "uv": 1.0,
    "µv": 1.0,
    "μv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
    "nv": 1e-3,
    "nanovolt": 1e-3,
    "nanovolts": 1e-3,
}


def scale_to_uv(unit: str) -> float | None:
    """Return the factor converting values in ``unit`` to microvolts, or None when the unit is unknown.

    Parameters
    ----------
    unit : str
        A unit name such as ``"uV"``, ``"microvolts"``, ``"mV"``, ``"V"``, or a power-of-ten exponent of
        volts as MNE-LSL writes it (``"-6"`` for µV, ``"0"`` for V).

    Returns
    -------
    float or None
        The scale factor, or None for empty or unrecognised units.
    """
    key = unit.strip().lower()
    if key in UNIT_SCALES:
        return UNIT_SCALES[key]
    try:
        exponent = int(key)
    except ValueError:
        return None
    if -12 <= exponent <= 3:
        return math.pow(10.0, exponent + 6)
    return None
