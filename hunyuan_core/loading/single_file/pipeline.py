"""The weights of a `ModelSource`: single files for some components, a diffusers folder (or the shipped configs
and given tokenizer folders) for the rest. `load_pipeline` loads them as it loads a folder, so the result is the
same `LoadedPipeline`, and offloading, LoRAs and every node work unchanged.

Every file's header is read and checked, and every config worked out, before any weights are read: a wrong file
costs seconds, not the minutes of loading the others first.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ...errors import UserInputError
from ...families import FAMILIES, ModelFamily
from ...spec import ComponentSpec
from ...speed.settings import SpeedSettings
from ...speed.storage import fp8_components
from ..folder import load_component, read_model_index
from ..loader import WeightSource
from . import encoders, llava, transformer, vae
from .fp8 import check_fp8_support
from .source import ModelSource

SHIPPED_CONFIGS = Path(__file__).parent / "configs"
SKELETONS = {"HunyuanVideoPipeline": SHIPPED_CONFIGS / "hunyuan_video"}
"""Per pipeline class, a folder laid out like a diffusers model folder with the released model's configs and no
weights: what fills in for a model folder when every weight comes from a file."""
ENCODER_WIDTHS = {"HunyuanVideoTransformer3DModel": (("text_encoder", "text_embed_dim"),
                                                     ("text_encoder_2", "pooled_projection_dim")),
                  "HunyuanVideo15Transformer3DModel": (("text_encoder", "text_embed_dim"),
                                                       ("text_encoder_2", "text_embed_2_dim"),
                                                       ("image_encoder", "image_embed_dim"))}
"""Per transformer class, which encoder's output width each of its inputs takes."""


@dataclass
class PlannedFile:
    """A checked file, its config and how its weights load."""

    component: str
    path: Path
    config: dict
    load: Callable[[torch.dtype], torch.nn.Module]
    storage: str  # "bf16", "fp8", "scaled fp8", "GGUF Q4_0", ...
    fp8: frozenset = frozenset()  # the fp8 dtypes it stores

    @property
    def stored_small(self) -> bool:
        return self.storage not in ("bf16", "fp16", "fp32")


def file_source(source: ModelSource) -> WeightSource:
    """Checks every file from its header and works out its config (reading no weights); what loads each
    component then."""
    family, base = _family_and_base(source)
    planned = plan_files(source, family, base)

    def check(speed: SpeedSettings, dtypes: dict, device: torch.device) -> None:
        _check_storage(planned, family.spec, speed, dtypes, device)

    def load(component: ComponentSpec, dtype: torch.dtype | None):
        return _load(component, source, base, planned, dtype)

    return WeightSource(family, source.folder, load, check)


def _family_and_base(source: ModelSource) -> tuple[ModelFamily, Path]:
    """The model family and the folder its configs (and non-file components) come from."""
    if source.folder is not None:
        family = read_model_index(source.folder, provided=source.files)
        absent = [name for name in source.files if name not in family.spec.module_names
                  and not (name == "image_encoder" and _has_llava(family))]
        if absent:
            raise UserInputError(
                f"A {family.name} model has no {', '.join(absent)}: leave that file out, or choose a model folder of "
                "the family the file belongs to."
            )
        return family, source.folder
    file = source.transformer and transformer.inspect_transformer(source.transformer)
    if file and file.generation != transformer.V1:
        raise UserInputError(
            f"{source.transformer.name} is a HunyuanVideo 1.5 transformer: its files load with a HunyuanVideo 1.5 "
            "model folder, which gives the configs, tokenizers and scheduler (the folder's small files are enough: "
            "download it without its *.safetensors). Choose that folder as the model folder."
        )
    family = FAMILIES["HunyuanVideoPipeline"]
    missing = [name for name in family.spec.module_names if name not in source.files]
    missing += [c.name for c in family.spec.components if c.name.startswith("tokenizer")
                and c.name not in source.tokenizer_folders]
    if missing:
        raise UserInputError(
            f"Without a model folder every component must come from a file (and the tokenizers from their "
            f"folders); missing: {', '.join(missing)}. Give those, or a diffusers folder for the rest."
        )
    return family, SKELETONS[family.spec.pipeline_class]


def _base_config(base: Path, component: str) -> dict:
    path = base / component / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(
            f"{path} could not be read ({error}); the {component} config is needed to load its single file. "
            "Download the model folder's configs again."
        ) from error


Planner = Callable[[str, Path, dict, str, ModelFamily], PlannedFile]


def planner(component: ComponentSpec) -> Planner:
    """What plans a file of this component, by the class it loads as (Llava, from two files: `plan_files`)."""
    cls = component.loaded_class
    if cls in transformer.CLASSES.values():
        return _plan_transformer
    if cls in vae.NAMINGS:
        return partial(_plan_vae, vae.NAMINGS[cls])
    return partial(_plan_encoder, encoders.KINDS[cls])


