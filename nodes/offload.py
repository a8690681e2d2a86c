"""Offload node: diffusers group-offloading settings for all components or some of them (chainable)."""

from __future__ import annotations

from ..hunyuan_core.offload.config import OffloadConfig, OffloadMode, extend_plan
from ..hunyuan_core.spec import Role
from . import comfy_bridge, comfy_types

TARGETS = {
    "all components": tuple(Role),
    "transformer": (Role.TRANSFORMER,),
    "text encoders": (Role.TEXT_ENCODER,),
    "vae": (Role.VAE,),
    "image encoder": (Role.IMAGE_ENCODER,),
}
"""What apply_to offers, by role, so one choice fits every model family (new choices only ever at the end)."""


class OffloadSettingsNode:
    """What every node producing offload settings declares alike."""

    CATEGORY = comfy_types.CATEGORY
    RETURN_TYPES = (comfy_types.OFFLOAD,)
    RETURN_NAMES = ("offload",)
    OUTPUT_TOOLTIPS = (comfy_types.OFFLOAD_OUTPUT_TOOLTIP,)
    FUNCTION = "configure"


class HunyuanDiffusersOffload(OffloadSettingsNode):
    DESCRIPTION = (
        "Group-offloading settings (diffusers' apply_group_offloading) for the loader. Weights live on the "
        "offload device (system RAM or disk) and move to the GPU group by group as they are needed. Chain "
        "nodes to give components different settings; each component always gets some setting, so nothing "
        "is left on the wrong device."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mode": (
                    [mode.value for mode in OffloadMode],
                    {"default": OffloadMode.BLOCK_LEVEL.value,
                     "tooltip": "none: keep on the GPU. block_level: move groups of transformer blocks (fast, "
                                "a few GB of VRAM). leaf_level: move every layer separately (least VRAM; needs "
                                "use_stream to be fast)."},
                ),
                "apply_to": (list(TARGETS), {"tooltip": "Which components these settings are for."}),
                "blocks_per_group": (
                    "INT",
                    {"default": 1, "min": 1, "max": 64,
                     "tooltip": "block_level only: blocks moved together. More is faster without streams but "
                                "needs more VRAM; use_stream always uses 1."},
                ),
                "use_stream": (
                    "BOOLEAN",
                    {"default": True,
                     "tooltip": "Prefetch the next group on a CUDA stream while the current one computes "
                                "(pinned RAM copy of the weights). GPU only."},
                ),
                "record_stream": (
                    "BOOLEAN",
                    {"default": False,
                     "tooltip": "With use_stream: skip a synchronisation per group; a little faster, a little "
                                "more VRAM."},
                ),
                "non_blocking": (
                    "BOOLEAN", {"default": False, "tooltip": "Asynchronous copies without streams."}
                ),
                "low_cpu_mem_usage": (
                    "BOOLEAN",
                    {"default": False,
                     "tooltip": "With use_stream: pin weights only while they move instead of keeping a pinned "
                                "copy of everything. Less system RAM, slower."},
                ),
                "disk_folder": (
                    "STRING",
                    {"default": "",
                     "tooltip": "Empty: offload to system RAM. A folder: offload to files there (least RAM, "
                                "slowest); they are deleted when the model is released."},
                ),
            },
            "optional": {
                "base": comfy_types.OFFLOAD_BASE_INPUT,
            },
        }

    def configure(self, mode, apply_to, blocks_per_group, use_stream, record_stream, non_blocking,
                  low_cpu_mem_usage, disk_folder, base=None):
        config = OffloadConfig(
            mode=mode,
            onload_device=comfy_bridge.compute_device(),
            offload_device=comfy_bridge.offload_device(),
            num_blocks_per_group=blocks_per_group,
            use_stream=use_stream,
            record_stream=record_stream,
            non_blocking=non_blocking,
            low_cpu_mem_usage=low_cpu_mem_usage,
            disk_folder=disk_folder.strip() or None,
        )
        return (extend_plan(base, TARGETS[apply_to], config),)
