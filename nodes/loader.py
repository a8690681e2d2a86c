"""Loader node: a HunyuanVideo folder from models/diffusers, with per-component dtypes and offloading."""

from __future__ import annotations

from ..hunyuan_core.loading.loader import parse_dtype
from ..hunyuan_core.offload.presets import default_preset, preset_plan
from ..hunyuan_core.spec import Role
from . import comfy_bridge, comfy_types

AUTO = "auto"
DTYPE_CHOICES = [AUTO, "bf16", "fp16", "fp32"]
DTYPE_TOOLTIP = "auto: {default} on a GPU, fp32 on a CPU. Lower precision halves memory."


def _dtype_input(default: str) -> tuple:
    return (DTYPE_CHOICES, {"default": AUTO, "tooltip": DTYPE_TOOLTIP.format(default=default)})


class ModelLoaderNode:
    """What every loader node declares: one model output, the same as every other node takes."""

    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = (comfy_types.MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded HunyuanVideo pipeline, for the encode, sampler and decode nodes.",)
    FUNCTION = "load"


class HunyuanDiffusersLoader(ModelLoaderNode):
    DESCRIPTION = (
        "Loads a diffusers-format HunyuanVideo folder: HunyuanVideo 1 text- or image-to-video, or HunyuanVideo 1.5 "
        "text- or image-to-video (distilled variants included); its model_index.json says which. Applies group "
        "offloading to every component (transformer, text encoders, image encoder, VAE). Changing only the "
        "offload settings reuses the loaded weights; choosing another model releases the previous one first."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (
                    comfy_bridge.model_folder_names(),
                    {"tooltip": "A HunyuanVideo folder with model_index.json under ComfyUI/models/diffusers "
                                "(e.g. hunyuanvideo-community/HunyuanVideo, HunyuanVideo-I2V, "
                                "HunyuanVideo-1.5-Diffusers-480p_t2v)."},
                ),
                **dtype_inputs(),
            },
            "optional": optional_inputs(),
        }

    @classmethod
    def IS_CHANGED(cls, model, transformer_dtype, text_encoder_dtype, vae_dtype, offload=None, speed=None,
                   loras=None):
        """Changes when the model loaded for these inputs was released (another model was loaded or
        ComfyUI unloaded models), so that ComfyUI runs the loader again instead of reusing a dead handle."""
        return times_released(comfy_bridge.resolve_model_folder(model), transformer_dtype, text_encoder_dtype,
                              vae_dtype, speed)

    def load(self, model, transformer_dtype, text_encoder_dtype, vae_dtype, offload=None, speed=None, loras=None):
        return load(comfy_bridge.resolve_model_folder(model), transformer_dtype, text_encoder_dtype, vae_dtype,
                    offload, speed, loras)


def dtype_inputs() -> dict:
    """The dtype inputs every loader node has."""
    return {
        "transformer_dtype": _dtype_input("bf16"),
        "text_encoder_dtype": _dtype_input("fp16"),
        "vae_dtype": _dtype_input("fp16"),
    }


def optional_inputs() -> dict:
    """The offload, speed and LoRA inputs every loader node has."""
    return {
        "offload": (
            comfy_types.OFFLOAD,
            {"tooltip": "Offload settings from a HunyuanVideo Offload or Offload Preset node. "
                        "Unconnected: the 'balanced' preset on a GPU, none on a CPU."},
        ),
        "speed": (
            comfy_types.SPEED,
            {"tooltip": "Speed settings from a HunyuanVideo Speed node (step cache, attention backend, "
                        "fp8 storage, compile). Unconnected: none of them."},
        ),
        "loras": (
            comfy_types.LORAS,
            {"tooltip": "LoRAs from a chain of HunyuanVideo LoRA nodes. Changing them changes the loaded "
                        "model in place (no reload). Unconnected: no LoRA."},
        ),
    }


def times_released(source, transformer_dtype: str, text_encoder_dtype: str, vae_dtype: str, speed=None) -> int:
    """For IS_CHANGED: how often the model loaded for these inputs was released."""
    return comfy_bridge.PIPELINES.times_released(source, _dtypes(transformer_dtype, text_encoder_dtype, vae_dtype),
                                                 speed)


def load(source, transformer_dtype: str, text_encoder_dtype: str, vae_dtype: str, offload=None, speed=None,
         loras=None):
    """The cached model for a folder (or a `ModelSource` of single files) with the nodes' dtype choices and the
    default preset of the device when no offload settings are connected, brought to exactly `loras`."""
    dtypes = _dtypes(transformer_dtype, text_encoder_dtype, vae_dtype)
    device = comfy_bridge.compute_device()
    plan = offload or preset_plan(default_preset(device), device, comfy_bridge.offload_device())
    return (comfy_bridge.load_model(source, dtypes, plan, speed, loras or ()),)


def _dtypes(transformer_dtype: str, text_encoder_dtype: str, vae_dtype: str) -> dict:
    """The explicitly chosen dtypes per role ('auto' leaves the choice to the core)."""
    requested = {
        Role.TRANSFORMER: transformer_dtype,
        Role.TEXT_ENCODER: text_encoder_dtype,
        Role.IMAGE_ENCODER: text_encoder_dtype,
        Role.VAE: vae_dtype,
    }
    return {role.value: parse_dtype(value) for role, value in requested.items() if value != AUTO}
