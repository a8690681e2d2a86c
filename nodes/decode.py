"""Decode node: LATENT to IMAGE frames with diffusers' VAE tiling."""

from __future__ import annotations

from ..hunyuan_core.decode import TilingSettings, decode
from . import comfy_bridge, comfy_types

DEFAULTS = TilingSettings()


class HunyuanDiffusersDecode:
    DESCRIPTION = (
        "Decodes HunyuanVideo latents with the model's VAE, tile by tile to bound VRAM. Several videos come "
        "out one after another in one IMAGE batch."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("Frames [videos*frames, height, width, 3] in 0..1, for SaveAnimatedWEBP or CreateVideo.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (comfy_types.MODEL, {"tooltip": "The model from the HunyuanVideo loader (its VAE is used)."}),
                "latent": ("LATENT", {"tooltip": "HunyuanVideo latents, e.g. from the HunyuanVideo sampler."}),
                "spatial_tiling": ("BOOLEAN", {"default": DEFAULTS.spatial,
                                               "tooltip": "Decode in overlapping tiles; off needs far more VRAM "
                                                          "at high resolutions."}),
                "tile_size": ("INT", {"default": DEFAULTS.tile_size, "min": 64, "max": 4096, "step": 32,
                                      "tooltip": "Tile size in pixels; smaller uses less VRAM."}),
                "tile_overlap": ("INT", {"default": DEFAULTS.tile_overlap, "min": 0, "max": 2048, "step": 8,
                                         "tooltip": "Overlap between tiles in pixels, blended to hide seams."}),
                "tile_frames": ("INT", {"default": DEFAULTS.tile_frames, "min": 8, "max": 1024, "step": 4,
                                        "tooltip": "Frames decoded at once; fewer uses less VRAM."}),
                "frame_overlap": ("INT", {"default": DEFAULTS.frame_overlap, "min": 0, "max": 512, "step": 4,
                                          "tooltip": "Overlap between frame chunks, blended."}),
            }
        }

    def decode(self, model, latent, spatial_tiling, tile_size, tile_overlap, tile_frames, frame_overlap):
        tiling = TilingSettings(spatial=spatial_tiling, tile_size=tile_size, tile_overlap=tile_overlap,
                                tile_frames=tile_frames, frame_overlap=frame_overlap)
        samples = latent["samples"]
        frames = decode(model, samples, tiling, comfy_bridge.progress_bar(len(samples)))
        return (frames.flatten(0, 1),)
