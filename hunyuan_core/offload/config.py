"""Offload settings as data: a mode and diffusers' options per component, and a plan over all components.

An `OffloadPlan` maps each torch component of a pipeline to an `OffloadConfig` whose fields mirror
`diffusers.hooks.apply_group_offloading`. Applying one is `hooks.py`'s job; this module only describes and
validates them, so nodes and the CLI can build plans without touching a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Mapping

import torch

from ..errors import UserInputError
from ..spec import PipelineSpec, Role


class OffloadMode(str, Enum):
    NONE = "none"  # the component lives on the onload device
    BLOCK_LEVEL = "block_level"  # groups of blocks move on and off as they run
    LEAF_LEVEL = "leaf_level"  # every Linear/Conv/Embedding moves on its own: least VRAM


@dataclass(frozen=True)
class OffloadConfig:
    """How one component is offloaded; the fields mirror `diffusers.hooks.apply_group_offloading`."""

    mode: OffloadMode = OffloadMode.NONE
    onload_device: str = "cpu"
    offload_device: str = "cpu"
    num_blocks_per_group: int = 1
    use_stream: bool = False
    record_stream: bool = False
    non_blocking: bool = False
    low_cpu_mem_usage: bool = False
    disk_folder: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "mode", OffloadMode(self.mode))
        object.__setattr__(self, "onload_device", str(torch.device(self.onload_device)))
        object.__setattr__(self, "offload_device", str(torch.device(self.offload_device)))

    def validate(self, component: str) -> None:
        where = f"offload settings for {component}"
        if self.mode == OffloadMode.NONE:
            return
        if self.mode == OffloadMode.BLOCK_LEVEL and self.num_blocks_per_group < 1:
            raise UserInputError(f"{where}: blocks per group must be at least 1, got {self.num_blocks_per_group}.")
        onload_type = torch.device(self.onload_device).type
        if self.use_stream and onload_type == "cpu":
            raise UserInputError(
                f"{where}: use_stream needs an accelerator (CUDA) onload device, but the onload device is the "
                "CPU. Turn use_stream off, or run on a GPU."
            )
        if self.record_stream and not self.use_stream:
            raise UserInputError(
                f"{where}: record_stream only works together with use_stream. Turn one on or both off."
            )
        if self.use_stream and not device_has_streams(onload_type):
            raise UserInputError(
                f"{where}: the onload device {self.onload_device} has no streams. Turn use_stream off."
            )
        if self.disk_folder is not None:
            _check_writable(self.disk_folder, where)


def device_has_streams(device_type: str) -> bool:
    """Whether group offloading can prefetch on this kind of device (diffusers refuses streams on a CPU)."""
    backend = getattr(torch, device_type, None)
    return device_type != "cpu" and backend is not None and hasattr(backend, "Stream") and backend.is_available()


def _check_writable(folder: str, where: str) -> None:
    """Checks, without creating anything, that `folder` exists as a writable folder or could be made."""
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"no write permission in {existing}"
    if problem is not None:
        raise UserInputError(
            f"{where}: the disk offload folder {folder} is not writable ({problem}). "
            "Choose a folder you can write to, on a disk with room for the model."
        )


@dataclass(frozen=True)
class OffloadPlan:
    """Offload settings per role (transformer, text encoders, image encoder, VAE), optionally overridden per
    component name. A plan is made before a model is chosen (a node, the CLI) and resolved against the
    model's components when it is applied, so the same plan serves every model family."""

    roles: Mapping[Role, OffloadConfig]
    components: Mapping[str, OffloadConfig] = field(default_factory=dict)

    @classmethod
    def uniform(cls, config: OffloadConfig) -> OffloadPlan:
        return cls({role: config for role in Role})

    def with_roles(self, roles: tuple[Role, ...], config: OffloadConfig) -> OffloadPlan:
        return OffloadPlan({**self.roles, **{Role(role): config for role in roles}}, self.components)

    def with_components(self, names: tuple[str, ...], config: OffloadConfig) -> OffloadPlan:
        return OffloadPlan(self.roles, {**self.components, **{name: config for name in names}})

    @property
    def onload_device(self) -> torch.device:
        return onload_device({**{role.value: c for role, c in self.roles.items()}, **self.components})

    def resolve(self, spec: PipelineSpec) -> dict[str, OffloadConfig]:
        """One validated configuration per torch component of `spec`."""
        unknown = sorted(set(self.components) - set(spec.module_names))
        if unknown:
            raise UserInputError(
                f"The offload plan names {', '.join(unknown)}, but this model's components are "
                f"{', '.join(spec.module_names)}."
            )
        configs = {}
        for component in spec.components:
            if not component.is_module:
                continue
            config = self.components.get(component.name, self.roles.get(component.role))
            if config is None:
                raise UserInputError(f"The offload plan has no settings for the {component.role.label}.")
            config.validate(component.name)
            configs[component.name] = config
        onload_device(configs)
        return configs


def onload_device(configs: Mapping[str, OffloadConfig]) -> torch.device:
    """The one device the components compute on; raises when the settings name several."""
    devices = {c.onload_device for c in configs.values()}
    if len(devices) != 1:
        raise UserInputError(
            f"All components must compute on one device, but the offload settings name {sorted(devices)}. "
            "Use the same onload device for every component."
        )
    return torch.device(devices.pop())


def pins_weights(config: OffloadConfig) -> bool:
    """Whether diffusers keeps a pinned host copy of every weight for this configuration."""
    return config.use_stream and not config.low_cpu_mem_usage and config.disk_folder is None


def describe(configs: Mapping[str, OffloadConfig]) -> str:
    """One line per component, for logs and the CLI."""
    lines = []
    for name, config in configs.items():
        details = config.mode.value
        if config.mode != OffloadMode.NONE:
            extras = [f"{config.onload_device}<->{config.offload_device}"]
            if config.mode == OffloadMode.BLOCK_LEVEL:
                extras.append(f"{config.num_blocks_per_group} block(s)/group")
            extras += [flag for flag in ("use_stream", "record_stream", "low_cpu_mem_usage") if getattr(config, flag)]
            if config.disk_folder:
                extras.append(f"disk:{config.disk_folder}")
            details += " (" + ", ".join(extras) + ")"
        lines.append(f"{name}: {details}")
    return "\n".join(lines)


def extend_plan(base: OffloadPlan | None, roles: tuple[Role, ...], config: OffloadConfig) -> OffloadPlan:
    """`config` for the components of `roles`; every other component keeps its setting in `base`, or
    (without a base) stays on the onload device. The new settings are checked here, where they are made."""
    config.validate(" and ".join(Role(role).label for role in roles))
    if base is None:
        base = OffloadPlan.uniform(OffloadConfig(onload_device=config.onload_device,
                                                 offload_device=config.offload_device))
    return base.with_roles(roles, config)
