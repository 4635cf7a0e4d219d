"""The model repository: one folder per model, ``models/<name>/{model.toml, weights.safetensors}``.

Models are found by folder path or by name in :func:`rt_physio.config.data_dirs` ``("models")`` (working
directory, ``$RT_PHYSIO_HOME``, source checkout, installed wheel; the first folder of that name wins). The
folder name is the model name.

``model.toml`` layout (schema ``rt_physio.model/1``)::

    schema = "rt_physio.model/1"
    name = "untrained-demo"            # must equal the folder name
    trained = false                    # false: outputs are meaningless (wiring and latency tests only)
    description = "..."                # optional

    [architecture]
    type = "fusion"                    # rt_physio.nn.fusion.FusionModel ("classical", "hybrid": see below)
    [architecture.eeg]                 # omitted when the model has no EEG encoder; CBraMod arguments
    d_model = 200
    dim_feedforward = 800
    seq_len = 30
    n_layer = 12
    nhead = 8
    [architecture.ecg]                 # same keys; omitted when the model has no ECG encoder
    [architecture.head]
    hidden = 256
    dropout = 0.1
    n_outputs = 3                      # optional; must equal len(outputs.names)

    [inputs]
    sfreq = 200.0                      # Hz, model input rate
    window_s = 5.0                     # window length; window_s * sfreq must be a multiple of 200 samples
    scale_uv = 100.0                   # the model sees microvolts / scale_uv
    [inputs.eeg]                       # one table per modality with an encoder
    channels = []                      # expected channel names, in order; empty = any montage
    [inputs.ecg]
    channels = []

    [preprocessing.eeg]                # one table per modality with an encoder
    bandpass = [0.3, 75.0]             # Hz; optional (omit for none); the engine clips the upper edge
    notch = true                       # at the engine's line frequency (50 or 60 Hz)
    [preprocessing.ecg]
    bandpass = [0.5, 45.0]
    notch = true

    [outputs]
    names = ["arousal", "valence", "dominance"]
    activation = "sigmoid"             # sigmoid (one probability per output) | softmax (over outputs) | identity
    smoothing_s = 0.0                  # optional: publish the mean over the last S s (rt_physio.nn.smoothing)

    [provenance]                       # free-form, plus the two keys below (written by save_model)
    seed = 0
    data = "none (random initialisation)"
    training_command = "python -m rt_physio.nn.demo models/untrained-demo"
    weights_dtype = "float16"          # dtype stored in weights.safetensors (loaded as float32)
    weights_sha256 = "<hex>"           # sha256 of weights.safetensors; checked on every load

``weights.safetensors`` holds the :class:`~rt_physio.nn.fusion.FusionModel` state dict (``eeg_encoder.*``,
``ecg_encoder.*``, ``head.*``).

A classical model (:class:`~rt_physio.nn.classical.ClassicalModel`: band powers, heart rate / HRV, logistic
regression) has ``type = "classical"`` and one table instead of the encoder tables::

    [architecture]
    type = "classical"
    [architecture.classical]
    eeg_channels = 20                  # features are per channel: inputs.eeg.channels must name all 20
    ecg = true
    bands = [1.0, 4.0, 8.0, 13.0, 30.0, 45.0]   # band edges in Hz: delta theta alpha beta gamma

Its ``weights.safetensors`` holds the fitted parameters as plain tensors (``lr.<set>.mean|scale|coef|intercept``,
``cal.<set>.*``, ``feature_modality``, ``calibration_fallback``). Files written before the rename say
``type = "baseline"`` and ``[architecture.baseline]``; they load unchanged
(:data:`rt_physio.nn.model_types.LEGACY_TYPES`).

A hybrid model (:class:`~rt_physio.nn.hybrid.HybridModel`: optional CBraMod encoders and/or montage-agnostic
classical features, one linear head with a Platt map per modality set) has ``type = "hybrid"``, a
``[architecture.hybrid]`` table (``features``, ``pooling``) and optional ``[architecture.eeg]`` /
``[architecture.ecg]`` encoder tables. The types and how each is parsed and built are listed in
:data:`rt_physio.nn.model_types.MODEL_TYPES`.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from rt_physio.config import data_dirs
from rt_physio.errors import ModelError
from rt_physio.nn import _toml
from rt_physio.nn.checkpoint import load_state_dict_checked, state_dict_mismatches
from rt_physio.nn.model_types import Model, model_type
from rt_physio.nn.spec import MODEL_FILE, SCHEMA, WEIGHTS_FILE, ModelSpec, parse_model_spec, read_model_spec

__all__ = ["LoadedModel", "Model", "list_models", "load_model", "resolve_model", "save_model"]

logger = logging.getLogger(__name__)
#: Marks a pre-trained encoder folder (written by ``rt-physio train pretrain``); skipped by :func:`list_models`.
ENCODER_META = "encoder.json"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference.

    Attributes
    ----------
    spec : ModelSpec
        What ``model.toml`` says.
    module : Model
        The network (a :data:`~rt_physio.nn.model_types.MODEL_TYPES` module class), float32, in eval mode, on
        the requested device.
    sha256 : str
        sha256 of the ``weights.safetensors`` bytes that were loaded (goes into every prediction message).
    """

    spec: ModelSpec
    module: Model
    sha256: str

    def activate(self, logits: Tensor) -> Tensor:
        """Turn ``(B, n_outputs)`` logits into the published values with the model's activation."""
        if self.spec.activation == "sigmoid":
            return torch.sigmoid(logits)
        if self.spec.activation == "softmax":
            return torch.softmax(logits, dim=-1)
        return logits


