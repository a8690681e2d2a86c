"""A loaded pipeline together with what the pack knows about it.

The diffusers pipeline object does not record its model family, the folder it came from, the prompt
template it needs, or the offload settings applied to it; this wrapper does, so every later step (encode,
sample, decode, reconfigure, release) can read them instead of guessing.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..devices import free_cached_memory
from ..errors import UserInputError
from ..families import LatentFormat, ModelFamily
from ..offload.config import OffloadConfig, OffloadMode, OffloadPlan, onload_device
from ..offload.hooks import AppliedOffload, remove_offload
from ..spec import PipelineSpec
from ..speed.attention import check_backend
from ..speed.compile import check_compile
from ..speed.run import RunReport
from ..speed.settings import SpeedSettings


@dataclass(eq=False)
class LoadedPipeline:
    pipe: object  # a diffusers pipeline of the family
    family: ModelFamily
    folder: Path | None  # None for a pipeline built in memory
    prompt_template: dict | None
    speed: SpeedSettings = field(default_factory=SpeedSettings)
    _offload: AppliedOffload | None = field(default=None, repr=False)
    last_run: RunReport | None = field(default=None, repr=False)  # what the latest sampling run did
    loras: dict = field(default_factory=dict, repr=False)  # the LoRAs applied now, by file (lora/apply.py)

    @property
    def spec(self) -> PipelineSpec:
        return self.family.spec

    @property
    def latent(self) -> LatentFormat:
        return self.family.latent

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch components (transformer, text encoders, VAE) by name."""
        pipe = self._live_pipe()
        return {name: getattr(pipe, name) for name in self.spec.module_names}

    @property
    def dtypes(self) -> dict[str, torch.dtype]:
        return {name: module.dtype for name, module in self.modules.items()}

    @property
    def offload_configs(self) -> dict[str, OffloadConfig]:
        """The offload settings each component has now."""
        self._live_pipe()
        if self._offload is None:
            raise UserInputError("No offload settings are applied to this model; configure them first.")
        return dict(self._offload.configs)

    @property
    def device(self) -> torch.device:
        """Where computation happens: the components' onload device."""
        return onload_device(self.offload_configs)

    def configure_offload(self, plan: OffloadPlan | dict[str, OffloadConfig]) -> None:
        """Applies `plan` (or settings already resolved for this model): components whose settings change are
        re-hooked (old hooks removed first, never stacked); the others are left as they are, so a 25 GB
        transformer on the GPU stays there while the VAE's settings change. If a component fails to apply,
        no offloading stays applied at all."""
        configs = plan.resolve(self.spec) if isinstance(plan, OffloadPlan) else plan
        if self.speed.compile:
            check_compile(configs["transformer"].mode.value, self.speed.cache)
        modules = self.modules
        if self._offload is None:
            self._offload = AppliedOffload(self.spec)
        try:
            for name in self.spec.module_names:
                if self._offload.configs.get(name) != configs[name]:
                    self._offload.apply(name, modules[name], configs[name])
        except BaseException:
            self.detach_offload()
            raise

    def configure_speed(self, settings: SpeedSettings) -> None:
        """Takes new per-run speed settings (cache, attention backend). fp8 storage and compilation change the
        loaded modules: other values for those need the model loaded again."""
        settings.validate()
        if settings.loads_differently != self.speed.loads_differently:
            raise UserInputError(
                "fp8 storage and compilation are applied when a model is loaded; load it again to change them."
            )
        if settings.compile:
            check_compile(self.offload_configs["transformer"].mode.value, settings.cache)
        if settings.attention != self.speed.attention:
            check_backend(settings.attention)
        self.speed = settings

    def reset_offload(self, components: Sequence[str]) -> None:
        """Rebuilds the hooks of `components` from the current plan.

        After a failure inside a forward pass (out of memory, say) groups may be left on the accelerator
        and a first-pass prefetch trace half recorded; fresh hooks guarantee the next run starts clean.
        Components kept on the device (`none`) are left alone.
        """
        configs = self.offload_configs
        for name in components:
            if configs[name].mode != OffloadMode.NONE:
                self._offload.apply(name, self.modules[name], configs[name])

    @contextmanager
    def modifying(self, components: Sequence[str]) -> Iterator[dict[str, torch.nn.Module]]:
        """Takes the offload hooks off `components` while the body changes their weights or modules (LoRA,
        fp8 storage), then applies the same settings again, the pack's own way (one copy per tensor, pinning,
        fresh disk folders): hooks are never left stale on changed weights, and diffusers' own re-hooking
        (which LoRA loading would do) never happens. Yields the modules, their weights on the offload device."""
        self.offload_configs  # noqa: B018 - raises for a released model
        modules = self.modules
        detached = {}
        try:
            for name in components:  # a resident component has no hooks to go stale: it stays on its device
                if self._offload.configs[name].mode is not OffloadMode.NONE:
                    detached[name] = self._offload.detach(name, modules[name])
            yield {name: modules[name] for name in components}
        finally:
            for name, config in detached.items():
                self._offload.apply(name, modules[name], config)

    def detach_offload(self) -> None:
        """Removes the pack's offloading: hooks gone, weights parked on the CPU, disk offload files deleted."""
        for module in self.modules.values():
            remove_offload(module)
        if self._offload is not None:
            self._offload.cleanup()
        self._offload = None

    def release(self) -> None:
        """Frees the weights: disk offload files deleted, references dropped. Nothing is moved first (parking
        a 25 GB transformer in RAM just to drop it would be a needless spike); the hooks go with the modules."""
        if self.pipe is None:
            return
        if self._offload is not None:
            self._offload.cleanup()
        self._offload = None
        self.pipe = None
        free_cached_memory()

    def _live_pipe(self):
        if self.pipe is None:
            raise UserInputError(
                f"The {self.family.name} model from {self.folder} was released (another model was loaded or "
                "memory was freed). Run the loader again."
            )
        return self.pipe
