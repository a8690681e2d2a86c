"""Proof that group offloading fires for every component.

Hooks that are present are not hooks that run: the HunyuanVideo VAE's `decode()` bypasses `forward()`,
so a plainly hooked VAE never onloads anything. `count_onloads` counts, per component, how often its
offloaded groups were really moved onto the compute device while the body of the `with` ran.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch

from .offload import offload_hooks


def hook_counts(components: Mapping[str, torch.nn.Module]) -> dict[str, int]:
    """Number of group-offloading hooks on each component."""
    return {name: len(offload_hooks(module)) for name, module in components.items()}


@contextmanager
def count_onloads(components: Mapping[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Yields a dict of onload counts per component, filled in while the `with` body runs."""
    counts = {name: 0 for name in components}
    wrapped = []
    for name, module in components.items():
        groups = {id(hook.group): hook.group for hook in offload_hooks(module)}
        for group in groups.values():
            group.onload_ = _counting(group.onload_, counts, name)
            wrapped.append(group)
    try:
        yield counts
    finally:
        for group in wrapped:
            del group.onload_  # drops the instance attribute; the class method shows through again


def _counting(onload, counts: dict[str, int], name: str):
    def onload_and_count():
        counts[name] += 1
        return onload()

    return onload_and_count
