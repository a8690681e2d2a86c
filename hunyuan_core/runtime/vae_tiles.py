"""How many tiles diffusers' HunyuanVideo VAE will run, so tiled decoding and encoding can show progress.

diffusers offers no callback inside `decode()`/`encode()`; every tile is one call of `vae.decoder`
(`vae.encoder`), so a forward hook on that module counts finished tiles. The totals mirror the tiling
rules of `AutoencoderKLHunyuanVideo` (a test checks them against the real call counts).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def decoder_calls(vae, latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Calls of `vae.decoder` for one video of raw latents `[1, C, latent_frames, latent_height, latent_width]`."""
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


def encoder_calls(vae, frames: int, height: int, width: int) -> int:
    """Calls of `vae.encoder` for one video of pixels `[1, 3, frames, height, width]`."""
    spatially_tiled = vae.use_tiling and (width > vae.tile_sample_min_width or height > vae.tile_sample_min_height)
    spatial = (
        len(range(0, height, vae.tile_sample_stride_height)) * len(range(0, width, vae.tile_sample_stride_width))
        if spatially_tiled
        else 1
    )
    if vae.use_framewise_encoding and frames > vae.tile_sample_min_num_frames:
        return len(range(0, frames, vae.tile_sample_stride_num_frames)) * spatial
    return spatial


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
