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
            raise UserInputError(
                f"Expected start images shaped [images, height, width, 3] or [height, width, 3], got {shape}."
            )
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


def fit_images(model, images: Sequence[torch.Tensor], width: int, height: int) -> list[Image.Image]:
    """Each start image scaled to cover the video and centre-cropped to it, by the pipeline's own image
    processor (HunyuanVideo 1.5's pipeline does exactly this; for HunyuanVideo 1 it matches Tencent's code and
    ComfyUI, where diffusers' pipeline would stretch the image)."""
    return [model.pipe.video_processor.resize(to_pil(image), height, width, resize_mode="crop") for image in images]


@torch.no_grad()
def image_latents(model, pictures: Sequence[Image.Image]) -> torch.Tensor:
    """The fitted start images encoded by the VAE (the distribution's mode, untiled, as diffusers' pipelines
    encode them): `[P, C, 1, h, w]` float32 latents in the sampler's scaled space, on the compute device."""
    from .recovery import recovering

    pipe, vae = model.pipe, model.pipe.vae
    vae.disable_tiling()
    latents = []
    for picture in pictures:  # one at a time: the 1.5 VAE cannot encode batches (diffusers 0.42.1)
        pixels = pipe.video_processor.preprocess(picture, picture.height, picture.width)  # [1, 3, H, W], -1..1
        with recovering(model, ("vae",), "encoding the start image",
                        "Use the lowest_vram offload preset for the VAE, or a smaller size."):
            posterior = vae.encode(pixels.unsqueeze(2).to(model.device, vae.dtype)).latent_dist
        latents.append(posterior.mode().float() * vae.config.scaling_factor)
    return torch.cat(latents)
