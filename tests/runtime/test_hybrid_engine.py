"""The default model (a hybrid, registry-loaded) runs live on windows with and without ECG."""

from __future__ import annotations

import math
import uuid

import pytest

from rt_physio.nn import load_model
from rt_physio.nn.hybrid import HybridModel
from rt_physio.publish.schema import validate
from tests.conftest import RealTimeOutlet
from tests.sources.test_engine_sources import RT_PHYSIO, Subscriber, _finish, _mods


@pytest.mark.slow
def test_default_model_predicts_with_and_without_ecg(port: int) -> None:
    import subprocess

    assert isinstance(load_model("eegmat-fusion").module, HybridModel)
    uid = uuid.uuid4().hex[:8]
    eeg_name, ecg_name = f"rtp-heeg-{uid}", f"rtp-hecg-{uid}"
    eeg = RealTimeOutlet(eeg_name, "EEG", 14, 250.0, chunk=5).start()
    ecg = RealTimeOutlet(ecg_name, "ECG", 1, 130.0, chunk=13, seed=1).start()
    sub = Subscriber(port)
    proc = subprocess.Popen(  # no --model: the default
        [RT_PHYSIO, "run", "--eeg", f"lsl:{eeg_name}", "--ecg", f"lsl:{ecg_name}", "--hop", "1", "--publish",
         f"zmq://127.0.0.1:{port}", "--device", "cpu", "--session", "hyb", "--duration", "600",
         "--missing-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        both = ["eeg", "ecg"]
        assert sub.until(proc, lambda p: _mods(p).count(both) >= 2, timeout=180), _finish(proc)
        ecg.stop()  # the strap drops out mid-stream
        ecg.outlet = None
        mark = len(sub.preds)
        assert sub.until(proc, lambda p: _mods(p, mark).count(["eeg"]) >= 2, timeout=120), _finish(proc)
    finally:
        _, err = _finish(proc)
        eeg.stop()
        ecg.stop()
        sub.close()
    assert "Traceback" not in err
    messages = [m for m, _ in sub.preds]
    for msg in messages:
        validate(msg)
        assert msg["model"]["name"] == "eegmat-fusion" and msg["model"]["trained"] is True
    for mods in (["eeg", "ecg"], ["eeg"]):
        values = [m["outputs"]["mental_workload"] for m in messages if m["modalities"] == mods]
        assert values and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values), (mods, values)
