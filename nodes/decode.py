"""Decode node: LATENT to IMAGE frames with diffusers' VAE tiling; all videos at once and one by one."""

from __future__ import annotations

from ..hunyuan_core.runtime.vae import TilingSettings, decode
from . import comfy_bridge, comfy_types

DEFAULTS = TilingSettings()

TILING_INPUTS = {
    "spatial_tiling": ("BOOLEAN", {"default": DEFAULTS.spatial,
                                   "tooltip": "Work in overlapping tiles; off needs far more VRAM at high "
                                              "resolutions."}),
    "tile_size": ("INT", {"default": DEFAULTS.tile_size, "min": 64, "max": 4096, "step": 32,
                          "tooltip": "Tile size in pixels; smaller uses less VRAM."}),
    "tile_overlap": ("INT", {"default": DEFAULTS.tile_overlap, "min": 0, "max": 2048, "step": 8,
                             "tooltip": "Overlap between tiles in pixels, blended to hide seams."}),
    "tile_frames": ("INT", {"default": DEFAULTS.tile_frames, "min": 8, "max": 1024, "step": 4,
                            "tooltip": "Frames processed at once; fewer uses less VRAM. HunyuanVideo 1's VAE "
                                       "only (1.5's tiles space, not time)."}),
    "frame_overlap": ("INT", {"default": DEFAULTS.frame_overlap, "min": 0, "max": 512, "step": 4,
                              "tooltip": "Overlap between frame chunks, blended (HunyuanVideo 1's VAE)."}),
}
"""The tiling widgets shared by the decode and VAE encode nodes, in TilingSettings' field order."""


def tiling_settings(spatial_tiling, tile_size, tile_overlap, tile_frames, frame_overlap) -> TilingSettings:
    return TilingSettings(spatial=spatial_tiling, tile_size=tile_size, tile_overlap=tile_overlap,
                          tile_frames=tile_frames, frame_overlap=frame_overlap)


class HunyuanDiffusersDecode:
    DESCRIPTION = (
        "Decodes HunyuanVideo latents with the model's VAE, tile by tile to bound VRAM (progress per tile). "
        "'frames' holds every video one after another; 'videos' is a list with one IMAGE per video, so a save "
        "node connected to it writes each video to its own file."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("frames", "videos")
    OUTPUT_IS_LIST = (False, True)
    OUTPUT_TOOLTIPS = (
        "All frames [videos*frames, height, width, 3] in 0..1, video after video.",
        "One IMAGE [frames, height, width, 3] per video: a save node runs once per video.",
    )
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": comfy_types.VAE_MODEL_INPUT,
                "latent": ("LATENT", {"tooltip": "Latents of the model's family, e.g. from the HunyuanVideo "
                                                 "sampler."}),
                **TILING_INPUTS,
            }
        }

    def decode(self, model, latent, **tiling):
        samples = latent["samples"]
        frames = decode(model, samples, tiling_settings(**tiling), comfy_bridge.progress_bar(1))
        return (frames.flatten(0, 1), list(frames))
