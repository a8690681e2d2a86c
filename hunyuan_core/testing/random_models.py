"""Random models of every family, by name, saved as diffusers folders (tokenizers and prompt template
included), so every code path runs without downloading weights; their videos are noise.

`tiny` names build in well under a second and run a whole generation in about a second on a CPU; other
scales (where a family has them) have the real widths, for benchmarks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ..loading.prompt_template import PROMPT_TEMPLATE_FILE
from ..quiet import GUIDERS, TRANSFORMERS, quiet
from . import hunyuan_video, hunyuan_video15, hunyuan_video_i2v


@dataclass(frozen=True)
class RandomModel:
    family: str  # for people: which family and variant it stands in for
    scales: tuple[str, ...]
    build: Callable[..., tuple]  # build(scale, seed, dtype) -> (diffusers pipeline, prompt template or None)


RANDOM_MODELS = {
    "hunyuan-video": RandomModel("HunyuanVideo 1 text-to-video", tuple(hunyuan_video.SCALES), hunyuan_video.build),
    "hunyuan-video-i2v": RandomModel("HunyuanVideo 1 image-to-video (HunyuanVideo-I2V, token replace)", ("tiny",),
                                     partial(hunyuan_video_i2v.build, variant="token_replace")),
    "hunyuan-video-i2v-33ch": RandomModel("HunyuanVideo 1 image-to-video (HunyuanVideo-I2V-33ch, latent concat)",
                                          ("tiny",), partial(hunyuan_video_i2v.build, variant="latent_concat")),
    "hunyuan-video-1.5": RandomModel("HunyuanVideo 1.5 text-to-video", tuple(hunyuan_video15.SCALES),
                                     partial(hunyuan_video15.build, variant="t2v")),
    "hunyuan-video-1.5-cfg-distilled": RandomModel("HunyuanVideo 1.5 text-to-video, cfg-distilled", ("tiny",),
                                                   partial(hunyuan_video15.build, variant="t2v_cfg_distilled")),
    "hunyuan-video-1.5-i2v": RandomModel("HunyuanVideo 1.5 image-to-video", ("tiny",),
                                         partial(hunyuan_video15.build, variant="i2v")),
    "hunyuan-video-1.5-i2v-step-distilled": RandomModel("HunyuanVideo 1.5 image-to-video, step-distilled", ("tiny",),
                                                        partial(hunyuan_video15.build, variant="i2v_step_distilled")),
}

TINY = {"tiny": "hunyuan-video", "tiny-i2v": "hunyuan-video-i2v", "tiny-i2v-33ch": "hunyuan-video-i2v-33ch",
        "tiny-1.5": "hunyuan-video-1.5", "tiny-1.5-cfg-distilled": "hunyuan-video-1.5-cfg-distilled",
        "tiny-1.5-i2v": "hunyuan-video-1.5-i2v", "tiny-1.5-i2v-step-distilled": "hunyuan-video-1.5-i2v-step-distilled"}
"""Names the CLI's --model accepts for a tiny random model, instead of a folder."""


def build_random_model(name: str = "hunyuan-video", scale: str = "tiny", seed: int = 0,
                       dtype: torch.dtype = torch.float32):
    """The random pipeline `name` at `scale` in memory (on the CPU) and its prompt template."""
    model = RANDOM_MODELS[name]
    if scale not in model.scales:
        raise ValueError(f"{name} has the scales {', '.join(model.scales)}, not {scale!r}.")
    with quiet(GUIDERS, TRANSFORMERS):  # "guiders are experimental"; "no torchvision, using the PIL processor"
        return model.build(scale, seed, dtype)


def save_random_model(folder: str | Path, name: str = "hunyuan-video", scale: str = "tiny", seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Saves a random model as a diffusers folder (safetensors) with its prompt template."""
    folder = Path(folder)
    pipe, template = build_random_model(name, scale, seed, dtype)
    pipe.save_pretrained(folder, safe_serialization=True)
    if template is not None:
        (folder / PROMPT_TEMPLATE_FILE).write_text(json.dumps(template, indent=2))
    return folder
