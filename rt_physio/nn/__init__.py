"""Models: the CBraMod encoder, the fusion, classical and hybrid models, checkpoint loading and the model repository.

The model types a ``model.toml`` may declare are listed in :data:`rt_physio.nn.model_types.MODEL_TYPES`.
"""

from rt_physio.nn.cbramod import CBraMod
from rt_physio.nn.checkpoint import load_cbramod_checkpoint
from rt_physio.nn.fusion import FusionModel
from rt_physio.nn.masking import dual_mask, masked_mse, patch_mask
from rt_physio.nn.registry import LoadedModel, list_models, load_model, resolve_model, save_model
from rt_physio.nn.spec import ModelSpec, Preprocessing, read_model_spec

__all__ = [
    "CBraMod",
    "FusionModel",
    "LoadedModel",
    "ModelSpec",
    "Preprocessing",
    "dual_mask",
    "list_models",
    "load_cbramod_checkpoint",
    "load_model",
    "masked_mse",
    "patch_mask",
    "read_model_spec",
    "resolve_model",
    "save_model",
]
