"""Latents to frames with diffusers' VAE tiling, one video at a time to bound peak memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .recovery import recovering
from .vae_tiles import decoder_calls, report_calls

VAE_ADVICE = "Turn spatial tiling on, use a smaller tile_size or tile_frames, or the lowest_vram preset for the VAE."


@dataclass(frozen=True)
class TilingSettings:
    """VAE tiling in pixels and frames (diffusers' defaults). Temporal tiles are always used by diffusers."""

    spatial: bool = True
    tile_size: int = 256
    tile_overlap: int = 64
    tile_frames: int = 16
    frame_overlap: int = 4

    def validate(self) -> None:
        if self.tile_size < 64 or self.tile_size % 32:
            raise UserInputError(f"Tile size must be a multiple of 32 and at least 64 pixels, got {self.tile_size}.")
        if self.tile_overlap % 8 or not 0 <= self.tile_overlap <= self.tile_size // 2:
            raise UserInputError(
                f"Tile overlap must be a multiple of 8 from 0 to half the tile size ({self.tile_size // 2}), "
                f"got {self.tile_overlap}."
            )
        if self.tile_frames < 8 or self.tile_frames % 4:
            raise UserInputError(f"Tile frames must be a multiple of 4 and at least 8, got {self.tile_frames}.")
        if self.frame_overlap % 4 or not 0 <= self.frame_overlap <= self.tile_frames // 2:
            raise UserInputError(
                f"Frame overlap must be a multiple of 4 from 0 to half the tile frames ({self.tile_frames // 2}), "
                f"got {self.frame_overlap}."
            )

    def apply_to(self, vae) -> None:
        """Sets the tile sizes through the VAE's own `enable_tiling`; without spatial tiling it is turned
        off again, the temporal tile sizes staying in force (diffusers always decodes framewise)."""
        stride = self.tile_size - self.tile_overlap
        vae.enable_tiling(
            tile_sample_min_height=self.tile_size, tile_sample_min_width=self.tile_size,
            tile_sample_min_num_frames=self.tile_frames, tile_sample_stride_height=stride,
            tile_sample_stride_width=stride, tile_sample_stride_num_frames=self.tile_frames - self.frame_overlap,
        )
        if not self.spatial:
            vae.disable_tiling()


@torch.no_grad()
def decode(
    model: LoadedPipeline,
    latents: torch.Tensor,
    tiling: TilingSettings | None = None,
    on_tile: StepCallback | None = None,
) -> torch.Tensor:
    """Decodes raw VAE latents `[B, C, t, h, w]` to frames `[B, frames, H, W, 3]`, float32 in 0..1, on the CPU.

    Videos are decoded one at a time; `on_tile(done, total)` is called after every VAE tile.
    """
    tiling = tiling or TilingSettings()
    tiling.validate()
    vae = model.pipe.vae
    model.family.check_latents(latents)
    tiling.apply_to(vae)
    total = len(latents) * decoder_calls(vae, *latents.shape[2:])
    videos = []
    with step_progress(on_tile, total, "Decoding") as report, report_calls(vae.decoder, total, report):
        for video_latents in latents.split(1):
            with recovering(model, ("vae",), "decoding", VAE_ADVICE):
                video = vae.decode(video_latents.to(model.device, model.dtypes["vae"]), return_dict=False)[0]
            frames = model.pipe.video_processor.postprocess_video(video.float(), output_type="pt")
            videos.append(frames.permute(0, 1, 3, 4, 2).cpu())
    return torch.cat(videos)
