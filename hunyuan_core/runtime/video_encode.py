"""Frames to raw VAE latents (for video-to-video), with the same VAE tiling as decoding."""

from __future__ import annotations

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .decode import VAE_ADVICE, TilingSettings
from .recovery import recovering
from .vae_tiles import encoder_calls, report_calls


def check_frames(model: LoadedPipeline, frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise UserInputError(f"Expected video frames shaped [videos, frames, height, width, 3], got {shape}.")
    _, count, height, width, _ = frames.shape
    model.family.check_video_size(width, height, count)


@torch.no_grad()
def encode_video(
    model: LoadedPipeline,
    frames: torch.Tensor,
    tiling: TilingSettings | None = None,
    on_tile: StepCallback | None = None,
) -> torch.Tensor:
    """Encodes frames `[B, T, H, W, 3]` in 0..1 to raw VAE latents `[B, C, (T-1)/4+1, H/s, W/s]` on the CPU.

    The latent distribution's mode is used, so the same frames always give the same latents.
    """
    check_frames(model, frames)
    tiling = tiling or TilingSettings()
    tiling.validate()
    vae = model.pipe.vae
    tiling.apply_to(vae)
    total = len(frames) * encoder_calls(vae, *frames.shape[1:4])
    latents = []
    with step_progress(on_tile, total, "Encoding") as report, report_calls(vae.encoder, total, report):
        for video in frames.split(1):
            pixels = model.pipe.video_processor.normalize(video.permute(0, 4, 1, 2, 3))  # [1, 3, T, H, W], -1..1
            with recovering(model, ("vae",), "encoding video frames", VAE_ADVICE):
                posterior = vae.encode(pixels.to(model.device, model.dtypes["vae"])).latent_dist
            latents.append(posterior.mode().float().cpu())
    return torch.cat(latents)
