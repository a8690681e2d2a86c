"""Start images of image-to-video families: checked against the family and the prompts, then fitted to the
video's size the way diffusers' pipelines fit them (scaled to cover, centre-cropped)."""

from __future__ import annotations

import torch

from ..errors import UserInputError


def check_images(family, images: torch.Tensor | None, prompts: int) -> torch.Tensor | None:
    """`images` (`[1 or P, H, W, 3]`, 0..1) as one float32 image per prompt, or None for a text-only family."""
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
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserInputError(f"Expected start images shaped [images, height, width, 3], got {shape}.")
    count, height, width, _ = images.shape
    if count not in (1, prompts):
        raise UserInputError(
            f"Give one start image for every prompt or one per prompt ({prompts}), not {count}."
        )
    if height < 16 or width < 16:
        raise UserInputError(f"The start image is {width}x{height}; use one at least 16 pixels on each side.")
    images = images[..., :3].float().clamp(0, 1)
    return images.expand(prompts, -1, -1, -1).contiguous() if count == 1 else images


def fit_images(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """`[P, H, W, 3]` images scaled to cover `width`x`height` and centre-cropped to it: `[P, 3, height, width]`."""
    pixels = images.permute(0, 3, 1, 2)
    scale = max(width / pixels.shape[3], height / pixels.shape[2])
    size = (max(height, round(pixels.shape[2] * scale)), max(width, round(pixels.shape[3] * scale)))
    pixels = torch.nn.functional.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return pixels[:, :, top:top + height, left:left + width]
