"""The hybrid model type: montage-agnostic features, one head for every modality set, the model-type table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rt_physio.dsp.summary_features import ECG_FEATURES, EEG_FEATURES, N_FEATURES, summary_features
from rt_physio.nn import load_model, save_model
from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.hybrid import HybridModel, attention_pool, parse_hybrid_architecture, set_index
from rt_physio.nn.model_types import MODEL_TYPES, model_type


def _ecg(n: int = 1000, sfreq: float = 200.0, hr: float = 72.0) -> np.ndarray:
    t = np.arange(n) / sfreq
    beats = np.arange(0.3, n / sfreq, 60.0 / hr)
    return sum(np.exp(-((t - b) ** 2) / (2 * 0.01**2)) for b in beats)[None, :] * 10.0


def _fields(architecture: dict) -> dict:
    """model.toml fields of an untrained hybrid model for 5-s windows at 200 Hz."""
    return {
        "trained": False,
        "architecture": architecture,
        "inputs": {"sfreq": 200.0, "window_s": 5.0, "scale_uv": 100.0, "eeg": {"channels": []},
                   "ecg": {"channels": []}},
        "preprocessing": {"eeg": {"bandpass": [0.3, 75.0], "notch": True},
                          "ecg": {"bandpass": [0.5, 45.0], "notch": True}},
        "outputs": {"names": ["mental_workload"], "activation": "sigmoid"},
        "provenance": {"seed": 0},
    }


def test_features_have_one_length_for_any_montage() -> None:
    rng = np.random.default_rng(0)
    f14, p14 = summary_features(rng.normal(size=(14, 5, 200)), _ecg())
    f20, p20 = summary_features(rng.normal(size=(20, 1000)), None)
    assert f14.shape == f20.shape == (N_FEATURES,)
    assert p14.tolist() == [1.0, 1.0] and p20.tolist() == [1.0, 0.0]
    hr = f14[len(EEG_FEATURES) + ECG_FEATURES.index("hr_bpm")]
    assert abs(hr - 72.0) < 2.0
    assert not f20[len(EEG_FEATURES):].any()  # absent ECG block is zeros
    flat, p = summary_features(np.zeros((4, 1000)), None)
    assert p.tolist() == [0.0, 0.0] and not flat.any()


def test_model_type_table_builds_every_type() -> None:
    assert {"fusion", "classical", "hybrid"} <= set(MODEL_TYPES)
    arch = {"type": "hybrid", "hybrid": {"features": True}}
    assert model_type(arch).parse(arch, 1).modalities == ("eeg", "ecg")
    with pytest.raises(ValueError, match=r"architecture\.type must be one of"):
        model_type({"type": "nope"})
    with pytest.raises(ValueError, match="pooling"):
        parse_hybrid_architecture({"type": "hybrid", "hybrid": {"pooling": "max"}}, 1)


def test_set_index_and_a_row_without_modalities_is_logit_zero() -> None:
    flags = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert set_index(flags).tolist() == [0, 1, 2, -1]
    model = HybridModel(None, None, features=True)
    torch.nn.init.normal_(model.lr.coef)
    out = model.classify(torch.randn(4, model.n_features), flags)
    assert out[3].item() == 0.0 and (out[:3] != 0).all()


def test_save_and_load_a_hybrid_with_encoders(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = {"d_model": 200, "seq_len": 30, "nhead": 8, "n_layer": 1, "dim_feedforward": 32}
    model = HybridModel(CBraMod(**enc), None, features=True, pooling="mean_sd")
    fields = _fields({"type": "hybrid", "hybrid": {"features": True, "pooling": "mean_sd"}, "eeg": enc})
    save_model(tmp_path / "hyb", model, fields, dtype=torch.float32)
    loaded = load_model(tmp_path / "hyb")
    assert isinstance(loaded.module, HybridModel) and loaded.spec.modalities == ("eeg", "ecg")
    eeg = torch.randn(2, 14, 5, 200)
    feats, present = loaded.module.features(eeg, torch.from_numpy(np.stack([_ecg()] * 2)[:, :, None, :]
                                                                  .reshape(2, 1, 5, 200)).float())
    assert feats.shape == (2, 400 + N_FEATURES) and present.tolist() == [[1.0, 1.0]] * 2
    only_eeg, p = loaded.module.features(eeg, None)
    assert p.tolist() == [[1.0, 0.0]] * 2
    assert not only_eeg[:, 400 + len(EEG_FEATURES):].any()
    torch.testing.assert_close(only_eeg[:, :400], feats[:, :400])


def test_attention_pooling_is_the_mean_at_zero_and_follows_its_query() -> None:
    torch.manual_seed(0)
    emb = torch.randn(3, 4, 5, 200)
    torch.testing.assert_close(attention_pool(emb, torch.zeros(200)), emb.mean(dim=(1, 2)))
    direction = torch.zeros(200)
    direction[7] = 1.0
    emb[:, 2, 3] += 20.0 * direction  # one patch of one channel stands out along the query
    pooled = attention_pool(emb, 10.0 * direction)
    torch.testing.assert_close(pooled, emb[:, 2, 3], atol=0.5, rtol=0.0)


def test_save_and_load_a_hybrid_with_attention_queries(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = {"d_model": 200, "seq_len": 30, "nhead": 8, "n_layer": 1, "dim_feedforward": 32}
    model = HybridModel(CBraMod(**enc), CBraMod(**enc), features=False, pooling="attention").eval()
    assert model.n_features == 400
    with torch.no_grad():
        model.eeg_query.normal_()
        model.ecg_query.normal_()
    fields = _fields({"type": "hybrid", "hybrid": {"features": False, "pooling": "attention"}, "eeg": enc, "ecg": enc})
    save_model(tmp_path / "attn", model, fields, dtype=torch.float32)
    loaded = load_model(tmp_path / "attn")
    assert isinstance(loaded.module, HybridModel) and loaded.module.pooling == "attention"
    torch.testing.assert_close(loaded.module.eeg_query, model.eeg_query)
    eeg, ecg = torch.randn(2, 14, 5, 200), torch.randn(2, 1, 5, 200)
    feats, _ = loaded.module.features(eeg, ecg)
    ref, _ = model.features(eeg, ecg)
    torch.testing.assert_close(feats, ref)
    mean_model = HybridModel(model.eeg_encoder, None, features=False, pooling="mean")
    assert not torch.allclose(feats[:, :200], mean_model.features(eeg, None)[0])  # the query changes the pooling
