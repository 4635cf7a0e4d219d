"""benchmarks/gpu_train.sh in its CPU smoke mode (GPU_TRAIN_SMOKE=1): one call writes an ECG encoder, a
cross-validation fold and the summary JSON; a second call resumes (finished steps are reused, not redone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rt_physio.training.datasets.cinc2017 import read_reference

ROOT = Path(__file__).resolve().parents[2]


def _small_data(data_dir: Path, dst: Path) -> Path:
    """cinc2017 (8 N + 8 A records), the WFDB and NeuroKit files, and 3 EEGMAT subjects, as symlinks."""
    cinc = dst / "cinc2017"
    cinc.mkdir(parents=True)
    labels = read_reference(data_dir / "cinc2017")
    rows = []
    for code in ("N", "A"):
        for rec in [r for r, lab in labels.items() if lab == code][:8]:
            for ext in (".mat", ".hea"):
                (cinc / f"{rec}{ext}").symlink_to(data_dir / "cinc2017" / f"{rec}{ext}")
            rows.append(f"{rec},{code}")
    (cinc / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    for name in ("wfdb", "neurokit"):
        (dst / name).symlink_to(data_dir / name)
    eegmat = dst / "eegmat"
    eegmat.mkdir()
    for s in (0, 1, 3):
        for k in (1, 2):
            (eegmat / f"Subject{s:02d}_{k}.edf").symlink_to(data_dir / "eegmat" / f"Subject{s:02d}_{k}.edf")
    return dst


def _run(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train.sh"), str(out)], env=env, text=True,
                          capture_output=True, timeout=600, check=False)


def test_gpu_train_smoke_runs_resumes_and_writes_json(data_dir: Path, tmp_path: Path) -> None:
    data = _small_data(data_dir, tmp_path / "data")
    env = {**os.environ, "GPU_TRAIN_SMOKE": "1", "RT_PHYSIO_DATA": str(data), "RT_PHYSIO_CACHE": str(tmp_path / "c"),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    first = _run(out, env)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads((out / "gpu_train.json").read_text())
    assert summary["mode"] == "smoke" and summary["device"] == "cpu"
    assert summary["pretrain"]["exit"] == 0 and summary["pretrain"]["architecture"]["n_layer"] == 1
    final = summary["pretrain"]["final"]
    assert final["zero_loss"] > 0 and final["ratio"] == final["heldout_loss"] / final["zero_loss"]
    assert summary["crossval"]["folds_run"] == [0]
    cv = json.loads((out / "cv.json").read_text())
    fold = cv["folds"][0]
    assert fold["held_out"] == ["Subject00"] and "Subject00" not in fold["train"] + fold["selection"]
    assert cv["finetune_options"]["ecg_init"] == str(out / "ecg-encoder")
    enc_meta = json.loads((out / "ecg-encoder" / "encoder.json").read_text())
    assert enc_meta["corpus"]["eegmat"].startswith("excluded")
    # resumable: the second call reuses the encoder (finished, not rewritten) and the fold model (same weights)
    weights = (out / "ecg-encoder" / "encoder.safetensors").stat().st_mtime_ns
    second = _run(out, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (out / "ecg-encoder" / "encoder.safetensors").stat().st_mtime_ns == weights
    again = json.loads((out / "cv.json").read_text())
    assert again["folds"][0]["weights_sha256"] == fold["weights_sha256"]
