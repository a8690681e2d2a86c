"""Offload preset node: a named, measured offload recipe for all components or some of them."""

from __future__ import annotations

from ..hunyuan_core.offload.config import extend_plan
from ..hunyuan_core.offload.presets import PRESETS, preset_config
from . import comfy_bridge, comfy_types
from .offload import TARGETS, OffloadSettingsNode


class HunyuanDiffusersOffloadPreset(OffloadSettingsNode):
    DESCRIPTION = (
        "A named offload recipe for the loader (see the pack's BENCHMARKS.md for what each costs). Chain "
        "with other offload nodes through 'base' to give components different settings.\n"
        + "\n".join(f"{p.name}: {p.summary}." for p in PRESETS.values())
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "preset": (
                    list(PRESETS),
                    {"default": "balanced",
                     "tooltip": " ".join(f"{p.name}: {p.summary}." for p in PRESETS.values())},
                ),
                "apply_to": (list(TARGETS), {"tooltip": "Which components this preset is for."}),
                "disk_folder": (
                    "STRING",
                    {"default": "",
                     "tooltip": "disk preset only: where the offload files go (empty: the system temp folder). "
                                "They are deleted when the model is released."},
                ),
            },
            "optional": {
                "base": comfy_types.OFFLOAD_BASE_INPUT,
            },
        }

    def configure(self, preset, apply_to, disk_folder, base=None):
        config = preset_config(preset, comfy_bridge.compute_device(), comfy_bridge.offload_device(),
                               disk_folder.strip() or None)
        return (extend_plan(base, TARGETS[apply_to], config),)
