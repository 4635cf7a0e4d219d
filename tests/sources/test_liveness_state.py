"""The liveness state machine of one stream, driven with explicit times."""

from __future__ import annotations

import jsonschema
import pytest

from rt_physio.publish.schema import load_status_schema, validate_status
from rt_physio.sources.liveness import Liveness


def test_stalled_before_the_first_sample_then_streaming_then_stalled_then_recovered() -> None:
    live = Liveness(2.0, now=100.0)
    live.start(101.0)
    assert live.update(102.0) is None and live.state == "waiting"
    assert live.update(103.5) == ("waiting", "stalled")  # no first sample 2 s after the start
    assert live.not_streaming_for(103.5) == pytest.approx(2.5)
    live.on_samples(10, 104.0)
    assert live.update(104.0) == ("stalled", "streaming")
    assert live.recovered == 1  # stalled -> streaming counts, waiting -> streaming does not (see below)
    live.on_samples(10, 105.0)
    assert live.update(106.9) is None
    assert live.update(107.1) == ("streaming", "stalled")
    assert live.not_streaming_for(108.0) == pytest.approx(3.0)  # counted from the last sample
    report = live.report(108.0)
    assert (report.state, report.since, report.last_sample_age_s) == ("stalled", 107.1, pytest.approx(3.0))
    live.on_samples(5, 110.0)
    assert live.update(110.0) == ("stalled", "streaming")
    assert live.recovered == 2 and live.samples == 25


def test_a_first_sample_in_time_is_not_a_recovery() -> None:
    live = Liveness(2.0, now=0.0)
    live.start(0.0)
    live.on_samples(1, 0.5)
    assert live.update(0.5) == ("waiting", "streaming")
    assert live.recovered == 0


def test_lost_until_samples_come_back_and_the_rate_is_measured() -> None:
    live = Liveness(1.0, now=0.0)
    live.start(0.0)
    for k in range(1, 21):  # 250 Hz in chunks of 25 every 0.1 s
        live.on_samples(25, k * 0.1)
        live.update(k * 0.1)
    assert live.report(2.0).rate_hz == pytest.approx(250.0, rel=0.05)
    live.mark_lost("gave up", 5.0)
    assert live.update(5.0) == ("streaming", "lost")
    assert live.report(5.0).reason == "gave up"
    assert live.update(6.0) is None  # still lost: nothing new arrived
    live.on_samples(25, 7.0)
    assert live.update(7.0) == ("lost", "streaming")
    assert live.report(7.0).reason is None and live.recovered == 1


def test_stall_after_must_be_a_positive_number() -> None:
    for bad in (0, -1.0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="'stall_after'"):
            Liveness(bad, now=0.0)  # type: ignore[arg-type]


def test_status_schema_is_valid_and_strict() -> None:
    jsonschema.Draft202012Validator.check_schema(load_status_schema())
    modality = {"state": "stalled", "since": 1.0, "last_sample_age_s": None, "rate_hz": None, "nonfinite": 0,
                "gaps": 0, "reconnects": 0, "clock_jumps": 0, "recovered": 0, "source": "lsl:X"}
    good = {"schema": "rt_physio.status/1", "session": "s", "state": "degraded", "reason": "change",
            "modalities": {"ecg": modality}}
    validate_status(good)
    for bad in ({**good, "state": "on"}, {**good, "reason": "because"},
                {**good, "modalities": {"ecg": {**modality, "state": "asleep"}}},
                {**good, "modalities": {"emg": modality}},
                {**good, "modalities": {"ecg": {**modality, "extra": 1}}},
                {k: v for k, v in good.items() if k != "state"}):
        with pytest.raises(jsonschema.ValidationError):
            validate_status(bad)
