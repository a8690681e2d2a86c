"""LoRA node: a LoRA file from models/loras with a strength, chained into a list for the loader."""

from __future__ import annotations

from ..hunyuan_core.lora import LoraFile
from . import comfy_bridge, comfy_types


class HunyuanDiffusersLoRA:
    """Produces a list of LoRAs for the loader's `loras` input instead of taking and returning the model.

    Why a list: the loader's output then says everything about the model it hands out. ComfyUI re-runs a node
    only when its inputs change and keeps its outputs otherwise; a node that changed the loaded model in place
    would leave the loader's cached model carrying LoRAs after the node was removed or bypassed, and two
    branches of one graph would change each other's model. With a list, removing a LoRA node changes the
    loader's input, the loader runs, and the model cache (hunyuan_core/loading/cache.py) keeps the loaded
    weights while the LoRAs are brought to exactly the listed ones in place: unchanged LoRAs stay, a new
    strength is an adapter weight, nothing is reloaded.
    """

    DESCRIPTION = (
        "A LoRA for the HunyuanVideo transformer, from ComfyUI/models/loras. Chain several through 'loras' and "
        "connect the last to the loader's loras input. Reads Tencent's original keys, ComfyUI's lora_down/"
        "lora_up, kohya/musubi-tuner (lora_unet_…) and diffusers/peft files, for HunyuanVideo 1 and 1.5. A LoRA "
        "that fits no layer of the model is refused; keys that fit none are named in the log."
    )
    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = (comfy_types.LORAS,)
    RETURN_NAMES = ("loras",)
    OUTPUT_TOOLTIPS = ("The LoRAs so far, for the loader's loras input or another LoRA node.",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora_name": (comfy_bridge.lora_names(), {
                    "tooltip": "A .safetensors LoRA made for this model family, from ComfyUI/models/loras."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.05,
                                       "tooltip": "How strongly the LoRA changes the transformer: 1 as trained, 0 "
                                                  "off (bitwise the model without it), negative inverts it. "
                                                  "Changing it reloads nothing."}),
            },
            "optional": {
                "loras": (comfy_types.LORAS, {"tooltip": "LoRAs from another LoRA node, applied together with this "
                                                         "one. Unconnected: only this one."}),
            },
        }

    def add(self, lora_name, strength, loras=None):
        return ((*(loras or ()), LoraFile(comfy_bridge.resolve_lora(lora_name), strength)),)
