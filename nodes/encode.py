"""Prompt node: one prompt or a batch, a negative prompt, and the start image of image-to-video models."""

from __future__ import annotations

from ..hunyuan_core.io.prompt_batch import BATCH_MODES, split_prompts
from ..hunyuan_core.runtime.encode import encode_prompts
from . import comfy_bridge, comfy_types


class HunyuanDiffusersTextEncode:
    DESCRIPTION = (
        "Encodes prompts with the loaded model's text encoders (HunyuanVideo 1: Llama and CLIP, or Llava seeing "
        "the start image; 1.5: Qwen2.5-VL, and ByT5 for text in quotes). Unlike diffusers' pipeline, a separate "
        "CLIP prompt is really sent to CLIP. Image-to-video models take the start image here, one for every "
        "prompt or one per prompt. The negative prompt is used when the sampler runs classifier-free guidance."
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
                     "tooltip": "HunyuanVideo 1 only: optional short prompt for CLIP (style, subject). Empty: "
                                "CLIP gets the prompt. In 'one prompt per line' mode give one line, or one line "
                                "per prompt. HunyuanVideo 1.5 has no CLIP: text in \"quotes\" in the prompt "
                                "goes to its glyph encoder instead."},
                ),
                "negative_prompt": (
                    "STRING",
                    {"multiline": True, "default": "",
                     "tooltip": "What to avoid; used when the sampler runs classifier-free guidance "
                                "(true_cfg_scale above 1, or 0 with a HunyuanVideo 1.5 model that is not "
                                "distilled)."},
                ),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Image-to-video models: the start image (fitted to the video's "
                                               "size by scaling and centre-cropping). One image for every prompt, "
                                               "or a batch with one per prompt. Leave unconnected for "
                                               "text-to-video models."}),
            },
        }

    def encode(self, model, prompt, batch_mode, clip_prompt, negative_prompt, image=None):
        return (
            encode_prompts(
                model,
                split_prompts(prompt, batch_mode),
                clip_prompts=split_prompts(clip_prompt, batch_mode) or None,
                negative_prompts=negative_prompt,
                on_pass=comfy_bridge.progress_bar(1),
                images=image,
            ),
        )
