"""The VAE passes: latents to frames (decode) and frames to latents (encode, for video-to-video).

Both run one video at a time (bounded memory; the 1.5 VAE cannot take batches in diffusers 0.42.1) with
diffusers' own tiling, report progress per tile and rebuild the VAE's offload hooks after a failure.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .recovery import recovering
from .vae_tiles import TilingSettings, decoder_calls, encoder_calls, report_calls

VAE_ADVICE = "Turn spatial tiling on, use a smaller tile_size or tile_frames, or the lowest_vram preset for the VAE."


def _per_video(model: LoadedPipeline, videos: Iterable[torch.Tensor], tile_module: torch.nn.Module, total: int,
               on_tile: StepCallback | None, task: str, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`run` on each video (already on the compute device, in the VAE's dtype), with tile progress; CPU results."""
    results = []
    with step_progress(on_tile, total, task.capitalize()) as report, report_calls(tile_module, total, report):
        for video in videos:
            with recovering(model, ("vae",), task, VAE_ADVICE):
                results.append(run(video.to(model.device, model.dtypes["vae"])).cpu())
    return torch.cat(results)


@torch.no_grad()
def decode(model: LoadedPipeline, latents: torch.Tensor, tiling: TilingSettings | None = None,
           on_tile: StepCallback | None = None) -> torch.Tensor:
    """Decodes raw VAE latents `[B, C, t, h, w]` to frames `[B, frames, H, W, 3]`, float32 in 0..1, on the CPU.

    `on_tile(done, total)` is called after every VAE tile.
    """
    tiling = tiling or TilingSettings()
    tiling.validate()
    model.family.check_latents(latents)
    pipe, vae = model.pipe, model.pipe.vae
    tiling.apply_to(vae)

    def run(video_latents: torch.Tensor) -> torch.Tensor:
        video = vae.decode(video_latents, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video.float(), output_type="pt").permute(0, 1, 3, 4, 2)

    total = len(latents) * decoder_calls(vae, *latents.shape[2:])
    return _per_video(model, latents.split(1), vae.decoder, total, on_tile, "decoding", run)


def check_frames(model: LoadedPipeline, frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise UserInputError(f"Expected video frames shaped [videos, frames, height, width, 3], got {shape}.")
    _, count, height, width, _ = frames.shape
    model.family.check_video_size(width, height, count)


@torch.no_grad()
def encode_video(model: LoadedPipeline, frames: torch.Tensor, tiling: TilingSettings | None = None,
                 on_tile: StepCallback | None = None) -> torch.Tensor:
    """Encodes frames `[B, T, H, W, 3]` in 0..1 to raw VAE latents `[B, C, (T-1)/4+1, H/s, W/s]` on the CPU.

    The latent distribution's mode is used, so the same frames always give the same latents.
    """
    check_frames(model, frames)
    tiling = tiling or TilingSettings()
    tiling.validate()
    pipe, vae = model.pipe, model.pipe.vae
    tiling.apply_to(vae)
    pixels = (pipe.video_processor.normalize(video.permute(0, 4, 1, 2, 3)) for video in frames.split(1))

    def run(video: torch.Tensor) -> torch.Tensor:
        return vae.encode(video).latent_dist.mode().float()

    total = len(frames) * encoder_calls(vae, *frames.shape[1:4])
    return _per_video(model, pixels, vae.encoder, total, on_tile, "encoding video frames", run)
