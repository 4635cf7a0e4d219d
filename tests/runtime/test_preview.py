"""The signal preview: block means of what each stream's processor wrote, bounded, valid against its schema."""

from __future__ import annotations

import numpy as np

from rt_physio.dsp import StreamProcessor
from rt_physio.publish.base import PREVIEW_SCHEMA_ID
from rt_physio.publish.schema import load_schema
from rt_physio.runtime.preview import MAX_RATE, MAX_SAMPLES, Previewer
from rt_physio.runtime.session import ModalityStream, Session
from rt_physio.sources.spec import open_source


def test_preview_is_block_means_of_new_samples_bounded_and_valid() -> None:
    import jsonschema

    source = open_source("synthetic", "eeg")  # the real board's channel names; never started: samples are pushed
    try:
        info = source.info
        proc = StreamProcessor(200.0, info.n_channels, bandpass=None, notch=None, fs_out=200.0)
        stream = ModalityStream("eeg", source, proc, spec="synthetic")
        session = Session("s", {"eeg": stream}, window_s=2.0, hop_s=1.0, on_window=lambda w: None)
        previewer = Previewer({"s": session}, lambda sid, msg: None)
        assert previewer.message("s", session) is None  # nothing written yet

        rng = np.random.default_rng(0)
        data = rng.normal(0, 10, (2000, info.n_channels)).astype(np.float32)  # 10 s at 200 Hz
        proc.push(data, 100.0 + np.arange(2000) / 200.0)
        first = previewer.message("s", session)
        assert first is not None
        eeg = first["streams"]["eeg"]
        assert eeg["sfreq"] == MAX_RATE and eeg["channels"] == list(info.channel_names)
        assert all(len(row) == MAX_SAMPLES for row in eeg["data"])  # a backlog is cut to the newest 2 s
        written, _ = proc.ring.latest(MAX_SAMPLES * 8)
        expected = np.asarray(written, dtype=np.float64).reshape(MAX_SAMPLES, 8, -1).mean(axis=1).T
        np.testing.assert_allclose(eeg["data"], np.round(expected, 2), atol=0.006)
        jsonschema.validate({"schema": PREVIEW_SCHEMA_ID, "session": "s", **first}, load_schema("preview"))

        proc.push(data[:13], 110.0 + np.arange(13) / 200.0)  # 13 new samples: one block now, 5 wait for more
        second = previewer.message("s", session)
        assert second is not None and [len(row) for row in second["streams"]["eeg"]["data"]] == [1] * info.n_channels
        proc.push(data[13:16], 110.0 + np.arange(13, 16) / 200.0)  # with the 5 waiting: one more block
        third = previewer.message("s", session)
        assert third is not None and len(third["streams"]["eeg"]["data"][0]) == 1
        assert third["streams"]["eeg"]["t_end"] > second["streams"]["eeg"]["t_end"]
        assert previewer.message("s", session) is None  # nothing new
    finally:
        source.stop()
