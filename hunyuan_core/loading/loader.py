"""Loads a model folder of any supported family, one component at a time, and applies offloading."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..devices import default_device
from ..errors import UserInputError
from ..families import ModelFamily
from ..offload.config import OffloadConfig, OffloadPlan, onload_device
from ..progress import StepCallback
from ..spec import ComponentSpec, PipelineSpec
from ..speed.attention import check_backend
from ..speed.compile import check_compile, compile_blocks
from ..speed.settings import SpeedSettings
from ..speed.storage import fp8_components, store_in_fp8
from .folder import load_component, read_model_index
from .model import LoadedPipeline
from .prompt_template import read_prompt_template
from .single_file.source import ModelSource

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UserInputError(f"Unknown dtype {name!r}; use one of {', '.join(DTYPES)}.") from None


def resolve_dtypes(
    spec: PipelineSpec, requested: Mapping[str, torch.dtype] | None, device: torch.device
) -> dict[str, torch.dtype]:
    """A dtype per torch component: requested by component name or by role (`text_encoder` for every text
    encoder, say; a component's own name wins), else the real model's default on an accelerator and float32
    on a CPU."""
    requested = dict(requested or {})
    known = {*spec.module_names, *(role.value for role in spec.roles)}
    unknown = set(requested) - known
    if unknown:
        raise UserInputError(
            f"No component or role named {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}."
        )
    resolved = {}
    for component in spec.components:
        if component.is_module:
            default = component.default_dtype if device.type != "cpu" else torch.float32
            resolved[component.name] = requested.get(component.name, requested.get(component.role.value, default))
    return resolved


@dataclass
class WeightSource:
    """Where a model's weights come from: a diffusers folder, or single files (single_file/pipeline.py)."""

    family: ModelFamily
    folder: Path | None  # the model folder, if any: its prompt template, and the loaded model's origin
    load: Callable[[ComponentSpec, torch.dtype | None], object]  # one component
    check: Callable[[SpeedSettings, dict, torch.device], None] = lambda speed, dtypes, device: None
    """Refuses what these weights cannot do with the speed settings, dtypes and device, before loading."""


def folder_source(folder: str | Path) -> WeightSource:
    folder = Path(folder).expanduser()
    return WeightSource(read_model_index(folder), folder, partial(load_component, folder))


def load_pipeline(
    folder: str | Path | ModelSource,
    dtypes: Mapping[str, torch.dtype] | None = None,
    offload: OffloadPlan | None = None,
    on_step: StepCallback | None = None,
    speed: SpeedSettings | None = None,
) -> LoadedPipeline:
    """Loads the model folder (its family from model_index.json) and applies `offload` (default: everything
    on the best device). A `ModelSource` instead of a folder loads single files (a transformer, VAE, text
    encoders) with a folder for the rest, or on their own.

    `on_step(done, total)` is called after each component and after offloading (which pins or writes
    the weights): a 13B model takes a while, and a host application wants to show that.
    """
    if isinstance(folder, ModelSource):
        from .single_file.pipeline import file_source  # it builds on this module

        source = file_source(folder)
    else:
        source = folder_source(folder)
    family = source.family
    spec = family.spec
    prompt_template = read_prompt_template(source.folder, family) if source.folder is not None else None
    if offload is None:
        offload = OffloadPlan.uniform(OffloadConfig(onload_device=str(default_device())))
    configs = offload.resolve(spec)  # before any weight is read: mistakes surface at once
    speed = speed or SpeedSettings()
    check_speed(spec, speed, configs)
    device = onload_device(configs)
    resolved = resolve_dtypes(spec, dtypes, device)
    source.check(speed, resolved, device)

    report = on_step or (lambda done, total: None)
    total = len(spec.components) + 1
    components = {}
    for done, component in enumerate(spec.components, start=1):
        components[component.name] = source.load(component, resolved.get(component.name))
        report(done, total)
    pipe = getattr(importlib.import_module("diffusers"), spec.pipeline_class)(**components)
    loaded = prepare_pipeline(pipe, family, configs, prompt_template, source.folder, speed)
    report(total, total)
    return loaded


def check_speed(spec: PipelineSpec, speed: SpeedSettings, configs: dict[str, OffloadConfig]) -> None:
    """Refuses speed settings that cannot work, before any weight is read."""
    speed.validate()
    fp8_components(spec, speed.fp8)
    check_backend(speed.attention)
    if speed.compile:
        check_compile(configs["transformer"].mode.value, speed.cache)


def prepare_pipeline(pipe, family: ModelFamily, offload: OffloadPlan | dict[str, OffloadConfig],
                     prompt_template: dict | None, folder: Path | None = None,
                     speed: SpeedSettings | None = None) -> LoadedPipeline:
    """Readies a diffusers pipeline (loaded here, or built in memory) for the pack: fp8 storage (before
    offloading, so that offloading moves fp8), `offload`, then compilation; without a `prompt_template` the
    family's default serves."""
    speed = speed or SpeedSettings()
    family.check_loaded(pipe)
    family.prepare_pipeline(pipe)
    if prompt_template is None:
        prompt_template = family.default_prompt_template(pipe)
    for name in fp8_components(family.spec, speed.fp8):
        store_in_fp8(getattr(pipe, name))
    loaded = LoadedPipeline(pipe=pipe, family=family, folder=folder, prompt_template=prompt_template, speed=speed)
    loaded.configure_offload(offload)
    if speed.compile:
        compile_blocks(pipe.transformer)
    return loaded
