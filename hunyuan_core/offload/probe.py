"""Proof that group offloading fires for every component.

Hooks that are present are not hooks that run: the HunyuanVideo VAE's `decode()` bypasses `forward()`,
so a plainly hooked VAE never onloads anything. `count_onloads` counts, per component, how often its
offloaded groups were really moved onto the compute device while the body of the `with` ran;
`peak_onloaded_bytes` measures, from the same events, the most weight bytes each component had on the
compute device at once (on any device, a CPU included: it counts what the hooks moved, not what an
allocator reports).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch

from .hooks import offload_hooks


def hook_counts(components: Mapping[str, torch.nn.Module]) -> dict[str, int]:
    """Number of group-offloading hooks on each component."""
    return {name: len(offload_hooks(module)) for name, module in components.items()}


def group_bytes(group) -> int:
    """Bytes of the weights a diffusers `ModuleGroup` moves."""
    tensors = {id(t): t for m in group.modules for t in (*m.parameters(), *m.buffers())}
    tensors.update((id(t), t) for t in (*group.parameters, *group.buffers))
    return sum(t.numel() * t.element_size() for t in tensors.values())


@contextmanager
def _wrapped_groups(components: Mapping[str, torch.nn.Module], methods: tuple[str, ...], wrap) -> Iterator[None]:
    """Replaces each group's `methods` by `wrap(name, group, method_name, method)` while the body runs."""
    wrapped = []
    for name, module in components.items():
        for group in {id(hook.group): hook.group for hook in offload_hooks(module)}.values():
            for method in methods:
                setattr(group, method, wrap(name, group, method, getattr(group, method)))
            wrapped.append(group)
    try:
        yield
    finally:
        for group in wrapped:
            for method in methods:
                delattr(group, method)  # drops the instance attribute; the class method shows through


@contextmanager
def count_onloads(components: Mapping[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Yields a dict of onload counts per component, filled in while the `with` body runs."""
    counts = {name: 0 for name in components}

    def wrap(name, _group, _method_name, onload):
        def counted():
            counts[name] += 1
            return onload()

        return counted

    with _wrapped_groups(components, ("onload_",), wrap):
        yield counts


@contextmanager
def peak_onloaded_bytes(components: Mapping[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Yields a dict of the peak weight bytes each component had onloaded at once while the body ran."""
    peaks = {name: 0 for name in components}
    current = dict(peaks)
    onloaded: set[int] = set()

    def wrap(name, group, method_name, method):
        size = group_bytes(group)

        def tracked():
            result = method()
            if method_name == "onload_" and id(group) not in onloaded:
                onloaded.add(id(group))
                current[name] += size
                peaks[name] = max(peaks[name], current[name])
            elif method_name == "offload_" and id(group) in onloaded:
                onloaded.discard(id(group))
                current[name] -= size
            return result

        return tracked

    with _wrapped_groups(components, ("onload_", "offload_"), wrap):
        yield peaks


@contextmanager
def count_calls(components: Mapping[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Yields a dict of how many module calls ran inside each component while the body ran: a component
    that was never called (ByT5 for a prompt without quoted text) cannot have onloaded anything."""
    counts = {name: 0 for name in components}
    handles = []
    for name, module in components.items():
        def counted(*_, name=name):
            counts[name] += 1

        handles += [submodule.register_forward_pre_hook(counted) for submodule in module.modules()]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()
