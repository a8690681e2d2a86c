"""VAE encode node: IMAGE frames to a HunyuanVideo LATENT, the start of video-to-video."""

from __future__ import annotations

from ..hunyuan_core.runtime.vae import encode_video
from . import comfy_bridge, comfy_types
from .decode import TILING_INPUTS, tiling_settings


class HunyuanDiffusersVAEEncode:
    DESCRIPTION = (
        "Encodes video frames with the model's VAE into a native LATENT of its family (tiled, with progress). "
        "Feed it to the sampler's latent input with denoise below 1 for video-to-video."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("One video's latents: HunyuanVideo 1 [1, 16, (frames-1)/4+1, height/8, width/8], 1.5 "
                       "[1, 32, (frames-1)/4+1, height/16, width/16].",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": comfy_types.VAE_MODEL_INPUT,
                "frames": ("IMAGE", {"tooltip": "The frames of one video: 4k+1 frames (e.g. 61), width and height "
                                                "multiples of 16."}),
                **TILING_INPUTS,
            }
        }

    def encode(self, model, frames, **tiling):
        latents = encode_video(model, frames.unsqueeze(0), tiling_settings(**tiling), comfy_bridge.progress_bar(1))
        return ({"samples": latents, "downscale_ratio_spacial": model.latent.spatial},)
