"""Windowing logic of a session, driven chunk by chunk with exact timestamps.

The transport is not what is tested here (the end-to-end tests use real LSL and BrainFlow); a minimal source
that hands chunks to the session's sink lets these tests place every sample in time exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.dsp import StreamProcessor
from rt_physio.runtime.session import ModalityStream, Session, Window
from rt_physio.sources.base import Chunk, ChunkSink, Modality, SourceStats, StreamInfo


class ManualSource:
    """Implements the Source protocol; the test thread delivers the chunks."""

    def __init__(self, modality: Modality, sfreq: float, n_channels: int) -> None:
        self._info = StreamInfo(f"manual-{modality}", modality, sfreq, tuple(f"c{i}" for i in range(n_channels)))
        self._stats = SourceStats()
        self.sink: ChunkSink | None = None

    @property
    def info(self) -> StreamInfo:
        return self._info

    @property
    def stats(self) -> SourceStats:
        return self._stats

    def start(self, sink: ChunkSink) -> None:
        self.sink = sink

    def stop(self) -> None:
        self.sink = None

    def push(self, data: np.ndarray, stamps: np.ndarray) -> None:
        assert self.sink is not None
        self.sink(Chunk(data.astype(np.float32), stamps.astype(np.float64), received=float(stamps[-1])))


def _session(rates: dict[Modality, tuple[float, int]], *, window: float = 2.0, hop: float = 0.5,
             filters: bool = True, missing_after: float = 1.0) -> tuple[Session, dict[Modality, ManualSource],
                                                                        list[Window]]:
    windows: list[Window] = []
    sources = {m: ManualSource(m, fs, n) for m, (fs, n) in rates.items()}
    streams = {
        m: ModalityStream(m, src, StreamProcessor(src.info.sfreq, src.info.n_channels,
                                                   bandpass=(0.5, 45.0) if filters else None,
                                                   notch=50.0 if filters else None))
        for m, src in sources.items()
    }
    session = Session("t", streams, window_s=window, hop_s=hop, on_window=windows.append,
                      missing_after=missing_after)
    session.start()
    return session, sources, windows


def _feed(sources: dict[Modality, ManualSource], t0: float, t1: float, chunk_s: float = 0.05,
          only: set[Modality] | None = None, seed: int = 0) -> None:
    """Push every source's samples with timestamps in [t0, t1), interleaved chunk by chunk."""
    rng = np.random.default_rng(seed)
    t = t0
    while t < t1 - 1e-12:
        for modality, src in sources.items():
            if only is not None and modality not in only:
                continue
            fs = src.info.sfreq
            k = np.arange(np.ceil(t * fs - 1e-9), np.ceil(min(t + chunk_s, t1) * fs - 1e-9))
            if k.size:
                src.push(rng.normal(0, 20, (k.size, src.info.n_channels)), k / fs)
        t += chunk_s


def test_windows_on_a_fixed_grid_with_both_modalities() -> None:
    session, sources, windows = _session({"eeg": (128.0, 4), "ecg": (256.0, 1)})
    _feed(sources, 100.0, 106.0)
    assert len(windows) >= 5
    ends = [w.t_end for w in windows]
    assert np.allclose(np.diff(ends), 0.5)
    first_possible = 100.0 + 2.0 + max(s.processor.delay_s for s in session.streams.values())
    assert first_possible - 1e-9 <= ends[0] <= first_possible + 0.5
    for w in windows:
        assert w.modalities == ["eeg", "ecg"]
        assert w.inputs["eeg"].shape == (4, 2, 200)
        assert w.inputs["ecg"].shape == (1, 2, 200)
        assert w.inputs["eeg"].dtype == np.float32
        assert w.t_end - w.t_start == pytest.approx(2.0)
        assert set(w.wait_quality()) == {"eeg", "ecg"}
    assert [w.seq for w in windows] == list(range(len(windows)))


def test_window_content_is_the_stream_in_patches_of_one_second() -> None:
    # 200 Hz in, no filters: the resampler is the identity, so the window must equal the pushed samples / 100
    _, sources, windows = _session({"eeg": (200.0, 3)}, filters=False)
    x = np.arange(200 * 6 * 3, dtype=np.float64).reshape(-1, 3)
    stamps = 50.0 + np.arange(len(x)) / 200.0
    for i in range(0, len(x), 7):
        sources["eeg"].push(x[i:i + 7], stamps[i:i + 7])
    assert windows
    for w in windows:
        stop = int(np.searchsorted(stamps, w.t_end + 1e-9))
        expected = x[stop - 400:stop].T.reshape(3, 2, 200) / 100.0
        np.testing.assert_allclose(w.inputs["eeg"], expected, rtol=1e-6)


def test_a_silent_modality_is_left_out_after_missing_after() -> None:
    session, sources, windows = _session({"eeg": (128.0, 4), "ecg": (256.0, 2)}, missing_after=1.0)
    _feed(sources, 0.0, 5.0)
    n_both = len(windows)
    assert n_both >= 4
    assert all(w.modalities == ["eeg", "ecg"] for w in windows)
    _feed(sources, 5.0, 9.0, only={"eeg"}, seed=1)
    later = windows[n_both:]
    assert later, "EEG alone must keep producing windows"
    assert all(w.modalities == ["eeg"] for w in later)
    # a window waits for ECG at most missing_after seconds of EEG data past its end
    assert later[-1].t_end >= 9.0 - 1.0 - 0.5 - 1e-6
    assert session.missing_counts["ecg"] == len(later)
    # ECG comes back: once it has a full window again, windows carry both
    _feed(sources, 9.0, 13.0, seed=2)
    assert windows[-1].modalities == ["eeg", "ecg"]