def resolve_model(name_or_path: str | Path) -> Path:
    """Find a model folder.

    Parameters
    ----------
    name_or_path : str | Path
        A model name, looked up in the ``models/`` folders of :func:`rt_physio.config.data_dirs`, or a path to
        a model folder (a :class:`~pathlib.Path`, or a string containing a path separator or that names an
        existing folder).

    Returns
    -------
    Path
        The resolved model folder (it exists; its contents are not checked here).

    Raises
    ------
    ModelError
        No such folder; for a name, the message lists the available models and where they were looked for.
    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.startswith(".")
    if not is_path and text:
        for root in data_dirs("models"):
            if (root / text).is_dir():
                return (root / text).resolve()
    candidate = Path(text).expanduser()
    if text and candidate.is_dir():
        return candidate.resolve()
    if is_path:
        raise ModelError(f"{candidate}: model folder not found.")
    roots = data_dirs("models")
    names = sorted({p.name for root in roots for p in root.iterdir() if (p / MODEL_FILE).is_file()})
    where = ", ".join(str(r) for r in roots) or (
        "no models/ folder exists in the working directory, $RT_PHYSIO_HOME, the source checkout or the package"
    )
    raise ModelError(
        f"Unknown model {text!r}. Available models: {', '.join(names) or 'none'} (searched: {where}). "
        "Pass a model name from that list or the path to a model folder."
    )


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder: validate ``model.toml``, check the weights' sha256, build and fill the network.

    Parameters
    ----------
    name_or_path : str | Path
        Model name or folder (see :func:`resolve_model`).
    device : str | torch.device
        Where to put the module.

    Returns
    -------
    LoadedModel
        The spec, the float32 module in eval mode, and the weights' sha256.

    Raises
    ------
    ModelError
        Unknown model, missing files, invalid ``model.toml``, weights that are corrupt, modified (sha256 differs
        from the recorded one) or do not match the architecture.
    """
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"The 'device' parameter must be a torch device such as 'cpu' or 'cuda:0', got {device!r}."
        ) from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"The 'device' parameter is {device!r} but no CUDA GPU is available to this torch build.")
    spec = read_model_spec(resolve_model(name_or_path))
    data = spec.weights_file.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != spec.weights_sha256:
        raise ModelError(
            f"{spec.weights_file}: sha256 {sha256} differs from provenance.weights_sha256 {spec.weights_sha256} in "
            f"{spec.model_file}; the weights file is corrupt or was modified. Restore it, or re-save the model with "
            "rt_physio.nn.save_model to record the new weights."
        )
    import safetensors.torch

    try:
        state = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own (Rust) error types
        raise ModelError(f"{spec.weights_file}: not a readable safetensors file ({exc}).") from exc
    module = _build(spec)
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    load_state_dict_checked(module, state, spec.weights_file, assign=True)
    module = module.to(target).eval()
    return LoadedModel(spec=spec, module=module, sha256=sha256)


