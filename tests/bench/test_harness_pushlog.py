"""The latency reference: which push let the engine cut a window."""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.bench.harness import PushLog


@pytest.mark.parametrize("chunk", [1, 8, 32])
def test_push_time_reaching_is_the_push_of_the_first_sample_at_or_after_t(chunk: int) -> None:
    fs = 128.0
    first = np.arange(0, 2048, chunk) / fs
    log = PushLog(first, first + (chunk - 1) / fs + 0.001)  # a chunk goes out once its last sample exists
    for t in (0.4975, 0.5, 0.3, 3.0 + 0.5 / fs):
        k = int(np.ceil(t * fs - 1e-9))  # first sample stamped at or after t
        want = (k // chunk) * chunk / fs + (chunk - 1) / fs + 0.001
        assert log.push_time_reaching(t, 1 / fs) == pytest.approx(want)
    assert np.isnan(log.push_time_reaching(first[-1] + chunk / fs + 1.0, 1 / fs))  # never pushed
