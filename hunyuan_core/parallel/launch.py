"""One process per device, started by torchrun: the rank's device, the process group, the device mesh, and
diffusers' context parallelism on a loaded model, with the pack's plan.

    with parallel_session(ParallelSettings.parse("ulysses=2")) as session:
        plan = preset_plan("balanced", str(session.device))          # every rank offloads onto its own device
        session.check_before_loading(folder, family, settings, plan, speed)
        model = load_pipeline(folder, offload=plan)
        session.attach(model)
        conditioning = encode_prompts(model, prompts)
        latents = sample(model, conditioning, settings, on_step=session.agreed_steps())
        if session.is_main:
            frames = decode(model, latents)

Every rank loads the whole model (context parallelism splits activations, not weights), encodes the same
prompts and runs the same steps; the transformer's sequence is split across the ranks inside each call and
gathered at its end, so every rank ends with the same latents. Only rank 0 needs to decode.

A rank that fails must not leave the others waiting in a collective: errors found before loading are found
by every rank alike; a stop between steps (a cancel from the step callback) is agreed at every step; a
failure inside a transformer call ends that process, and torchrun then stops the others.
"""

from __future__ import annotations

import io
import os
import socket
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..devices import default_device
from ..offload.config import OffloadPlan
from ..progress import StepCallback
from ..quiet import quiet
from ..runtime.attention_mask import BATCH_SAFE_PROCESSORS
from ..speed.settings import SpeedSettings
from . import checks
from .inputs import TransformerInputHooks
from .plans import plan_for

DIFFUSERS_MODELING = "diffusers.models.modeling_utils"  # warns that enable_parallelism is experimental


class ParallelStopped(RuntimeError):
    """Another rank stopped the run (a cancel, or an error between steps); this rank stops with it."""