def test_late_modality_does_not_block_the_first_window_forever() -> None:
    _, sources, windows = _session({"eeg": (128.0, 4), "ecg": (256.0, 1)})
    _feed(sources, 0.0, 4.5, only={"eeg"})
    assert windows, "EEG windows start after window + missing_after without ECG"
    assert all(w.modalities == ["eeg"] for w in windows)


def test_no_burst_of_stale_windows_after_an_outage() -> None:
    _, sources, windows = _session({"eeg": (128.0, 4), "ecg": (256.0, 1)})
    _feed(sources, 0.0, 4.0)
    before = len(windows)
    _feed(sources, 30.0, 33.0, seed=3)  # both streams were silent for 26 s
    after = windows[before:]
    # windows inside the outage hold no data from before it: none ends inside the silent stretch
    assert all(not (4.0 < w.t_end < 30.0 + 2.0) for w in after)
    assert after, "windows resume once a full window of new data exists"


def test_output_samples_a_few_microseconds_after_the_window_end_still_close_it() -> None:
    """The in-process replay flake: an output grid phase-locked to the window grid, shifted by microseconds.

    A replay stamps sample k at exactly t0 + k/fs, and the first window end is anchored on the first stamp, so the
    output sample nearest every window end sits on it; time_correction and the dejitter fit then move the stamps
    by tens of microseconds. Here every stamp after the first is 5 µs late: each window's last sample lies 5 µs
    past its end. Both modalities must be in every window (they used to be dropped as having a hole).
    """
    session, sources, windows = _session({"eeg": (500.0, 3), "ecg": (500.0, 1)}, filters=False)
    rng = np.random.default_rng(4)
    k = np.arange(500 * 8)
    stamps = 20.0 + k / 500.0 + np.where(k > 0, 5e-6, 0.0)
    for i in range(0, len(k), 10):
        for src in sources.values():
            sl = slice(i, i + 10)
            src.push(rng.normal(0, 20, (len(k[sl]), src.info.n_channels)), stamps[sl])
    assert len(windows) >= 10
    assert all(w.modalities == ["eeg", "ecg"] for w in windows), [w.modalities for w in windows]
    assert session.windows_skipped == 0
    assert session.missing_counts == {"eeg": 0, "ecg": 0}


class ShiftedSource(ManualSource):
    """A ManualSource whose stamps can be shifted by ``shift`` seconds while arrivals stay on the real schedule."""

    shift = 0.0

    def push(self, data: np.ndarray, stamps: np.ndarray) -> None:
        assert self.sink is not None
        self.sink(Chunk(data.astype(np.float32), stamps.astype(np.float64) + self.shift, received=float(stamps[-1])))


@pytest.mark.parametrize("shift", [-30.0, 1e7])
def test_a_clock_jump_re_anchors_the_stream_and_windows_go_on(shift: float) -> None:
    windows: list[Window] = []
    sources = {"eeg": ShiftedSource("eeg", 128.0, 4), "ecg": ShiftedSource("ecg", 256.0, 1)}
    streams = {m: ModalityStream(m, src, StreamProcessor(src.info.sfreq, src.info.n_channels, bandpass=None,
                                                          notch=None)) for m, src in sources.items()}
    session = Session("t", streams, window_s=2.0, hop_s=0.5, on_window=windows.append)
    session.start()
    _feed(sources, 100.0, 106.0)  # type: ignore[arg-type]
    before = len(windows)
    sources["eeg"].shift = shift  # only the EEG sender's clock jumps
    _feed(sources, 106.0, 112.0, seed=1)  # type: ignore[arg-type]
    after = windows[before:]
    # the grid goes on: every hop gets a window with both modalities, at most a couple lost around the jump
    assert len(after) >= 10
    assert all(w.modalities == ["eeg", "ecg"] for w in after[2:]), [w.modalities for w in after]
    assert np.allclose(np.diff([w.t_end for w in windows]) % 0.5, 0.0, atol=1e-6)
    assert streams["eeg"].clock.jumps == 1
    assert streams["ecg"].clock.jumps == 0
    assert streams["eeg"].clock.last_jump == pytest.approx(shift, abs=0.1)
    assert session.windows_skipped <= 2
    # the stamps the stream processor saw stayed on the engine clock
    assert abs(streams["eeg"].processor.newest_timestamp - 112.0) < 0.1


def test_after_a_very_long_outage_the_grid_skips_ahead_in_one_step() -> None:
    """Stream silent for 10^6 s (stamps and arrivals both move on): the grid jumps, it does not walk each hop."""
    session, sources, windows = _session({"eeg": (128.0, 4)}, hop=0.1, filters=False)
    _feed(sources, 0.0, 4.0)
    before = len(windows)
    _feed(sources, 1e6, 1e6 + 4.0, seed=1)
    after = windows[before:]
    assert after and all(w.t_end > 1e6 for w in after)
    assert session.windows_skipped >= (1e6 - 4.0) / 0.1 - 100  # counted as skipped, arithmetically
    assert [w.seq for w in windows] == list(range(len(windows)))
