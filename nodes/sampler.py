"""Sampler node: video latents for every prompt (and start image) of the conditioning, with ComfyUI progress."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..hunyuan_core.errors import UserInputError
from ..hunyuan_core.families import check_size_for_some_family
from ..hunyuan_core.runtime.memory_estimate import sampling_device_bytes
from ..hunyuan_core.runtime.sampling import MAX_SEED, SamplingSettings, sample
from . import comfy_bridge, comfy_types

DEFAULTS = SamplingSettings()


class HunyuanDiffusersSampler:
    DESCRIPTION = (
        "Generates HunyuanVideo latents (HunyuanVideo 1 or 1.5, text- or image-to-video: the loaded model decides): "
        "one video per prompt and per 'videos per prompt', video k with seed seed+k, each identical to generating "
        "it alone. With an input latent and denoise below 1 it re-generates that video (video-to-video). Input "
        "and output are native ComfyUI LATENTs of the model's family. Before it runs, ComfyUI is asked to unload "
        "its own models if VRAM is short."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Video latents as ComfyUI's own nodes use them: HunyuanVideo 1 [videos, 16, (frames-1)/4+1, "
                       "height/8, width/8], 1.5 [videos, 32, (frames-1)/4+1, height/16, width/16].",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": comfy_types.MODEL_INPUT,
                "conditioning": (comfy_types.CONDITIONING,
                                 {"tooltip": "Prompts (and start images) from the HunyuanVideo text encode node."}),
                "width": ("INT", {"default": DEFAULTS.width, "min": 16, "max": 4096, "step": 16,
                                  "tooltip": "Video width in pixels, a multiple of 16."}),
                "height": ("INT", {"default": DEFAULTS.height, "min": 16, "max": 4096, "step": 16,
                                   "tooltip": "Video height in pixels, a multiple of 16."}),
                "frames": ("INT", {"default": DEFAULTS.frames, "min": 1, "max": 1025, "step": 4,
                                   "tooltip": "Number of frames, 4k+1 (e.g. 61 = 2.5 s at 24 fps, 129 = 5.4 s)."}),
                "steps": ("INT", {"default": DEFAULTS.steps, "min": 0, "max": 1000,
                                  "tooltip": "Denoising steps; 30-50 for final results (HunyuanVideo 1.5's "
                                             "step-distilled model: 8-12). 0: the model's default."}),
                "guidance_scale": ("FLOAT", {"default": DEFAULTS.guidance_scale, "min": 0.0, "max": 30.0, "step": 0.1,
                                             "tooltip": "HunyuanVideo 1 (and its HunyuanVideo-I2V): embedded "
                                                        "guidance of the distilled model (its 'CFG'), costs nothing "
                                                        "extra, 6 is the reference. Other models ignore it."}),
                "true_cfg_scale": ("FLOAT", {"default": DEFAULTS.true_cfg_scale, "min": 0.0, "max": 30.0, "step": 0.1,
                                             "tooltip": "Classifier-free guidance against the negative prompt: "
                                                        "0 = the model's own (HunyuanVideo 1: off; 1.5: its guider, "
                                                        "6, or off for distilled folders), 1 = off, above 1: that "
                                                        "scale, twice the transformer work."}),
                "batched_cfg": ("BOOLEAN", {"default": DEFAULTS.batched_cfg,
                                            "tooltip": "With true CFG: run the prompt and negative rows in one "
                                                       "transformer pass, so offloaded weights move once per step "
                                                       "instead of twice. Same result; more activation memory."}),
                "flow_shift": ("FLOAT", {"default": DEFAULTS.flow_shift, "min": 0.0, "max": 100.0, "step": 0.1,
                                         "tooltip": "Shift of the flow-matching schedule; 7 for 720p, lower "
                                                    "(e.g. 5, 1.5 at 480p) can help short or small videos. "
                                                    "0: the model folder's own."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                 "tooltip": "Seed of the first video; video k uses seed+k."}),
                "videos_per_prompt": ("INT", {"default": 1, "min": 1, "max": 64,
                                              "tooltip": "Videos for each prompt, batched together."}),
                "denoise": ("FLOAT", {"default": DEFAULTS.denoise, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "With an input latent: how much of it is re-generated (1: all, "
                                                 "as text-to-video; 0.5: keep the broad shapes and motion). "
                                                 "The sampler runs 'steps' steps of a longer schedule."}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "Optional start: a HunyuanVideo LATENT (e.g. from the VAE encode "
                                                 "node for video-to-video, or EmptyHunyuanLatentVideo). Its size "
                                                 "replaces width, height and frames; it holds 1 video or one per "
                                                 "generated video."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width, height, frames):
        try:
            check_size_for_some_family(width, height, frames)
        except UserInputError as error:
            return str(error)
        return True

    def sample(self, model, conditioning, width, height, frames, steps, guidance_scale, true_cfg_scale,
               batched_cfg, flow_shift, seed, videos_per_prompt, denoise, latent=None):
        settings = SamplingSettings(width=width, height=height, frames=frames, steps=steps,
                                    guidance_scale=guidance_scale, true_cfg_scale=true_cfg_scale,
                                    batched_cfg=batched_cfg, flow_shift=flow_shift, seed=seed,
                                    videos_per_prompt=videos_per_prompt, denoise=denoise)
        settings, init_latents = _start(model, settings, latent)
        videos = len(conditioning.prompts) * videos_per_prompt
        comfy_bridge.make_room(sampling_device_bytes(model, settings, videos, init_latents))
        progress = comfy_bridge.sampling_progress(steps, model.latent.comfy_format)
        samples = sample(model, conditioning, settings, progress, init_latents)
        logging.info("HunyuanVideo (diffusers): %s", model.last_run.describe())
        return ({"samples": samples, "downscale_ratio_spacial": model.latent.spatial},)


def _start(model, settings: SamplingSettings, latent: dict | None) -> tuple[SamplingSettings, object]:
    """The input latents, or, for an empty latent (all zeros) of another family's layout, only its size: as
    ComfyUI adapts empty latents between HunyuanVideo 1 and 1.5 (`downscale_ratio_spacial` says its scale)."""
    if latent is None:
        return settings, None
    samples = latent["samples"]
    ratio = latent.get("downscale_ratio_spacial")
    empty = isinstance(samples, torch.Tensor) and samples.ndim == 5 and not samples.any()
    if empty and ratio and samples.shape[1] != model.latent.channels:
        _, _, frames, height, width = samples.shape
        temporal = model.latent.temporal
        return replace(settings, width=width * ratio, height=height * ratio, frames=(frames - 1) * temporal + 1), None
    return settings, samples
