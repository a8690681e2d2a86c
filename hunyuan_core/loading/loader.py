"""Loads a diffusers-format HunyuanVideo folder, one component at a time.

Each component is loaded by its own class with its own dtype, from safetensors only and never with
remote code, after the folder has been checked well enough to tell the user what is wrong with it
before gigabytes are read.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Mapping

import torch

from ..devices import default_device
from ..errors import UserInputError
from ..offload.config import OffloadConfig, OffloadPlan
from ..progress import StepCallback
from ..prompt_template import read_prompt_template
from ..runtime.attention_mask import install_batch_safe_attention
from ..spec import SUPPORTED_PIPELINES, ComponentSpec, PipelineSpec
from .model import LoadedPipeline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UserInputError(f"Unknown dtype {name!r}; use one of {', '.join(DTYPES)}.") from None


def resolve_dtypes(
    spec: PipelineSpec, requested: Mapping[str, torch.dtype] | None, device: torch.device
) -> dict[str, torch.dtype]:
    """Fills in unrequested dtypes: the real model's defaults on an accelerator, float32 on a CPU."""
    requested = dict(requested or {})
    unknown = set(requested) - set(spec.module_names)
    if unknown:
        raise UserInputError(f"No component named {', '.join(sorted(unknown))}; use {', '.join(spec.module_names)}.")
    resolved = {}
    for name in spec.module_names:
        default = spec.component(name).default_dtype if device.type != "cpu" else torch.float32
        resolved[name] = requested.get(name, default)
    return resolved


def read_model_index(folder: Path) -> PipelineSpec:
    """Checks that `folder` is a complete diffusers folder of a supported pipeline; returns its spec."""
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
    spec = SUPPORTED_PIPELINES.get(class_name)
    if spec is None:
        raise UserInputError(
            f"{folder} holds a {class_name or 'unknown'} model, but this loader runs "
            f"{', '.join(SUPPORTED_PIPELINES)} (HunyuanVideo text-to-video) folders. Pick a HunyuanVideo folder."
        )
    for component in spec.components:
        _check_component(folder, index, component)
    return spec


def _check_component(folder: Path, index: dict, component: ComponentSpec) -> None:
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
            "This does not look like a HunyuanVideo text-to-video model."
        )
    if component.is_module and not any(subfolder.glob("*.safetensors")):
        raise UserInputError(
            f"{subfolder} has no .safetensors weights. This pack loads safetensors only (never pickled .bin "
            "files, which can run code); download the safetensors version of the model."
        )


def _load_component(folder: Path, component: ComponentSpec, dtype: torch.dtype | None):
    cls = getattr(importlib.import_module(component.library), component.class_names[0])
    kwargs = {}
    if component.is_module:
        dtype_kwarg = {"torch_dtype": dtype} if component.library == "diffusers" else _transformers_dtype_kwarg(dtype)
        kwargs = {"use_safetensors": True, **dtype_kwarg}
    try:
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


def load_pipeline(
    folder: str | Path,
    dtypes: Mapping[str, torch.dtype] | None = None,
    offload: OffloadPlan | None = None,
    on_step: StepCallback | None = None,
) -> LoadedPipeline:
    """Loads the HunyuanVideo folder and applies `offload` (default: everything on the best device).

    `on_step(done, total)` is called after each component and after offloading (which pins or writes
    the weights): a 13B model takes a while, and a host application wants to show that.
    """
    folder = Path(folder).expanduser()
    spec = read_model_index(folder)
    prompt_template = read_prompt_template(folder)
    if offload is None:
        offload = OffloadPlan.uniform(OffloadConfig(onload_device=str(default_device())), spec.module_names)
    offload.validate(spec)
    resolved = resolve_dtypes(spec, dtypes, offload.onload_device)

    report = on_step or (lambda done, total: None)
    total = len(spec.components) + 1
    components = {}
    for done, component in enumerate(spec.components, start=1):
        components[component.name] = _load_component(folder, component, resolved.get(component.name))
        report(done, total)
    pipe = getattr(importlib.import_module("diffusers"), spec.pipeline_class)(**components)
    loaded = prepare_pipeline(pipe, spec, offload, prompt_template, folder)
    report(total, total)
    return loaded


def prepare_pipeline(pipe, spec: PipelineSpec, offload: OffloadPlan, prompt_template: dict,
                     folder: Path | None = None) -> LoadedPipeline:
    """Readies a diffusers pipeline (loaded here, or built in memory) for the pack and applies `offload`."""
    # The HunyuanVideo transformer takes the valid text tokens to come first: padding must be on the right.
    pipe.tokenizer.padding_side = "right"
    install_batch_safe_attention(pipe.transformer)
    loaded = LoadedPipeline(pipe=pipe, spec=spec, folder=folder, prompt_template=prompt_template)
    loaded.configure_offload(offload)
    return loaded
