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
    """Replaces each group's `methods` by `wrap(name, group, method_name, method)` while the body runs; probes
    nest (each restores what it found)."""
    wrapped = []
    for name, module in components.items():
        for group in {id(hook.group): hook.group for hook in offload_hooks(module)}.values():
            for method in methods:
                wrapped.append((group, method, group.__dict__.get(method)))
                setattr(group, method, wrap(name, group, method, getattr(group, method)))
    try:
        yield
    finally:
        for group, method, previous in reversed(wrapped):
            if previous is None:
                delattr(group, method)  # drops the instance attribute; the class method shows through
            else:
                setattr(group, method, previous)


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


@contextmanager
def poison_offloaded(components: Mapping[str, torch.nn.Module]) -> Iterator[list[str]]:
    """While the body runs, every floating-point weight of an offloaded group holds NaN, and its real values
    only while its group is onloaded: a weight used without being onloaded (a device mismatch on a GPU)
    shows as NaN even on a CPU, where onloading moves nothing. Yields the list of modules whose output held
    NaN (filled in while the body runs), so a miss is found even where the output is never used, headed by
    the weights of an offloaded component that no group holds (added after its hooks were applied, say: stale
    hooks), which poisoning cannot reach. A weight shared by several groups (tied embeddings) keeps its values
    while any of them is onloaded."""
    real: dict[int, torch.Tensor] = {}
    holders: dict[int, int] = {}  # onloaded groups holding each tensor
    poisoned_outputs: list[str] = []

    def float_tensors(group) -> list[torch.Tensor]:
        tensors = {id(t): t for m in group.modules for t in (*m.parameters(), *m.buffers())}
        tensors.update((id(t), t) for t in (*group.parameters, *group.buffers))
        return [t for t in tensors.values() if t.is_floating_point()]

    def poison(tensor: torch.Tensor) -> None:
        if id(tensor) not in real:
            real[id(tensor)] = tensor.data
            tensor.data = torch.full_like(tensor.data, float("nan"))

    def restore(tensor: torch.Tensor) -> None:
        if id(tensor) in real:
            tensor.data = real.pop(id(tensor))

    def wrap(_name, group, method_name, method):
        def tracked():
            if method_name == "onload_":
                for tensor in float_tensors(group):
                    holders[id(tensor)] = holders.get(id(tensor), 0) + 1
                    restore(tensor)
                return method()
            result = method()
            for tensor in float_tensors(group):
                holders[id(tensor)] = max(0, holders.get(id(tensor), 0) - 1)
                if not holders[id(tensor)]:
                    poison(tensor)
            return result

        return tracked

    def check_output(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, dict):
                outputs = list(output.values())
            else:
                outputs = output if isinstance(output, (tuple, list)) else [output]
            if any(isinstance(o, torch.Tensor) and o.is_floating_point() and o.isnan().any() for o in outputs):
                poisoned_outputs.append(name)

        return hook

    groups = [group for module in components.values()
              for group in {id(hook.group): hook.group for hook in offload_hooks(module)}.values()]
    tensors = {id(t): t for group in groups for t in float_tensors(group)}
    poisoned_outputs.extend(
        f"{component}.{name} (in no offload group)" for component, module in components.items()
        if offload_hooks(module)
        for name, t in (*module.named_parameters(), *module.named_buffers())
        if t.is_floating_point() and id(t) not in tensors
    )
    handles = [submodule.register_forward_hook(check_output(f"{component}.{name}" if name else component))
               for component, module in components.items() for name, submodule in module.named_modules()]
    for tensor in tensors.values():
        poison(tensor)
    try:
        with _wrapped_groups(components, ("onload_", "offload_"), wrap):
            yield poisoned_outputs
    finally:
        for handle in handles:
            handle.remove()
        for tensor in tensors.values():
            restore(tensor)
