"""Building random modules quickly and in a chosen dtype.

Speed and memory do not depend on weight values, so the large scales are filled with plain random numbers
on all cores instead of each layer's own initialisation (minutes at 13B).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch
from accelerate import init_empty_weights


@torch.no_grad()
def _fill_fast(module: torch.nn.Module) -> torch.nn.Module:
    """Gives meta-device parameters random values: on all cores, each parameter from its own generator
    (seeded from the global one, so a seed still fixes the model)."""
    slots = [(submodule, name, parameter) for submodule in module.modules()
             for name, parameter in submodule._parameters.items() if parameter is not None]
    seeds = torch.randint(0, 2**62, (len(slots),)).tolist()

    def fill(slot, seed):
        submodule, name, parameter = slot
        data = torch.empty(parameter.shape, dtype=parameter.dtype)
        if data.ndim >= 2:
            data.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed))
        else:
            data.fill_(1.0 if name == "weight" else 0.0)
        submodule._parameters[name] = torch.nn.Parameter(data, requires_grad=False)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # normal_ releases the GIL
        list(pool.map(fill, slots, seeds))
    return module


def build_module(factory: Callable[[], torch.nn.Module], fast: bool, dtype: torch.dtype) -> torch.nn.Module:
    """Creates the module with `dtype` as the default dtype (no cast, no cast warning), in eval mode without
    gradients; `fast` fills random values instead of running each layer's initialisation."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if fast:
            with init_empty_weights(include_buffers=False):  # parameters on meta, buffers computed as usual
                module = _fill_fast(factory())
        else:
            module = factory()
    finally:
        torch.set_default_dtype(previous)
    return module.eval().requires_grad_(False)