@dataclass(frozen=True)
class ParallelSettings:
    """How the ranks share the work: `ulysses` ranks split each transformer call's sequence (DeepSpeed-Ulysses
    attention through diffusers), `cfg=2` puts the two halves of classifier-free guidance on two groups of
    them. Ring attention is not a setting: `ring=N` is refused when parsed, with the reason."""

    ulysses: int = 1
    cfg: int = 1

    @classmethod
    def parse(cls, text: str) -> ParallelSettings:
        """`ulysses=4`, `cfg=2`, `cfg=2,ulysses=2` (the CLI's --parallel)."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name not in ("ulysses", "ring", "cfg") or not value.strip().isdigit():
                raise checks.ParallelSetupError(
                    f"--parallel takes ulysses=N and/or cfg=2 (comma-separated), got {text!r}."
                )
            if name == "ring":
                checks.check_ring(int(value))
            else:
                values[name] = int(value)
        settings = cls(**values)
        checks.check_degrees(settings.ulysses, settings.cfg)
        return settings

    @property
    def world_size(self) -> int:
        return self.cfg * self.ulysses

    def describe(self) -> str:
        return ",".join(f"{name}={value}" for name, value in (("cfg", self.cfg), ("ulysses", self.ulysses))
                        if value > 1)


@contextmanager
def diffusers_device_count() -> Iterator[None]:
    """diffusers 0.42.1 records a device for the model as `torch.device(device_type, rank %
    torch.accelerator.device_count())` (models/modeling_utils.py:1719, in `_resolve_parallel_config`), a
    ZeroDivisionError on a machine without an accelerator. Context parallelism never uses that device (only
    tensor-parallel loading reads it), so while `enable_parallelism` runs, and only where torch counts no
    accelerator, the count reads 1."""
    accelerator = torch.accelerator
    if accelerator.device_count() > 0:
        yield
        return
    original = accelerator.device_count
    accelerator.device_count = lambda *args, **kwargs: 1
    try:
        yield
    finally:
        accelerator.device_count = original


class ParallelSession:
    """This process's part of a parallel run; made by `parallel_session`."""

    def __init__(self, settings: ParallelSettings, device: torch.device, owns_group: bool):
        self.settings, self.device, self.owns_group = settings, device, owns_group
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world_size)))
        from torch.distributed.device_mesh import init_device_mesh

        s = settings
        # diffusers 0.42.1 takes a mesh with both a "ring" and a "ulysses" dimension (models/_modeling_parallel.py:
        # 72-74, ContextParallelConfig.setup): the ring dimension is there, of size 1.
        self.mesh = init_device_mesh(device.type, (s.cfg, 1, s.ulysses), mesh_dim_names=("cfg", "ring", "ulysses"))
        self.cfg_group = self.mesh["cfg"].get_group() if s.cfg > 1 else None
        self.cfg_rank = self.mesh["cfg"].get_local_rank() if s.cfg > 1 else 0
        self._flag = torch.zeros(1, dtype=torch.int32, device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several_machines(self) -> bool:
        return self.world_size > self.local_world_size

    def disk_folder(self, folder: str | None) -> str | None:
        """A disk offload folder per machine when several share one (a network folder): each process writes
        its own subfolder, and the pack sweeps subfolders of processes that no longer run, which a process can
        only tell for its own machine's processes."""
        if folder is None or not self.several_machines:
            return folder
        return str(Path(folder) / f"host-{socket.gethostname()}")

    def check_before_loading(self, folder: str | Path, family, settings, plan: OffloadPlan, speed: SpeedSettings,
                             dtypes: Mapping[str, torch.dtype] | None = None,
                             files: Mapping[str, Path] | None = None) -> None:
        """Everything that can be refused before a weight is read (every rank refuses alike): the family's
        plan, the heads and the image tokens of `settings`' video size against the split, the speed levers,
        and whether this machine holds a copy of the weights per process as `plan` offloads them (`files`: the
        components given as single files instead of the folder's)."""
        from ..loading.loader import resolve_dtypes

        checks.check_model(family, Path(folder), self.settings.ulysses, settings.width, settings.height,
                           settings.frames)
        checks.check_speed(speed, self.settings.ulysses)
        resolved = resolve_dtypes(family.spec, dtypes, plan.onload_device)
        checks.check_offload(plan.resolve(family.spec), checks.weight_bytes(Path(folder), resolved, files or {}),
                             self.local_world_size)

    def attach(self, model) -> None:
        """Context parallelism on `model`'s transformer: diffusers' hooks with the family's plan
        (`enable_parallelism`, nothing patched in diffusers; it hands the pack's batch-safe processors the
        config, with which they put the key-padding mask in Ulysses' key order), and the input hooks.
        Offloading can be reconfigured afterwards: the offload hooks and these are separate."""
        transformer = model.pipe.transformer
        plan = plan_for(model.family)
        _check_batch_safe_attention(transformer)
        s = self.settings
        if s.ulysses > 1:
            from diffusers import ContextParallelConfig

            config = ContextParallelConfig(ulysses_degree=s.ulysses, mesh=self.mesh)
            with diffusers_device_count(), quiet(DIFFUSERS_MODELING):
                transformer.enable_parallelism(config=config, cp_plan=dict(plan.cp_plan))
            # diffusers 0.42.1's gather (hooks/context_parallel.py:261) calls a torch function deprecated in 2.13.
            warnings.filterwarnings("ignore", message=".*all_gather_tensor` is deprecated", category=FutureWarning)
        shard = self.mesh["ulysses"].get_local_rank()  # the piece diffusers' sharder gives this rank (ring is 1)
        hooks = TransformerInputHooks(plan, s.ulysses, shard, self.cfg_group, self.cfg_rank, s.cfg)
        hooks.attach(transformer)

    def check_run(self, guided: bool, batched_cfg: bool) -> None:
        """Before sampling: cfg=2 needs guidance on, in one batched pass."""
        checks.check_guidance(self.settings.cfg, guided, batched_cfg)

    def agreed_steps(self, on_step: StepCallback | None = None) -> StepCallback:
        """A step callback that every rank calls after every step: it runs `on_step` (or, on rank 0, a console
        bar), and all ranks learn whether any of them stopped (a cancel raised by `on_step`, any error in it).
        The rank that stopped re-raises its error; the others raise `ParallelStopped`. Between steps no
        collective is pending, so the ranks stay usable."""
        bar = None
        if on_step is None and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(desc="Sampling")

        def step(done: int, total: int, *preview) -> None:
            error = None
            try:
                if on_step is not None:
                    on_step(done, total, *preview)
                elif bar is not None:
                    bar.total = total
                    bar.update(done - bar.n)
            except BaseException as caught:  # noqa: BLE001 - a cancel is often not an Exception
                error = caught
            self._flag.fill_(0 if error is None else 1)
            dist.all_reduce(self._flag, op=dist.ReduceOp.MAX)
            if bar is not None and (done == total or self._flag.item()):
                bar.close()
            if error is not None:
                raise error
            if self._flag.item():
                raise ParallelStopped(f"Another process stopped the run after step {done} of {total}.")

        return step

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _check_batch_safe_attention(transformer: torch.nn.Module) -> None:
    """A transformer without the pack's batch-safe processors would run Ulysses with the mask in the wrong
    order (no error, wrong numbers), so that is refused."""
    kinds = tuple(BATCH_SAFE_PROCESSORS.values())
    if not any(isinstance(processor, kinds) for processor in transformer.attn_processors.values()):
        raise RuntimeError(
            f"{type(transformer).__name__} has none of the pack's batch-safe attention processors, which context "
            "parallelism needs (the family's prepare_pipeline installs them)."
        )


@contextmanager
def quiet_rank() -> Iterator[None]:
    """For ranks other than 0: no report on stdout and no loading bars (rank 0 shows them); errors and
    warnings still reach stderr."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    with ExitStack() as stack:
        stack.enter_context(redirect_stdout(io.StringIO()))
        for logging in (diffusers_logging, transformers_logging):
            if logging.is_progress_bar_enabled():
                logging.disable_progress_bar()
                stack.callback(logging.enable_progress_bar)
        yield


def _device_type(requested: str | None) -> str:
    """The device type every rank computes on; the index is the rank's own (LOCAL_RANK)."""
    if requested is None:
        return default_device().type
    device = torch.device(requested)
    if device.index is not None:
        raise checks.ParallelSetupError(
            f"Under --parallel each process uses the device of its local rank; give --device {device.type}, "
            f"not {requested}."
        )
    return device.type


def rank_device(requested: str | None = None) -> torch.device:
    """This rank's device of the requested type (default: the accelerator, else the CPU): `LOCAL_RANK`'s
    accelerator, made the current one; the CPU for every rank of a CPU run."""
    device_type = _device_type(requested)
    if device_type == "cpu":
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.accelerator.set_device_index(local_rank)
    return torch.device(device_type, local_rank)


def join_process_group(device: torch.device) -> None:
    """Starts the process group torchrun's environment describes: NCCL (or the accelerator's backend) for
    accelerator ranks, gloo for CPU ranks."""
    backend = dist.get_default_backend_for_device(device)
    dist.init_process_group(backend, device_id=device if device.type != "cpu" else None)


def check_started_by_torchrun(settings: ParallelSettings) -> None:
    """Refuses a parallel run in a process that torchrun did not start (and no group was started in)."""
    if not dist.is_initialized() and "WORLD_SIZE" not in os.environ:
        raise checks.no_process_group(settings.describe(), settings.world_size)


@contextmanager
def parallel_session(settings: ParallelSettings, device: str | None = None) -> Iterator[ParallelSession]:
    """Joins the process group torchrun prepared (or uses one already started), on device `LOCAL_RANK` of
    the requested type, checks the launch against `settings` first, and builds the `(cfg, ring, ulysses)`
    mesh. A group it started, it ends."""
    device_type = _device_type(device)
    owns_group = not dist.is_initialized()
    spec = settings.describe()
    check_started_by_torchrun(settings)
    world_size = int(os.environ["WORLD_SIZE"]) if owns_group else dist.get_world_size()
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    devices = torch.accelerator.device_count() if device_type != "cpu" else 0
    checks.check_launch(world_size, settings.world_size, device_type, devices, local_world_size, spec)
    this_device = rank_device(device_type)
    if owns_group:
        join_process_group(this_device)
    session = None
    try:
        session = ParallelSession(settings, this_device, owns_group)
        yield session
    finally:
        if session is not None:
            session.close()
        elif owns_group:
            dist.destroy_process_group()
