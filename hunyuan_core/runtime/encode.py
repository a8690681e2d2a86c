"""Prompt (and start image) encoding for any family, into the conditioning the sampler takes.

The family decides which encoders run and what the transformer gets; this module checks the prompt lists,
reports progress per encoder pass and keeps the result on the CPU, one row per prompt.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .images import check_images
from .rows import RowTensors


@dataclass(frozen=True)
class Conditioning:
    """Encoded prompts for one model family.

    `positive` and `negative` (one row per prompt; `negative` when a negative prompt was encoded) hold the
    transformer's text inputs; `images` (image-to-video) holds each prompt's start image `[H, W, 3]`, which
    the sampler fits to the video's size and turns into the image conditioning.
    """

    family: str  # the pipeline class it was encoded for
    prompts: tuple[str, ...]
    positive: RowTensors
    negative: RowTensors | None = None
    images: tuple[torch.Tensor, ...] | None = None


def _as_list(prompts: str | Sequence[str] | None, what: str, count: int | None = None) -> list[str] | None:
    if prompts is None:
        return None
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise UserInputError(f"The {what} list is empty; give at least one prompt.")
    if not all(isinstance(p, str) for p in prompts):
        raise UserInputError(f"Every {what} must be text.")
    if count is not None and len(prompts) not in (1, count):
        raise UserInputError(f"Give one {what} or one per prompt ({count}), not {len(prompts)}.")
    if count is not None and len(prompts) == 1:
        prompts = prompts * count
    return prompts


def encode_prompts(
    model: LoadedPipeline,
    prompts: str | Sequence[str],
    clip_prompts: str | Sequence[str] | None = None,
    negative_prompts: str | Sequence[str] | None = None,
    on_pass: StepCallback | None = None,
    images: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> Conditioning:
    """Encodes prompts (and optionally a negative prompt) into CPU tensors the sampler accepts.

    `clip_prompts` go to the family's second text encoder (CLIP in HunyuanVideo 1) instead of the prompts
    (one, or one per prompt); negative prompts likewise. `images` (a batch `[N, H, W, 3]` in 0..1, or a list of
    `[H, W, 3]`) are the start images of an image-to-video family: one for every prompt or one per prompt;
    negative prompts are encoded without them (the family decides what stands in). `on_pass(done, total)` is
    called after each encoder pass: with offloading, a pass of an 8B text encoder deserves a progress bar.
    """
    family = model.family
    prompts = _as_list(prompts, "prompt")
    secondary = _as_list(clip_prompts, f"{family.secondary_prompt or 'second'} prompt", len(prompts))
    if secondary is not None and family.secondary_prompt is None:
        raise UserInputError(
            f"{family.name} has no second text encoder with a prompt of its own; leave the CLIP prompt empty."
        )
    negatives = _as_list(negative_prompts, "negative prompt", len(prompts))
    images = check_images(family, images, len(prompts))
    total = family.text_passes() * (1 if negatives is None else 2)
    with step_progress(on_pass, total, "Encoding prompts") as report:
        passes_done = itertools.count(1)

        def report_pass() -> None:
            report(next(passes_done), total)

        positive = family.encode_text(model, prompts, secondary, images, report_pass)
        negative = None if negatives is None else family.encode_text(model, negatives, None, None, report_pass)
    return Conditioning(family=family.spec.pipeline_class, prompts=tuple(prompts), positive=positive,
                        negative=negative, images=images)
