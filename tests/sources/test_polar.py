"""Polar H10 source: what is checked before the radio, what a machine without Bluetooth says, the link watch."""

from __future__ import annotations

import numpy as np
import pytest

from rt_physio.errors import ConfigError, SourceError
from rt_physio.sources.polar import open_polar, scan_ble
from rt_physio.sources.spec import open_source


def test_polar_is_ecg_only_and_parameters_are_checked():
    with pytest.raises(ConfigError, match="ECG chest strap"):
        open_source("polar:AA:BB:CC:DD:EE:FF", "eeg")
    with pytest.raises(ConfigError, match=r"Unknown Polar H10 parameters \['rate'\]"):
        open_polar("AA:BB:CC:DD:EE:FF", {"rate": "130"}, "ecg")
    with pytest.raises(ConfigError, match="polar-h10"):
        open_source("profile:polar-h10", "eeg")


def test_without_bluetooth_the_error_says_so():
    # This machine has no Bluetooth adapter (nor BlueZ): connecting, scanning and the profile all say so clearly.
    with pytest.raises(SourceError, match="Bluetooth LE is not available"):
        open_source("polar:AA:BB:CC:DD:EE:FF?timeout=2", "ecg")
    with pytest.raises(SourceError, match="Bluetooth LE is not available"):
        scan_ble(0.5)
    with pytest.raises(SourceError, match="Bluetooth LE is not available"):
        open_source("profile:polar-h10?timeout=1", "ecg")


def test_link_watch_drops_a_silent_link_and_backs_off_reconnections():
    """The decisions above the radio: a connected strap that sends no ECG is dropped; retries back off, capped."""
    from rt_physio.sources.link_watch import LinkWatch

    watch = LinkWatch(silence_after=5.0, first_delay=1.0, max_delay=10.0)
    assert not watch.silent(1000.0)  # nothing requested yet: never silent
    watch.streaming(100.0)
    assert not watch.silent(104.0)
    assert watch.silent(105.5)  # no first frame within 5 s of starting ECG
    assert not watch.silent(106.0)  # dropped once; silent again only after streaming is requested again
    assert [watch.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    watch.connected()
    watch.streaming(200.0)
    for t in np.arange(200.5, 230.0, 0.56):  # a frame every 0.56 s: never silent
        watch.frame(float(t))
        assert not watch.silent(float(t) + 0.5)
    assert watch.silent(236.0)  # frames stopped at ~229.7
    assert watch.drops == 2
    assert watch.next_delay() == 1.0  # the backoff restarted with the last successful connection
