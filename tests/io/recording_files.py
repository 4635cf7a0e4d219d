"""Small recordings written by the tests themselves, in the exact on-disk formats: XDF and DREAMER.mat."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np


def _chunk(tag: int, content: bytes) -> bytes:
    """One XDF chunk: [NumLengthBytes][Length][Tag][Content], Length counting Tag and Content."""
    length = len(content) + 2
    return struct.pack("<BQH", 8, length, tag) + content


def _varlen(n: int) -> bytes:
    return struct.pack("<BI", 4, n)


def write_xdf(path: Path, streams: Sequence[dict]) -> None:
    """Write an XDF 1.0 file (FileHeader, StreamHeaders, Samples with explicit timestamps, StreamFooters).

    Each stream is a dict with name, type, sfreq, data (samples × channels float32), t0 (first timestamp),
    and optionally labels, units, types (per channel) or fmt "string" with a list of strings in data.
    """
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        data = s["data"]
        text = s.get("fmt") == "string"
        n_ch = 1 if text else data.shape[1]
        chans = ""
        if "labels" in s:
            for j in range(n_ch):
                unit = f"<unit>{escape(s['units'][j])}</unit>" if "units" in s else ""
                ctype = f"<type>{escape(s['types'][j])}</type>" if "types" in s else ""
                chans += f"<channel><label>{escape(s['labels'][j])}</label>{unit}{ctype}</channel>"
        xml = (f'<?xml version="1.0"?><info><name>{escape(s["name"])}</name><type>{escape(s["type"])}</type>'
               f"<channel_count>{n_ch}</channel_count><nominal_srate>{s['sfreq']}</nominal_srate>"
               f"<channel_format>{'string' if text else 'float32'}</channel_format>"
               f"<source_id>test-{sid}</source_id><created_at>0</created_at>"
               f"<desc><channels>{chans}</channels></desc></info>")
        out.append(_chunk(2, struct.pack("<I", sid) + xml.encode()))
    for sid, s in enumerate(streams, start=1):
        data = s["data"]
        n = len(data)
        period = 1.0 / s["sfreq"] if s["sfreq"] > 0 else 0.5
        stamps = s["t0"] + np.arange(n) * period
        for start in range(0, n, 100):  # several Samples chunks per stream, as a recorder writes them
            body = bytearray(struct.pack("<I", sid))
            stop = min(n, start + 100)
            body += _varlen(stop - start)
            for k in range(start, stop):
                body += struct.pack("<Bd", 8, stamps[k])
                if s.get("fmt") == "string":
                    encoded = data[k].encode()
                    body += _varlen(len(encoded)) + encoded
                else:
                    body += np.asarray(data[k], dtype="<f4").tobytes()
            out.append(_chunk(3, bytes(body)))
        footer = (f'<?xml version="1.0"?><info><first_timestamp>{stamps[0]}</first_timestamp>'
                  f"<last_timestamp>{stamps[-1]}</last_timestamp><sample_count>{n}</sample_count></info>")
        out.append(_chunk(6, struct.pack("<I", sid) + footer.encode()))
    path.write_bytes(b"".join(out))


DREAMER_ELECTRODES = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]


def write_dreamer(path: Path, n_subjects: int = 2, n_clips: int = 3, seed: int = 0) -> dict:
    """Write a small file with DREAMER.mat's exact structure; return the arrays {(subject, clip, part, kind)}."""
    import scipy.io

    rng = np.random.default_rng(seed)
    arrays = {}
    subjects = np.empty((1, n_subjects), dtype=object)
    for i in range(n_subjects):
        person = {"Age": str(20 + i), "Gender": "female" if i % 2 else "male"}
        for kind, fs, n_ch in (("EEG", 128, 14), ("ECG", 256, 2)):
            parts = {}
            for part in ("baseline", "stimuli"):
                cell = np.empty((n_clips, 1), dtype=object)
                for j in range(n_clips):
                    seconds = 2 + j if part == "stimuli" else 1
                    x = 4200 + 20 * rng.standard_normal((seconds * fs, n_ch)) if kind == "EEG" else \
                        1000 * rng.standard_normal((seconds * fs, n_ch))
                    cell[j, 0] = x
                    arrays[(i + 1, j + 1, part, kind.lower())] = x
                parts[part] = cell
            person[kind] = parts
        person["ScoreValence"] = rng.integers(1, 6, (n_clips, 1)).astype(float)
        person["ScoreArousal"] = rng.integers(1, 6, (n_clips, 1)).astype(float)
        person["ScoreDominance"] = rng.integers(1, 6, (n_clips, 1)).astype(float)
        subjects[0, i] = person
    electrodes = np.empty((1, 14), dtype=object)
    for j, e in enumerate(DREAMER_ELECTRODES):
        electrodes[0, j] = e
    dreamer = {"Data": subjects, "EEG_SamplingRate": 128.0, "ECG_SamplingRate": 256.0,
               "EEG_Electrodes": electrodes, "noOfSubjects": float(n_subjects),
               "noOfVideoSequences": float(n_clips), "Disclaimer": "synthetic", "Provider": "tests",
               "Version": "1.0.2", "Acknowledgement": "none"}
    scipy.io.savemat(str(path), {"DREAMER": dreamer})
    return arrays
