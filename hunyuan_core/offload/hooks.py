"""Applying and removing group offloading, through diffusers' own hooks.

Applying a configuration first removes whatever group offloading the component had (applying twice is
otherwise a silent no-op in diffusers), then hooks it; every component of a plan gets hooks or is put on
the onload device, so that no component is left on the CPU while its inputs are on the accelerator
(diffusers #10797). Components whose default block split is wrong get the block names from their
`ComponentSpec` (see spec.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError
from ..spec import PipelineSpec
from .config import OffloadConfig, OffloadMode, pins_weights
from .diffusers_fixes import (drop_duplicate_group_tensors, onload_from_disk_aligned, trace_nested_groups_once,
                             untie_parameters)

GROUP_OFFLOADING_HOOKS = ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading")


def offload_hooks(module: torch.nn.Module, recurse: bool = True) -> list:
    """Every diffusers group-offloading hook on `module` and (with `recurse`) its submodules."""
    hooks = []
    for submodule in module.modules() if recurse else (module,):
        registry = getattr(submodule, "_diffusers_hook", None)
        hook = registry.get_hook("group_offloading") if registry is not None else None
        if hook is not None:
            hooks.append(hook)
    return hooks


def _refuse_accelerate_hooks(name: str, module: torch.nn.Module) -> None:
    for submodule in module.modules():
        if hasattr(submodule, "_hf_hook"):
            raise UserInputError(
                f"{name} already uses accelerate offloading (enable_model_cpu_offload or "
                "enable_sequential_cpu_offload). Offloading strategies do not stack: load the model again "
                "without them before applying group offloading."
            )


def _restore_from_disk(hooks: list) -> None:
    """Disk offloading leaves empty placeholders in memory; read the real weights back before unhooking.

    Each weight is copied into an allocation of its own: safetensors returns tensors at unaligned addresses
    inside its read buffer, on which CPU kernels round differently (after the disk preset, later presets'
    outputs differed from before it, by up to 7/255 in decoded frames after 150 steps).
    """
    from safetensors.torch import load_file

    for hook in hooks:
        group = hook.group
        if group.offload_to_disk_path is None or not Path(group.safetensors_file_path).exists():
            continue
        tensors = load_file(group.safetensors_file_path, device=str(group.offload_device))
        for key, tensor in group.key_to_tensor.items():
            tensor.data = tensors.pop(key).clone()


def remove_offload(module: torch.nn.Module, park_device: str | torch.device = "cpu") -> None:
    """Removes group offloading from `module`; its weights end up on `park_device`, never as placeholders."""
    from diffusers.hooks import HookRegistry

    hooks = offload_hooks(module)
    streams = {id(hook.group.stream): hook.group.stream for hook in hooks if hook.group.stream is not None}
    for stream in streams.values():
        stream.synchronize()  # a prefetch may still be copying (a failure mid-forward): let it land first
    _restore_from_disk(hooks)
    registry = HookRegistry.check_if_exists_or_initialize(module)
    for name in GROUP_OFFLOADING_HOOKS:
        registry.remove_hook(name, recurse=True)
    module.to(park_device)


@dataclass
class AppliedOffload:
    """The offload configuration each component has now, and the disk folders holding its weights."""

    spec: PipelineSpec
    configs: dict[str, OffloadConfig] = field(default_factory=dict)
    disk_folders: dict[str, str] = field(default_factory=dict)

    def apply(self, name: str, module: torch.nn.Module, config: OffloadConfig) -> None:
        """(Re)hooks one component; its previous hooks and disk files are replaced, never stacked.

        The old hooks go first (their disk files are read back, then deleted, so a component is never on
        disk twice); if the new ones fail, the component is recorded as not offloaded, as it then is.
        """
        _refuse_accelerate_hooks(name, module)
        self.detach(name, module, config.offload_device)
        folder = apply_component_offload(name, module, config, self.spec)
        if folder is not None:
            self.disk_folders[name] = folder
        self.configs[name] = config

    def detach(self, name: str, module: torch.nn.Module,
               park_device: str | torch.device | None = None) -> OffloadConfig | None:
        """Takes one component's hooks off (its weights read back and parked on `park_device`, by default the
        offload device it had; its disk files deleted) and forgets its settings, first, so that a failure
        leaves it recorded as not offloaded; returns the settings it had (None: none), for `apply` to restore."""
        config = self.configs.pop(name, None)
        remove_offload(module, park_device if park_device is not None else config.offload_device)
        self.cleanup((name,))
        return config

    def cleanup(self, components: tuple[str, ...] | None = None) -> None:
        """Deletes the disk offload files of `components` (default: all)."""
        for name in list(components or self.disk_folders):
            folder = self.disk_folders.pop(name, None)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


DISK_FOLDER_PREFIX = "hyvd-"


def _remove_stale_disk_folders(parent: Path) -> None:
    """Deletes offload folders left by processes that no longer run (a crash, a killed server)."""
    for folder in parent.glob(f"{DISK_FOLDER_PREFIX}*-pid*-*"):
        pid = folder.name.split("-pid", 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fresh_disk_folder(parent: Path, component: str) -> str:
    """A new folder for one component's offload files, in `parent` (created if needed).

    A fresh folder per component and application: diffusers reuses any files it finds in the folder without
    checking, which silently corrupts a second model offloaded to the same place. Nothing but this
    application's hooks ever reads it, and it is deleted with them.
    """
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_disk_folders(parent)
    return tempfile.mkdtemp(prefix=f"{DISK_FOLDER_PREFIX}{component}-pid{os.getpid()}-", dir=parent)


def apply_component_offload(name: str, module: torch.nn.Module, config: OffloadConfig,
                            spec: PipelineSpec) -> str | None:
    """Hooks one component that has no offload hooks; returns the disk folder it created, if any."""
    from diffusers.hooks import apply_group_offloading

    if config.mode == OffloadMode.NONE:
        module.to(config.onload_device)
        return None
    disk_path = None
    block_modules = spec.component(name).offload_block_modules
    try:
        if config.disk_folder is not None:
            disk_path = _fresh_disk_folder(Path(config.disk_folder), name)
            untie_parameters(module)
        set_pinned(module, pins_weights(config))
        trace_nested_groups_once()
        onload_from_disk_aligned()
        apply_group_offloading(
            module,
            onload_device=torch.device(config.onload_device),
            offload_device=torch.device(config.offload_device),
            offload_type=config.mode.value,
            num_blocks_per_group=config.num_blocks_per_group if config.mode == OffloadMode.BLOCK_LEVEL else None,
            non_blocking=config.non_blocking,
            use_stream=config.use_stream,
            record_stream=config.record_stream,
            low_cpu_mem_usage=config.low_cpu_mem_usage,
            offload_to_disk_path=disk_path,
            block_modules=list(block_modules) if block_modules else None,
        )
    except BaseException as error:
        remove_offload(module, config.offload_device)
        if disk_path is not None:
            shutil.rmtree(disk_path, ignore_errors=True)
        if isinstance(error, OSError):
            raise UserInputError(
                f"Could not write the offload files of {name} to {config.disk_folder} ({error.strerror or error}). "
                f"Free disk space there (about {module_gigabytes(module):.1f} GB for {name}) or choose another "
                "folder."
            ) from error
        raise
    drop_duplicate_group_tensors(offload_hooks(module))
    return disk_path


@torch.no_grad()
def set_pinned(module: torch.nn.Module, pinned: bool) -> None:
    """Moves `module`'s host tensors into (or out of) pinned memory in place, one tensor at a time.

    diffusers makes its pinned copies of all groups before swapping any weight over, so host RAM briefly
    holds the weights twice (diffusers #10847); weights already pinned are used as they are, so pinning in
    place first keeps the peak at one copy. Out of it: weights a streamed configuration left pinned would
    otherwise stay pinned under `low_cpu_mem_usage` or without streams, defeating their purpose.
    """
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type == "cpu" and tensor.is_pinned() != pinned:
            tensor.data = tensor.data.pin_memory() if pinned else tensor.data.clone()


def module_gigabytes(module: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())) / 2**30
