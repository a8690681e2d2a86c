"""Speed node: a step cache, an attention backend, fp8 storage and regional compile, for the loader."""

from __future__ import annotations

from collections.abc import Callable

from ..hunyuan_core.speed.attention import usable_backends
from ..hunyuan_core.speed.settings import ATTENTION_DEFAULT, CACHES, CacheKind, SpeedSettings
from . import comfy_types

FP8 = {"none": (), "transformer": ("transformer",), "transformer and text encoders": ("transformer", "text_encoder"),
       "all components": ("transformer", "text_encoder", "image_encoder", "vae")}
"""What fp8_storage offers, by role (new choices only ever at the end)."""


def _names(which: Callable[[CacheKind], bool], default: bool = False) -> str:
    """The caches `which` selects, for a tooltip (with their default numbers): written from `CACHES`, so the
    tooltips follow the caches' definitions."""
    return ", ".join(f"{c.name} {c.default:g}" if default else c.name for c in CACHES.values() if which(c))


class HunyuanDiffusersSpeed:
    DESCRIPTION = (
        "Speed levers for the loader, all through diffusers: a step cache (skips transformer work between "
        "steps that change little; the block-skipping ones also skip the skipped blocks' weight transfers), an "
        "attention backend, fp8 storage (half the weight memory and bytes per onload, bf16 compute) and regional "
        "torch.compile. The cache and the backend apply per run; fp8 storage and compile load the model again. "
        "Each run logs what it skipped and which backend ran.\n"
        + "\n".join(f"{c.name}: {c.parameter}; skips {c.skips}; decides {c.decides}." for c in CACHES.values())
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = (comfy_types.SPEED,)
    RETURN_NAMES = ("speed",)
    OUTPUT_TOOLTIPS = ("Speed settings for the loader's speed input.",)
    FUNCTION = "configure"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "cache": (["none", *CACHES], {"tooltip": "Step cache. " + _names(lambda c: c.skips_blocks)
                                                         + " skip whole blocks (and their transfers); mag needs "
                                                         "calibrated ratios (empty: this run calibrates and logs "
                                                         "them). See the node's description."}),
                "cache_value": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                          "tooltip": "The cache's one number: a threshold ("
                                                     + _names(lambda c: not c.counts_steps, default=True)
                                                     + ") or a step interval ("
                                                     + _names(lambda c: c.counts_steps, default=True)
                                                     + "). 0: the cache's default. Higher skips more."}),
                "mag_ratios": ("STRING", {"default": "", "multiline": False,
                                          "tooltip": "mag only: the ratios a calibrating run logged, comma "
                                                     "separated. Empty: calibrate (the run skips nothing)."}),
                "attention": (usable_backends(), {"default": ATTENTION_DEFAULT,
                                                  "tooltip": "Attention backend of diffusers' dispatcher for the "
                                                             "transformer. default: native SDPA. Others need their "
                                                             "package (the error names it)."}),
                "fp8_storage": (list(FP8), {"tooltip": "Store these components' weights in fp8 (e4m3fn), computing "
                                                      "in bf16: half the memory and transfer bytes, a small "
                                                      "quality cost. Changing it loads the model again."}),
                "compile": ("BOOLEAN", {"default": False,
                                        "tooltip": "torch.compile the transformer's repeated blocks (minutes "
                                                   "the first time). Needs block-level or no offloading of the "
                                                   "transformer; not with the mag cache."}),
            }
        }

    def configure(self, cache, cache_value, mag_ratios, attention, fp8_storage, compile):
        ratios = tuple(float(r) for r in mag_ratios.replace(",", " ").split()) if mag_ratios.strip() else None
        settings = SpeedSettings(cache=cache, cache_value=cache_value or None, mag_ratios=ratios,
                                 attention=attention, fp8=FP8[fp8_storage], compile=compile)
        settings.validate()
        return (settings,)
