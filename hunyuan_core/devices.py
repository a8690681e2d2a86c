"""The compute device when the caller names none, and freeing cached accelerator memory: diffusers'
own device helpers, so CUDA, XPU, MPS and the rest are handled alike."""

from __future__ import annotations

import gc

import torch
from diffusers.utils.torch_utils import empty_device_cache, get_device


def default_device() -> torch.device:
    """The accelerator torch finds first, else the CPU."""
    return torch.device(get_device())


def free_cached_memory() -> None:
    """Collects garbage and hands the accelerator's cached blocks back (a no-op on a CPU)."""
    gc.collect()
    empty_device_cache()
