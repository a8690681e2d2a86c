"""Start images of image-to-video families: checked against the family and the prompts, and turned into
the PIL images diffusers' image processors take, so that resizing and cropping are the pipelines' own."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import UserInputError


def check_images(family, images: torch.Tensor | Sequence[torch.Tensor] | None,
                 prompts: int) -> tuple[torch.Tensor, ...] | None:
    """One `[H, W, 3]` float image per prompt from `images` (a ComfyUI IMAGE batch `[N, H, W, 3]` or a list of
    `[H, W, 3]`, N being 1 or the number of prompts), or None for a text-only family."""
    if not family.takes_image:
        if images is not None:
            raise UserInputError(
                f"{family.name} makes videos from text only; disconnect the image, or load an image-to-video model."
            )
        return None
    if images is None:
        raise UserInputError(
            f"{family.name} needs a start image: connect an IMAGE to the text encode node's image input "
            "(on the command line: --image PATH)."
        )
    images = list(images) if isinstance(images, (list, tuple)) or (
        isinstance(images, torch.Tensor) and images.ndim == 4) else [images]
    for image in images:
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[-1] not in (3, 4):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise UserInputError(f"Expected start images shaped [height, width, 3], got {shape}.")
        if image.shape[0] < 16 or image.shape[1] < 16:
            raise UserInputError(
                f"A start image is {image.shape[1]}x{image.shape[0]} pixels; use one at least 16 on each side."
            )
    if len(images) not in (1, prompts):
        raise UserInputError(f"Give one start image for every prompt or one per prompt ({prompts}), not {len(images)}.")
    images = [image[..., :3].float().clamp(0, 1).cpu() for image in images]
    return tuple(images * prompts if len(images) == 1 else images)


def to_pil(image: torch.Tensor) -> Image.Image:
    """A `[H, W, 3]` float image in 0..1 as an 8-bit RGB PIL image (what diffusers' processors resize)."""
    return Image.fromarray((image.numpy() * 255).round().astype(np.uint8), "RGB")
