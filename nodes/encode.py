"""Prompt node: Llama + CLIP encoding of one prompt or a batch of prompts, with a negative prompt."""

from __future__ import annotations

from ..hunyuan_core.io.prompt_batch import BATCH_MODES, split_prompts
from ..hunyuan_core.runtime.encode import encode_prompts
from . import comfy_bridge, comfy_types


class HunyuanDiffusersTextEncode:
    DESCRIPTION = (
        "Encodes prompts with HunyuanVideo's Llama and CLIP text encoders. Unlike diffusers' pipeline, a "
        "separate CLIP prompt is really sent to CLIP. The negative prompt is used when the sampler's "
        "true_cfg_scale is above 1."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = (comfy_types.CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Encoded prompts for the HunyuanVideo sampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": comfy_types.MODEL_INPUT,
                "prompt": (
                    "STRING",
                    {"multiline": True, "default": "A cat walks on the grass, realistic style.",
                     "tooltip": "What the video shows. Long, descriptive prompts work best."},
                ),
                "batch_mode": (
                    list(BATCH_MODES),
                    {"tooltip": "single prompt: the whole text is one prompt. one prompt per line: each "
                                "non-empty line is its own prompt, and the sampler makes a video for each."},
                ),
                "clip_prompt": (
                    "STRING",
                    {"multiline": True, "default": "",
                     "tooltip": "Optional short prompt for CLIP (style, subject). Empty: CLIP gets the prompt. "
                                "In 'one prompt per line' mode give one line, or one line per prompt."},
                ),
                "negative_prompt": (
                    "STRING",
                    {"multiline": True, "default": "",
                     "tooltip": "What to avoid; used only when the sampler's true_cfg_scale is above 1."},
                ),
            }
        }

    def encode(self, model, prompt, batch_mode, clip_prompt, negative_prompt):
        return (
            encode_prompts(
                model,
                split_prompts(prompt, batch_mode),
                clip_prompts=split_prompts(clip_prompt, batch_mode) or None,
                negative_prompts=negative_prompt,
                on_pass=comfy_bridge.progress_bar(1),
            ),
        )
