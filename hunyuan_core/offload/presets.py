"""Named offload presets: the few combinations of diffusers' group-offloading options worth choosing.

Each preset is a recipe for an accelerator. On a device without streams (a CPU) the stream options are
dropped, since group offloading cannot use them there; everything else is kept. BENCHMARKS.md holds what
each costs in VRAM, host RAM and time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserInputError
from .config import OffloadConfig, OffloadMode, OffloadPlan, device_has_streams


@dataclass(frozen=True)
class OffloadPreset:
    name: str
    summary: str
    mode: OffloadMode
    use_stream: bool = False
    record_stream: bool = False
    low_cpu_mem_usage: bool = False
    to_disk: bool = False


PRESETS = {
    preset.name: preset
    for preset in (
        OffloadPreset("none", "everything stays on the GPU: fastest, needs VRAM for all weights", OffloadMode.NONE),
        OffloadPreset(
            "balanced",
            "one transformer block (one Llama layer, one VAE stage) at a time, the next one prefetched while "
            "the current one computes: close to full speed in a few GB of VRAM; pinned RAM for all weights",
            OffloadMode.BLOCK_LEVEL, use_stream=True, record_stream=True,
        ),
        OffloadPreset(
            "lowest_vram",
            "every layer moved separately, prefetched: the least VRAM; pinned RAM for all weights",
            OffloadMode.LEAF_LEVEL, use_stream=True,
        ),
        OffloadPreset(
            "low_system_ram",
            "every layer moved separately, pinned only while it moves: least VRAM and no pinned copy of the "
            "weights, slower",
            OffloadMode.LEAF_LEVEL, use_stream=True, low_cpu_mem_usage=True,
        ),
        OffloadPreset(
            "disk",
            "weights read from files as each layer runs: the least RAM and VRAM, the slowest",
            OffloadMode.LEAF_LEVEL, use_stream=True, to_disk=True,
        ),
    )
}

DEFAULT_DISK_FOLDER = Path(tempfile.gettempdir()) / "hunyuanvideo-offload"


def default_preset(onload_device: str) -> str:
    """balanced on an accelerator; none on a CPU, where there is no separate memory to save."""
    return "none" if torch.device(onload_device).type == "cpu" else "balanced"


def preset_config(name: str, onload_device: str, offload_device: str = "cpu",
                  disk_folder: str | None = None) -> OffloadConfig:
    try:
        preset = PRESETS[name]
    except KeyError:
        raise UserInputError(f"Unknown offload preset {name!r}; use one of {', '.join(PRESETS)}.") from None
    streams = preset.use_stream and device_has_streams(torch.device(onload_device).type)
    return OffloadConfig(
        mode=preset.mode,
        onload_device=onload_device,
        offload_device=offload_device,
        use_stream=streams,
        record_stream=preset.record_stream and streams,
        low_cpu_mem_usage=preset.low_cpu_mem_usage,
        disk_folder=str(disk_folder or DEFAULT_DISK_FOLDER) if preset.to_disk else None,
    )


def preset_plan(name: str, onload_device: str, offload_device: str = "cpu",
                disk_folder: str | None = None) -> OffloadPlan:
    """The preset for every component."""
    return OffloadPlan.uniform(preset_config(name, onload_device, offload_device, disk_folder))
