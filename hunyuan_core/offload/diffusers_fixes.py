"""Narrow fixes of diffusers' hooks (0.42.1), each tested: group offloading copies each tensor once per
onload, streamed offloading of a model whose block modules nest can be applied, disk offloading keeps tied
weights and computes on aligned weights, and removing a hook from under a step cache keeps the cache working.

Block-level offloading: each tensor is copied once per onload.

For `block_level`, diffusers (0.42.1) puts the top-level children that are not blocks into one
"unmatched" group, and also lists as that group's loose tensors every parameter and buffer not under a
block, which includes those same children's tensors. The group then copies each of them twice per onload:
with streams, two host-to-device copies per forward of the transformer's 0.7 GB of embedders and token
refiner, and of the Llama's 1 GB token embedding. Dropping the loose entries that the group's modules
already hold leaves one copy; everything else about the group is unchanged.
"""

from __future__ import annotations

from typing import Iterable

import torch


def drop_duplicate_group_tensors(hooks: Iterable) -> None:
    """Removes, from each hooked group, loose tensors that one of the group's modules already owns."""
    for group in {id(hook.group): hook.group for hook in hooks}.values():
        owned = {id(t) for module in group.modules for t in (*module.parameters(), *module.buffers())}
        group.parameters = [p for p in group.parameters if id(p) not in owned]
        group.buffers = [b for b in group.buffers if id(b) not in owned]


def _remove_hook_spliced(registry, name: str, recurse: bool = True) -> None:
    """diffusers' `HookRegistry.remove_hook` (0.42.1, hooks/hooks.py:250-276) with the one splice done right."""
    if name in registry.hooks:
        index = registry._hook_order.index(name)
        fn_ref = registry._fn_refs[index]
        inner = fn_ref.original_forward if fn_ref.original_forward is not None else fn_ref.forward
        if index == len(registry._hook_order) - 1:
            registry._module_ref.forward = inner
        elif registry._fn_refs[index + 1].original_forward is not None:
            registry._fn_refs[index + 1].original_forward = inner  # diffusers re-points `.forward` here
        else:
            registry._fn_refs[index + 1].forward = inner
        registry._module_ref = registry.hooks[name].deinitalize_hook(registry._module_ref)
        del registry.hooks[name]
        registry._hook_order.pop(index)
        registry._fn_refs.pop(index)
    if recurse:
        for module_name, module in registry._module_ref.named_modules():
            if module_name and hasattr(module, "_diffusers_hook"):
                module._diffusers_hook.remove_hook(name, recurse=False)


def splice_hooks_correctly() -> None:
    """Fixes hook removal under a hook that replaces `forward` (a step cache), process-wide and idempotently.

    diffusers 0.42.1 links an outer hook with its own `new_forward` to the hooks inside it through
    `original_forward`, but when an inner hook is removed it re-points the outer hook's `forward` instead:
    the cache's own forward is lost (every block runs again: the cache is silently off) and the removed hook
    stays reachable (a later removal brings it back: each group onloaded twice). Removing offload hooks under a
    cache is what streamed offloading does after its first forward and what recovery does after a failure. The
    fix changes nothing else: where the outer hook has no `new_forward`, the splice is diffusers' own.
    """
    from diffusers.hooks import HookRegistry

    if HookRegistry.remove_hook is not _remove_hook_spliced:
        HookRegistry.remove_hook = _remove_hook_spliced


def _trace_from_the_outermost(original):
    def initialize_hook(self, module):
        from diffusers.hooks.group_offloading import _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING

        for name, submodule in module.named_modules():
            registry = getattr(submodule, "_diffusers_hook", None)
            if name and registry is not None:
                for nested in (_LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
                    if registry.get_hook(nested) is not None:
                        registry.remove_hook(nested, recurse=False)
        return original(self, module)

    initialize_hook.traces_from_the_outermost = True
    return initialize_hook


def trace_nested_groups_once() -> None:
    """Lets streamed block-level offloading apply to a model whose block modules nest, process-wide and
    idempotently.

    With `block_modules`, diffusers 0.42.1 applies block-level offloading recursively and gives every level
    that has loose layers of its own a lazy-prefetch hook, which puts an execution tracer on each group
    below it. A level inside another (Llava's `language_model`, ByT5's `encoder`) is hooked first, so the
    outer hook finds the inner one's tracers and raises "Hook with name layer_execution_tracker already
    exists". The fix: the outer hook first drops the nested lazy-prefetch hooks and their tracers, then
    traces every group below it itself, so the first forward yields one prefetch chain in the order the
    groups really run (Llava's token embedding runs before its language model). Models without nested
    levels are hooked as before.
    """
    from diffusers.hooks.group_offloading import LazyPrefetchGroupOffloadingHook

    initialize = LazyPrefetchGroupOffloadingHook.initialize_hook
    if not getattr(initialize, "traces_from_the_outermost", False):
        LazyPrefetchGroupOffloadingHook.initialize_hook = _trace_from_the_outermost(initialize)


def _onto_fresh_allocations(original):
    def onload_from_disk(self):
        original(self)
        for tensor in self.key_to_tensor.values():
            if tensor.device.type == "cpu" and not tensor.is_pinned():
                tensor.data = tensor.data.clone()

    onload_from_disk.fresh_allocations = True
    return onload_from_disk


def onload_from_disk_aligned() -> None:
    """Gives weights that disk offloading onloads to a CPU fresh allocations, process-wide and idempotently.

    diffusers 0.42.1 (`ModuleGroup._onload_from_disk`) hands out safetensors' tensors as they are: slices of
    one read buffer at unaligned addresses, on which CPU kernels round differently, so an output differed
    from the same weights in memory (by 5e-7 on the tiny model with LoRA adapters, whose small tensors pack
    at odd offsets). An accelerator onload device gets fresh allocations anyway; pinned copies are fresh too.
    """
    from diffusers.hooks.group_offloading import ModuleGroup

    onload = ModuleGroup._onload_from_disk
    if not getattr(onload, "fresh_allocations", False):
        ModuleGroup._onload_from_disk = _onto_fresh_allocations(onload)


@torch.no_grad()
def untie_parameters(module: torch.nn.Module) -> list[str]:
    """Gives every name of a parameter held under several names (T5's `shared` and `encoder.embed_tokens`, the
    ByT5 of HunyuanVideo 1.5) its own copy, before disk offloading; returns the names that got one.

    Disk offloading in diffusers 0.42.1 (`ModuleGroup._offload_to_disk`) writes a group's file from its tensors'
    current data once, then replaces that data by an uninitialised placeholder. When two groups hold the same
    parameter, the second writes the placeholder the first left: the encoder then computes with garbage (not
    NaN, so only the outputs show it). Each copy in one group is what every other offloading mode already
    amounts to; the cost is one more embedding (4 MB for ByT5).
    """
    seen, untied = set(), []
    for name, parameter in module.named_parameters(remove_duplicate=False):
        if id(parameter) not in seen:
            seen.add(id(parameter))
            continue
        owner, _, attribute = name.rpartition(".")
        copy = torch.nn.Parameter(parameter.detach().clone(), requires_grad=parameter.requires_grad)
        setattr(module.get_submodule(owner), attribute, copy)
        untied.append(name)
    return untied
