"""A diffusers-format model folder: which family it holds, whether it is complete, and its components.

The folder is checked well enough to tell the user what is wrong with it before gigabytes are read; each
component is then loaded by its own fixed class with its own dtype, from safetensors only and never with
remote code.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Collection

import torch

from ..errors import UserInputError
from ..families import FAMILIES, ModelFamily
from ..quiet import GUIDERS, TRANSFORMERS, quiet
from ..spec import ComponentSpec


def read_model_index(folder: Path, provided: Collection[str] = ()) -> ModelFamily:
    """Checks that `folder` is a complete diffusers folder of a supported family; returns the family. Components
    named in `provided` come from elsewhere (single files): their weights need not be in the folder."""
    if not folder.is_dir():
        raise UserInputError(
            f"Model folder not found: {folder}. Put the diffusers-format HunyuanVideo folder (the one that "
            "contains model_index.json) under ComfyUI/models/diffusers/, or pass its path."
        )
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise UserInputError(
            f"{folder} has no model_index.json, so it is not a diffusers-format model folder. Use the diffusers "
            "version of HunyuanVideo (e.g. hunyuanvideo-community/HunyuanVideo), not the original checkpoint files."
        )
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{index_path} could not be read as JSON ({error}). Download the model again.") from error
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    family = FAMILIES.get(class_name)
    if family is None:
        supported = ", ".join(f"{name} ({family.name})" for name, family in FAMILIES.items())
        raise UserInputError(
            f"{folder} holds a {class_name or 'unknown'} model, but this loader runs {supported} folders. "
            "Pick a HunyuanVideo folder."
        )
    for component in family.spec.components:
        if component.name not in provided:
            _check_component(folder, index, component, family)
    return family


def _check_component(folder: Path, index: dict, component: ComponentSpec, family: ModelFamily) -> None:
    entry = index.get(component.name)
    subfolder = folder / component.name
    if not entry or not subfolder.is_dir():
        raise UserInputError(
            f"{folder} is incomplete: the {component.name} component is missing. Download the whole model folder."
        )
    declared = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
    if declared not in component.class_names:
        raise UserInputError(
            f"{folder}: {component.name} is a {declared}, expected {' or '.join(component.class_names)}. "
            f"This does not look like a {family.name} model."
        )
    if component.is_module and not any(subfolder.glob("*.safetensors")):
        raise UserInputError(
            f"{subfolder} has no .safetensors weights. This pack loads safetensors only (never pickled .bin "
            "files, which can run code); download the safetensors version of the model."
        )


def load_component(folder: Path, component: ComponentSpec, dtype: torch.dtype | None):
    cls = getattr(importlib.import_module(component.library), component.loaded_class)
    kwargs = {}
    if component.is_module:
        dtype_kwarg = {"torch_dtype": dtype} if component.library == "diffusers" else _transformers_dtype_kwarg(dtype)
        kwargs = {"use_safetensors": True, **dtype_kwarg}
    try:
        with quiet(GUIDERS, TRANSFORMERS if component.load_class else GUIDERS):
            loaded = cls.from_pretrained(folder, subfolder=component.name, **kwargs)
    except Exception as error:  # corrupt or truncated files surface as many exception types
        raise UserInputError(
            f"Could not load {component.name} from {folder / component.name}: {error}. The files may be "
            "incomplete or corrupted; download them again."
        ) from error
    if component.is_module:
        loaded.eval().requires_grad_(False)
    return loaded


def _transformers_dtype_kwarg(dtype: torch.dtype) -> dict:
    """transformers >= 4.56 takes `dtype`; older releases only know `torch_dtype`."""
    import transformers

    accepts_dtype = "dtype" in inspect.signature(transformers.PreTrainedModel.from_pretrained).parameters
    return {"dtype": dtype} if accepts_dtype else {"torch_dtype": dtype}