def save_model(
    directory: str | Path, module: Model, spec_fields: Mapping[str, Any], dtype: torch.dtype = torch.float16
) -> str:
    """Write ``model.toml`` and ``weights.safetensors`` into ``directory`` (created if needed).

    Parameters
    ----------
    directory : str | Path
        The model folder; its name is the model name.
    module : Model
        The network; its state dict must match ``spec_fields["architecture"]``.
    spec_fields : Mapping[str, Any]
        The ``model.toml`` content (see the module docstring). ``schema`` and ``name`` may be omitted (they
        default to the current schema and the folder name); ``provenance.weights_dtype`` and
        ``provenance.weights_sha256`` are filled in.
    dtype : torch.dtype
        Floating-point dtype of the stored weights (loaded back as float32).

    Returns
    -------
    str
        sha256 of the written ``weights.safetensors``.

    Raises
    ------
    ModelError
        Invalid fields, or a module that does not match the declared architecture; nothing is written then.
    """
    import safetensors.torch

    directory = Path(directory).resolve()
    model_file = directory / MODEL_FILE
    if not dtype.is_floating_point:
        raise ValueError(f"The 'dtype' parameter must be a floating-point torch dtype, got {dtype}.")
    fields = copy.deepcopy(dict(spec_fields))
    fields.setdefault("schema", SCHEMA)
    fields.setdefault("name", directory.name)
    provenance = fields.setdefault("provenance", {})
    if not isinstance(provenance, dict):
        raise ModelError(f"{model_file}: provenance must be a table, got {type(provenance).__name__}.")
    provenance["weights_dtype"] = str(dtype).removeprefix("torch.")
    provenance["weights_sha256"] = "0" * 64  # placeholder while validating
    try:
        spec = parse_model_spec(fields, directory)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{model_file}: {exc}") from exc
    problems = state_dict_mismatches(_build(spec).state_dict(), module.state_dict())
    if problems:
        raise ModelError(f"{directory}: the module does not match the declared architecture: {problems}.")

    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in module.state_dict().items()
    }
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    sha256 = hashlib.sha256(data).hexdigest()
    provenance["weights_sha256"] = sha256
    text = _toml.dumps(fields, header=f"rt_physio model ({SCHEMA}); layout documented in rt_physio/nn/registry.py")
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / WEIGHTS_FILE, data)
    _write_atomic(model_file, text.encode("utf-8"))
    return sha256


def list_models() -> list[ModelSpec]:
    """Return the specs of every valid model folder in the search path (first of each name), sorted by name.

    Folders whose ``model.toml`` is missing or invalid are skipped with a logged warning; encoder folders
    (``encoder.json``, from ``rt-physio train pretrain``) and folders of them (``models/encoders/``) are skipped
    silently.
    """
    specs: dict[str, ModelSpec] = {}
    for root in data_dirs("models"):
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.name.startswith((".", "_")) or folder.name in specs:
                continue
            if not (folder / MODEL_FILE).is_file() and (folder / ENCODER_META).is_file():
                continue  # a pre-trained encoder (rt-physio train pretrain), not a runnable model
            if not (folder / MODEL_FILE).is_file() and any((c / ENCODER_META).is_file() for c in folder.iterdir()):
                continue  # a folder of pre-trained encoders (models/encoders/<name>/)
            try:
                specs[folder.name] = read_model_spec(folder)
            except ModelError as exc:
                logger.warning("Skipping model folder %s: %s", folder, exc)
    return [specs[name] for name in sorted(specs)]


def _build(spec: ModelSpec) -> Model:
    # Shapes only: the weights come from the file, so skip random initialisation (and leave the global RNG alone).
    kind = model_type(spec.architecture)
    with torch.device("meta"):
        module = kind.build(spec.architecture, len(spec.outputs), spec.sfreq)
    assert isinstance(module, kind.module)
    return cast(Model, module)  # every MODEL_TYPES module class is one of Model's


def _write_atomic(path: Path, data: bytes) -> None:
    # Write-then-rename: a crash never leaves a half-written file under the real name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
