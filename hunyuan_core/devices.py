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
    """Collects garbage and hands the accelerator's cached blocks back, pinned host memory included (the
    pinned copies of offloaded weights are cached by torch after they are freed). A no-op on a CPU."""
    gc.collect()
    empty_device_cache()
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if hasattr(accelerator, "empty_host_cache") and accelerator.is_available():
        accelerator.empty_host_cache()
