"""Region features by 10-20 names: planted rhythms show up in their region; a headset without a region still works."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_physio.experiments.region_features import (
    COMPACT_FEATURES,
    REGION_FEATURES,
    REGIONS,
    region_features,
    site_regions,
)
from rt_physio.training.datasets.eegmat import EEGMAT_EEG_CHANNELS

FS = 200.0
T = np.arange(1000) / FS  # one 5-s window


def _noise(n_channels: int, seed: int = 0) -> NDArray[np.float64]:
    return np.random.default_rng(seed).normal(scale=0.1, size=(n_channels, T.size))


def _value(features: NDArray[np.float64], name: str) -> float:
    return float(features[REGION_FEATURES.index(name)])


def _features(x: NDArray[np.float64], names: tuple[str, ...] | list[str]) -> tuple[NDArray[np.float64],
                                                                                 NDArray[np.bool_]]:
    out = region_features(x, names, FS)
    assert out is not None
    return out


def test_site_names_map_to_regions() -> None:
    assert site_regions("EEG Fz") == {"frontal", "midline"}
    assert site_regions("fp1") == {"frontal"}
    assert site_regions("T5") == {"temporal"}
    assert site_regions("CP4") == {"parietal"}
    assert site_regions("POz") == {"occipital", "midline"}
    for label in ("A2-A1", "A1", "M2", "ECG", "Status"):
        assert site_regions(label) == frozenset()


def test_planted_frontal_theta_raises_the_frontal_and_frontal_midline_theta() -> None:
    names = EEGMAT_EEG_CHANNELS
    x = _noise(len(names))
    frontal = [i for i, n in enumerate(names) if "frontal" in site_regions(n)]
    x[frontal] += np.sin(2 * np.pi * 6.0 * T)  # a 6-Hz rhythm on Fp1 .. F8 and Fz only
    f, present = _features(x, names)
    assert present.all() and f.shape == (len(REGION_FEATURES),) and np.all(np.isfinite(f))
    theta = {r: _value(f, f"{r}_logpow_theta") for r in REGIONS}
    assert all(theta["frontal"] > theta[r] + 1.0 for r in ("central", "parietal", "temporal", "occipital"))
    assert _value(f, "fm_theta_logpow") > theta["central"] + 1.0
    assert _value(f, "frontal_theta_alpha") > _value(f, "parietal_theta_alpha") + 1.0
    assert _value(f, "frontal_logrel_theta") > _value(f, "parietal_logrel_theta")

    plain, _ = _features(_noise(len(names)), names)
    assert _value(f, "fm_theta_logrel") > _value(plain, "fm_theta_logrel") + 0.5


def test_alpha_asymmetry_has_the_sign_of_the_stronger_side() -> None:
    names = EEGMAT_EEG_CHANNELS
    x = _noise(len(names))
    x[names.index("F4")] += np.sin(2 * np.pi * 10.0 * T)
    x[names.index("P3")] += np.sin(2 * np.pi * 10.0 * T)
    f, _ = _features(x, names)
    assert _value(f, "alpha_asym_frontal") > 1.0  # F4 - F3
    assert _value(f, "alpha_asym_parietal") < -1.0  # P4 - P3


def test_a_headset_without_a_region_takes_the_all_channel_value_and_flags_it() -> None:
    names = ["TP9", "AF7", "AF8", "TP10"]  # a 4-channel band: frontal and temporal only, no midline
    x = _noise(len(names), seed=1)
    x[2] += np.sin(2 * np.pi * 10.0 * T)  # alpha on AF8 (right)
    f, present = _features(x, names)
    assert np.all(np.isfinite(f)) and f.shape == (len(REGION_FEATURES),)
    assert dict(zip(REGIONS, present.tolist(), strict=True)) == {
        "frontal": True, "central": False, "parietal": False, "temporal": True, "occipital": False,
        "midline": False}
    everywhere = [_value(f, f"{r}_logpow_alpha") for r in ("central", "parietal", "occipital", "midline")]
    assert np.allclose(everywhere, everywhere[0])
    assert np.isclose(everywhere[0], np.mean([_value(f, "frontal_logpow_alpha"), _value(f, "temporal_logpow_alpha")]))
    assert _value(f, "alpha_asym_frontal") > 1.0  # no F3/F4: AF8 minus AF7 stands in
    assert _value(f, "alpha_asym_parietal") == 0.0  # no parietal site on either side
    assert np.isclose(_value(f, "fm_theta_logpow"), _value(f, "frontal_logpow_theta"))  # no Fz: the frontal mean


def test_non_scalp_and_flat_channels_change_nothing() -> None:
    names = list(EEGMAT_EEG_CHANNELS)  # ends with the A2-A1 reference derivation
    x = _noise(len(names), seed=2)
    base, _ = _features(x, names)
    louder = x.copy()
    louder[names.index("A2-A1")] += 50.0 * np.sin(2 * np.pi * 6.0 * T)
    assert np.array_equal(_features(louder, names)[0], base)
    flat = np.vstack([x, np.zeros((1, T.size))])
    assert np.array_equal(_features(flat, [*names, "Oz"])[0], base)  # a flat Oz is as no Oz
    assert region_features(x[-1:], ["A2-A1"], FS) is None
    assert region_features(np.zeros((2, T.size)), ["Fz", "Cz"], FS) is None


def test_the_compact_names_are_the_marker_features() -> None:
    assert set(COMPACT_FEATURES) <= set(REGION_FEATURES) and len(COMPACT_FEATURES) == 6
    assert all("_log" not in n or n.startswith("fm_") for n in COMPACT_FEATURES)


def test_a_label_per_channel_is_required() -> None:
    with pytest.raises(ValueError, match="channel_names"):
        region_features(_noise(3), ["Fz", "Cz"], FS)
