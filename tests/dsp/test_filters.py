from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rt_physio.dsp import FilterChain, SosFilter, design_bandpass, design_highpass, design_lowpass, design_notch

from ._signals import chunk_bounds, eeg_sos, some_sos

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.integers(0, 4),
    data=st.integers(1, 4).flatmap(lambda c: arrays(np.float32, st.tuples(st.integers(1, 300), st.just(c)),
                                                    elements=finite)),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    as_f64=st.booleans(),
)
def test_chunked_output_is_bit_identical_to_one_sosfilt_call(kind, data, sizes, seed, as_f64):
    sos = some_sos(kind)
    x = data.astype(np.float64) if as_f64 else data
    zi = np.random.default_rng(seed).standard_normal((sos.shape[0], 2, x.shape[1])) * 10
    expected, zf = scipy.signal.sosfilt(sos, x, axis=0, zi=zi)

    filt = SosFilter(sos, x.shape[1])
    filt.state = zi
    got = np.concatenate([filt.process(x[a:b]) for a, b in chunk_bounds(x.shape[0], sizes)])

    assert got.dtype == np.float64
    assert np.array_equal(got, expected)  # bit-identical, not merely close
    assert np.array_equal(filt.state, zf)


def test_chain_equals_stages_in_sequence_and_one_vstacked_sosfilt():
    fs = 500.0
    x = np.random.default_rng(1).standard_normal((2000, 21)).astype(np.float32) * 50
    band, notch = design_bandpass(1.0, 40.0, fs), design_notch(50.0, fs)
    chain = SosFilter.chain([band, notch], 21)
    assert isinstance(chain, FilterChain)
    assert chain.n_sections == 5
    assert len(chain.stages) == 2
    first, second = SosFilter(band, 21), SosFilter(notch, 21)
    y_chain = np.concatenate([chain.process(x[i:i + 7]) for i in range(0, 2000, 7)])
    y_seq = second.process(first.process(x))
    assert np.array_equal(y_chain, y_seq)
    assert np.array_equal(y_chain, scipy.signal.sosfilt(np.vstack([band, notch]), x, axis=0))


def test_reset_to_steady_state_removes_the_dc_step():
    sos = eeg_sos(250.0)
    level = np.array([20000.0, -300.0, 5.0])  # electrode offsets in µV
    x = np.tile(level, (1000, 1))
    cold = SosFilter(sos, 3)
    warm = SosFilter(sos, 3)
    warm.reset(level)
    assert np.abs(cold.process(x)).max() > 1000.0
    assert np.abs(warm.process(x)).max() < 1e-6 * np.abs(level).max()
    expected, _ = scipy.signal.sosfilt(sos, x, axis=0, zi=scipy.signal.sosfilt_zi(sos)[:, :, None] * level)
    warm.reset(level)
    assert np.array_equal(warm.process(x), expected)
    warm.reset()
    assert not warm.state.any()


def test_in_place_float64():
    sos = eeg_sos(250.0)
    x = np.random.default_rng(2).standard_normal((100, 4))
    expected = scipy.signal.sosfilt(sos, x, axis=0)
    filt = SosFilter(sos, 4)
    y = filt.process(x, out=x)
    assert y is x
    assert np.array_equal(x, expected)


def test_non_contiguous_input_is_accepted():
    sos = eeg_sos(250.0)
    x = np.random.default_rng(3).standard_normal((4, 100)).T  # Fortran-ordered view
    assert np.array_equal(SosFilter(sos, 4).process(x), scipy.signal.sosfilt(sos, x, axis=0))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: SosFilter(np.ones((2, 5)), 3), "'sos' parameter must have shape"),
        (lambda: SosFilter(np.array([[1, 0, 0, 2, 0, 0.0]]), 3), "a0 = sos"),
        (lambda: SosFilter(eeg_sos(250.0), 0), "'n_channels' parameter must be an integer >= 1, got 0"),
        (lambda: SosFilter(eeg_sos(250.0), 3).process(np.zeros((5, 4))), r"shape \(samples, 3\), got \(5, 4\)"),
        (lambda: SosFilter(eeg_sos(250.0), 3).process(np.zeros((5, 3), dtype=np.int16)), "float32 or float64"),
        (lambda: SosFilter(eeg_sos(250.0), 3).process(np.zeros((5, 3)), out=np.zeros((5, 3), np.float32)), "'out'"),
        (lambda: FilterChain([], 3), "at least one SOS"),
        (lambda: design_bandpass(40.0, 1.0, 250.0), "'low' parameter must be below 'high'"),
        (lambda: design_bandpass(1.0, 130.0, 250.0), r"Nyquist frequency fs/2 = 125 Hz, got 130 Hz"),
        (lambda: design_notch(50.0, -1.0), "'fs' parameter must be a strictly positive finite number, got -1.0"),
        (lambda: design_highpass(0.0, 250.0), "'cutoff' parameter"),
        (lambda: design_lowpass(10.0, 250.0, order=0), "'order' parameter"),
    ],
)
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_state_setter_checks_shape():
    filt = SosFilter(eeg_sos(250.0), 3)
    with pytest.raises(ValueError, match=r"\(sections, 2, channels\)"):
        filt.state = np.zeros((5, 3, 2))


def test_empty_chunk_leaves_state_alone():
    filt = SosFilter(eeg_sos(250.0), 2)
    filt.reset(np.array([1.0, 2.0]))
    before = filt.state
    assert filt.process(np.zeros((0, 2), np.float32)).shape == (0, 2)
    assert np.array_equal(filt.state, before)
