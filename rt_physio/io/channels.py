"""The channel vocabulary: modalities, channel labels, EEG/ECG classification and units.

Every part of rt_physio that looks at a channel label or a unit asks this module: the file readers
(:mod:`rt_physio.io`), the LSL source and device profiles (units), the engine (which stream columns feed a model)
and training (which channels a dataset holds).

* :func:`clean_label` drops an EDF+ type prefix for display (``EEG Fp1`` -> ``Fp1``); :func:`label_key` is the
  comparison key (prefix and case dropped: ``EEG Fp1``, ``eeg_fp1`` and ``FP1`` all give ``fp1``).
* :func:`channel_kind` tells EEG from ECG by a declared type or by the label: 10-20 electrode names (one list,
  :data:`EEG_SITE`) are EEG, ECG leads and anything named ECG/EKG are ECG.
* :data:`UNIT_SCALES` and :func:`scale_to_uv` turn a unit into a factor to microvolts, the unit every signal
  carries inside rt_physio.
"""

from __future__ import annotations

import math
import re
from typing import Literal

__all__ = [
    "ECG_LEADS",
    "EEG_SITE",
    "MODALITIES",
    "UNIT_SCALES",
    "Modality",
    "channel_kind",
    "clean_label",
    "label_key",
    "scale_to_uv",
]

#: The signal types rt_physio reads.
Modality = Literal["eeg", "ecg"]
#: Every modality, in fusion order.
MODALITIES: tuple[Modality, ...] = ("eeg", "ecg")

#: A 10-20 / 10-10 electrode site (one part of a label; ``A2-A1`` is two sites). The only 10-20 list in rt_physio.
EEG_SITE = re.compile(
    r"^(nz|fpz|fp\d+|afz|af\d+|fz|f\d+|fcz|fc\d+|ft\d+|cz|c\d+|cpz|cp\d+|tp\d+|t\d+|pz|p\d+|poz|po\d+|oz|o\d+|iz|"
    r"i\d+|a[12]|m[12])$", re.IGNORECASE)
#: Lower-case names of ECG leads (limb, augmented, precordial, Frank and Holter leads).
ECG_LEADS = frozenset({
    "i", "ii", "iii", "avr", "avl", "avf", "v", "v1", "v2", "v3", "v4", "v5", "v6", "vx", "vy", "vz", "mli", "mlii",
    "mliii", "mv1", "mv2", "mv5", "ml5", "d1", "d2", "d3", "lead i", "lead ii", "lead iii"})
_TYPE_WORDS: dict[str, Modality] = {"eeg": "eeg", "ecg": "ecg", "ekg": "ecg"}
_TYPE_PREFIX = re.compile(r"^(EEG|ECG|EKG)[\s_:-]+", re.IGNORECASE)

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


def clean_label(label: str) -> str:
    """Drop an EDF+ type prefix, keeping the case: ``EEG Fp1`` -> ``Fp1``, ``ECG ECG`` -> ``ECG``.

    Parameters
    ----------
    label : str
        A channel label as a file or stream gives it.

    Returns
    -------
    str
        The label without a leading ``EEG ``/``ECG ``/``EKG `` word (unchanged when nothing follows it).
    """
    text = label.strip()
    first, _, rest = text.partition(" ")
    return rest.strip() if first.lower() in _TYPE_WORDS and rest.strip() else text


def label_key(label: str) -> str:
    """Return the key two labels are compared by: no type prefix, no case (``"EEG Fp1"`` -> ``"fp1"``).

    Parameters
    ----------
    label : str
        A channel label (``EEG Fp1``, ``ECG_Raw``, ``fp1``).

    Returns
    -------
    str
        Lower-case label without an ``EEG``/``ECG``/``EKG`` prefix and its separator (space, ``_``, ``:``, ``-``).
    """
    return _TYPE_PREFIX.sub("", label.strip()).strip().lower()


def channel_kind(label: str, declared: str = "") -> Modality | None:
    """Return the modality of a channel from its declared type or, failing that, its label; None for others.

    Parameters
    ----------
    label : str
        Channel label as in the file (``EEG Fp1``, ``Fp1``, ``MLII``, ``ECG``, ``A2-A1``).
    declared : str
        A type the file declares for the channel (XDF ``type``), or ''.

    Returns
    -------
    {"eeg", "ecg"} or None
        None for channels that are neither (respiration, EDA, markers, …).
    """
    kind = declared.strip().lower()
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind:
        return None
    text = label.strip()
    first = text.split(" ", 1)[0].lower() if " " in text else ""
    if first in _TYPE_WORDS:  # EDF+ "<type> <name>" labels
        return _TYPE_WORDS[first]
    low = text.lower()
    if "ecg" in low or "ekg" in low or low in ECG_LEADS:
        return "ecg"
    parts = [p.strip() for p in re.split(r"[-–]", text) if p.strip()]
    if parts and all(EEG_SITE.match(p) for p in parts):
        return "eeg"
    return None


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