def plan_files(source: ModelSource, family: ModelFamily, base: Path) -> dict[str, PlannedFile]:
    """Checks every file from its header and works out its config, reading no weights."""
    name = f"the {'model folder ' + str(base) if source.folder is not None else 'released ' + family.name}"
    files, planned = dict(source.files), {}
    if _has_llava(family):  # one component from two files: ComfyUI keeps Llava's vision tower apart
        text, vision = files.pop("text_encoder", None), files.pop("image_encoder", None)
        if (text is None) != (vision is None):
            raise UserInputError(
                f"{family.name}'s text encoder is Llava, which ComfyUI keeps in two files: give both the language "
                "model (text_encoder: llava_llama3_fp16.safetensors or llava_llama3_fp8_scaled.safetensors) and the "
                "vision tower (clip_vision: llava_llama3_vision.safetensors), or neither."
            )
        if text is not None:
            planned["text_encoder"] = _plan_llava(text, vision, _base_config(base, "text_encoder"), name)
    planned.update({component: planner(family.spec.component(component))(
                        component, path, _base_config(base, component), name, family)
                    for component, path in files.items()})
    _check_widths(family, base, planned)
    return planned


LLAVA = "LlavaModel"


def _has_llava(family: ModelFamily) -> bool:
    return any(c.loaded_class == LLAVA for c in family.spec.components)


def _plan_llava(text: Path, vision: Path, base: dict, name: str) -> PlannedFile:
    text_header, text_shapes, vision_header, vision_shapes = llava.inspect_llava(text, vision)
    config = llava.llava_config(text_shapes, vision_shapes, base, name)
    return PlannedFile("text_encoder", Path(text), config,
                       lambda dtype: llava.load_llava(text_header, vision_header, config, dtype), text_header.storage,
                       frozenset(text_header.fp8_dtypes))


def _plan_transformer(component, path, base, name, family) -> PlannedFile:
    file = transformer.inspect_transformer(path)
    config = transformer.transformer_config(file, base, name, family.name)
    return PlannedFile(component, Path(path), config, lambda dtype: transformer.load_transformer(file, config, dtype),
                       file.storage, frozenset(file.fp8_dtypes))


def _plan_vae(naming, component, path, base, name, family) -> PlannedFile:
    header, prefix, shapes = vae.inspect_vae(path, naming)
    config = vae.vae_config(naming, shapes, base, name)
    return PlannedFile(component, Path(path), config,
                       lambda dtype: vae.load_vae(naming, header, prefix, config, dtype), header.storage)


def _plan_encoder(kind, component, path, base, name, family) -> PlannedFile:
    header, shapes = encoders.inspect_encoder(path, kind)
    config = encoders.encoder_config(kind, shapes, base, name)
    return PlannedFile(component, Path(path), config, lambda dtype: encoders.load_encoder(kind, header, config, dtype),
                       header.storage, frozenset(header.fp8_dtypes))


def _check_widths(family: ModelFamily, base: Path, planned: dict[str, PlannedFile]) -> None:
    """The transformer takes the encoders' outputs; refuse widths that cannot meet."""
    transformer_class = family.spec.component("transformer").loaded_class
    for encoder, key in ENCODER_WIDTHS.get(transformer_class, ()):
        if encoder not in family.spec.module_names or (encoder not in planned and "transformer" not in planned):
            continue
        config = {name: planned[name].config if name in planned else _base_config(base, name)
                  for name in ("transformer", encoder)}
        cls = family.spec.component(encoder).loaded_class
        width = (config[encoder]["text_config"]["hidden_size"] if cls == LLAVA
                 else config[encoder][encoders.KINDS[cls].width])
        wanted = config["transformer"][key]
        if width != wanted:
            raise UserInputError(
                f"The {encoder} is {width} wide but the transformer takes {wanted}: they belong to different models. "
                "Use the text encoders of the transformer's model."
            )


def _check_storage(planned: dict[str, PlannedFile], spec, speed: SpeedSettings, dtypes: dict,
                   device: torch.device) -> None:
    """fp8 and GGUF files are already stored small: the speed settings' fp8 storage cannot apply on top, and fp8
    needs a device that can hold it."""
    requested = set(fp8_components(spec, speed.fp8))
    for name, file in planned.items():
        if file.stored_small and name in requested:
            raise UserInputError(
                f"{file.path.name} is already stored as {file.storage}; turn fp8 storage off for the {name} in the "
                "speed settings (the file keeps its own)."
            )
        if file.fp8:
            check_fp8_support(file.fp8, dtypes[name], device)


def _load(component: ComponentSpec, source: ModelSource, base: Path, planned: dict[str, PlannedFile],
          dtype: torch.dtype | None):
    if component.name in planned:
        return planned[component.name].load(dtype)
    tokenizer_folder = source.tokenizer_folders.get(component.name)
    if tokenizer_folder is not None:
        return _load_tokenizer(component, tokenizer_folder)
    return load_component(base, component, dtype)


def _load_tokenizer(component: ComponentSpec, folder: Path):
    cls = getattr(importlib.import_module(component.library), component.loaded_class)
    try:
        return cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # missing or malformed tokenizer files fail in many ways
        raise UserInputError(
            f"Could not load the {component.name} from {folder} ({error}). Give the folder holding its "
            "tokenizer files (inside ComfyUI: comfy/text_encoders/llama_tokenizer and comfy/sd1_tokenizer)."
        ) from error
