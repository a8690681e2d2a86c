"""HunyuanVideo 1 image-to-video's Llava text encoder from ComfyUI's two files.

ComfyUI splits Llava-Llama-3 in two: the language model (`text_encoders/llava_llama3_fp16.safetensors` or
`_fp8_scaled`, the very files text-to-video uses) and the vision tower with its projector
(`clip_vision/llava_llama3_vision.safetensors`: CLIP ViT-L/336 names under `vision_model.`, which ComfyUI
recognises by its `multi_modal_projector.`). diffusers keeps both in one `LlavaForConditionalGeneration`, which the
pack loads as `LlavaModel` (without the unused head): the two files fill its `language_model.` and its
`vision_tower.`/`multi_modal_projector.` parts. Widths and depths of each part come from its file; the rest of
the config (heads, image token, feature layer) from the model folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import UserInputError
from .encoders import (KINDS, EncoderKind, assign_weights, empty_model, encoder_config, inspect_encoder,
                       read_renamed, strip_prefixes, vision_transformer_config)
from .files import FileHeader

_VISION_NAMES = strip_prefixes(("vision_model.",), repeat=False)


def _vision_name(key: str) -> str:
    return key if key.startswith("multi_modal_projector.") else "vision_tower." + _VISION_NAMES(key)


def _vision_config(shapes: dict, base: dict) -> tuple[dict, bool]:
    return vision_transformer_config(shapes, base, prefix="vision_tower.", class_token=True)


LANGUAGE = KINDS["LlamaModel"]
VISION = EncoderKind("LlavaModel", "Llava vision tower", "llava_llama3_vision.safetensors", _vision_name,
                     "multi_modal_projector.linear_1.weight",
                     ("vision_tower.visual_projection.", "vision_tower.text_model."), _vision_config,
                     folder="models/clip_vision")


def inspect_llava(text: Path, vision: Path) -> tuple[FileHeader, dict, FileHeader, dict]:
    """(header, shapes) of the language model's file, then of the vision file; refuses files that are not
    Llava's parts."""
    return (*inspect_encoder(text, LANGUAGE), *inspect_encoder(vision, VISION))


def llava_config(text_shapes: dict, vision_shapes: dict, base: dict, base_name: str) -> dict:
    text = encoder_config(LANGUAGE, text_shapes, base["text_config"], base_name)
    vision = encoder_config(VISION, vision_shapes, base["vision_config"], base_name)
    projected = vision_shapes["multi_modal_projector.linear_1.weight"]
    if tuple(projected) != (text["hidden_size"], vision["hidden_size"]):
        raise UserInputError(
            f"The Llava vision file projects {projected[1]} to {projected[0]} wide, but the language model is "
            f"{text['hidden_size']} wide: the two files belong to different models."
        )
    config = {k: v for k, v in base.items() if not k.startswith("_") and k != "architectures"}
    return {**config, "text_config": text, "vision_config": vision}


def load_llava(text_header: FileHeader, vision_header: FileHeader, config: dict, dtype: torch.dtype):
    model = empty_model("LlavaModel", config)
    text, scales = read_renamed(text_header, lambda key: "language_model." + LANGUAGE.rename(key))
    vision, vision_scales = read_renamed(vision_header, VISION.rename)
    unused = tuple("language_model." + name for name in LANGUAGE.unused) + VISION.unused
    return assign_weights(model, {**text, **vision}, {**scales, **vision_scales}, unused, dtype,
                          f"{text_header.path.name} and {vision_header.path.name} do not make a Llava text encoder")
