"""VAE tiling: one set of settings, applied the way each HunyuanVideo VAE class tiles, and its tile counts.

diffusers offers no callback inside `decode()`/`encode()`; every tile is one call of `vae.decoder`
(`vae.encoder`), so a forward hook on that module counts finished tiles against a total that mirrors the
VAE's own tiling rules (a test checks them against the real call counts for each VAE).

- HunyuanVideo 1 (`AutoencoderKLHunyuanVideo`): spatial tiles with a stride, and temporal tiles always.
- HunyuanVideo 1.5 (`AutoencoderKLHunyuanVideo15`): spatial tiles only (no temporal tiling in diffusers
  0.42.1), sized in pixels and in latents separately, with an overlap factor.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..errors import UserInputError


@dataclass(frozen=True)
class TilingSettings:
    """VAE tiling in pixels and frames (diffusers' defaults). The frame settings apply to VAEs that tile time."""

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
        """Sets the tiles through the VAE's own `enable_tiling` (`disable_tiling` without spatial tiling)."""
        tiling_of(vae).apply(vae, self)


class HunyuanVideoTiling:
    """`AutoencoderKLHunyuanVideo`: spatial tiles of a size and stride; time always in overlapping chunks."""

    @staticmethod
    def apply(vae, settings: TilingSettings) -> None:
        stride = settings.tile_size - settings.tile_overlap
        vae.enable_tiling(
            tile_sample_min_height=settings.tile_size, tile_sample_min_width=settings.tile_size,
            tile_sample_min_num_frames=settings.tile_frames, tile_sample_stride_height=stride,
            tile_sample_stride_width=stride,
            tile_sample_stride_num_frames=settings.tile_frames - settings.frame_overlap,
        )
        if not settings.spatial:
            vae.disable_tiling()  # the temporal tile sizes stay in force: diffusers always decodes framewise

    @staticmethod
    def decoder_calls(vae, latent_frames: int, latent_height: int, latent_width: int) -> int:
        ratio = vae.spatial_compression_ratio
        min_height, min_width = vae.tile_sample_min_height // ratio, vae.tile_sample_min_width // ratio
        spatially_tiled = vae.use_tiling and (latent_width > min_width or latent_height > min_height)
        spatial = (
            len(range(0, latent_height, vae.tile_sample_stride_height // ratio))
            * len(range(0, latent_width, vae.tile_sample_stride_width // ratio))
            if spatially_tiled
            else 1
        )
        min_frames = vae.tile_sample_min_num_frames // vae.temporal_compression_ratio
        if vae.use_framewise_decoding and latent_frames > min_frames:
            stride = vae.tile_sample_stride_num_frames // vae.temporal_compression_ratio
            return len(range(0, latent_frames, stride)) * spatial
        return spatial

    @staticmethod
    def encoder_calls(vae, frames: int, height: int, width: int) -> int:
        spatially_tiled = vae.use_tiling and (width > vae.tile_sample_min_width or height > vae.tile_sample_min_height)
        spatial = (
            len(range(0, height, vae.tile_sample_stride_height)) * len(range(0, width, vae.tile_sample_stride_width))
            if spatially_tiled
            else 1
        )
        if vae.use_framewise_encoding and frames > vae.tile_sample_min_num_frames:
            return len(range(0, frames, vae.tile_sample_stride_num_frames)) * spatial
        return spatial


class HunyuanVideo15Tiling:
    """`AutoencoderKLHunyuanVideo15`: spatial tiles only, each the whole video in time."""

    @staticmethod
    def apply(vae, settings: TilingSettings) -> None:
        # The sample and latent tile sizes are separate settings in diffusers 0.42.1 and must agree (setting one
        # alone gave wrongly sized output); its `x or default` also refuses an overlap of 0, so it is set directly.
        vae.enable_tiling(
            tile_sample_min_height=settings.tile_size, tile_sample_min_width=settings.tile_size,
            tile_latent_min_height=settings.tile_size // vae.spatial_compression_ratio,
            tile_latent_min_width=settings.tile_size // vae.spatial_compression_ratio,
        )
        vae.tile_overlap_factor = settings.tile_overlap / settings.tile_size
        if not settings.spatial:
            vae.disable_tiling()

    @staticmethod
    def _tiles(size: int, tile: int, factor: float, tiled: bool) -> int:
        return len(range(0, size, int(tile * (1 - factor)))) if tiled else 1

    @classmethod
    def decoder_calls(cls, vae, latent_frames: int, latent_height: int, latent_width: int) -> int:
        tiled = vae.use_tiling and (latent_width > vae.tile_latent_min_width
                                    or latent_height > vae.tile_latent_min_height)
        return (cls._tiles(latent_height, vae.tile_latent_min_height, vae.tile_overlap_factor, tiled)
                * cls._tiles(latent_width, vae.tile_latent_min_width, vae.tile_overlap_factor, tiled))

    @classmethod
    def encoder_calls(cls, vae, frames: int, height: int, width: int) -> int:
        tiled = vae.use_tiling and (width > vae.tile_sample_min_width or height > vae.tile_sample_min_height)
        return (cls._tiles(height, vae.tile_sample_min_height, vae.tile_overlap_factor, tiled)
                * cls._tiles(width, vae.tile_sample_min_width, vae.tile_overlap_factor, tiled))


TILINGS = {"AutoencoderKLHunyuanVideo": HunyuanVideoTiling, "AutoencoderKLHunyuanVideo15": HunyuanVideo15Tiling}


def tiling_of(vae):
    return TILINGS[type(vae).__name__]


def decoder_calls(vae, latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Calls of `vae.decoder` for one video of raw latents `[1, C, latent_frames, latent_height, latent_width]`."""
    return tiling_of(vae).decoder_calls(vae, latent_frames, latent_height, latent_width)


def encoder_calls(vae, frames: int, height: int, width: int) -> int:
    """Calls of `vae.encoder` for one video of pixels `[1, 3, frames, height, width]`."""
    return tiling_of(vae).encoder_calls(vae, frames, height, width)


@contextmanager
def report_calls(module: torch.nn.Module, total: int, report: Callable[[int, int], None]) -> Iterator[None]:
    """Calls `report(done, total)` after every forward of `module` while the `with` body runs."""
    done = 0

    def after_forward(*_):
        nonlocal done
        done += 1
        report(min(done, total), total)

    handle = module.register_forward_hook(after_forward)
    try:
        yield
    finally:
        handle.remove()
