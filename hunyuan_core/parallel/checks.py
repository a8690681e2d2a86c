"""What a parallel run refuses, with the reason and what to do instead: before the process group starts,
before any weight is read, and before sampling.

Every check here reads only what every rank sees alike (the settings, torchrun's environment, the folder's
configs, this machine), so all ranks refuse together and none is left waiting in a collective.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import UserInputError
from ..offload.config import OffloadConfig, OffloadMode
from ..speed.settings import ATTENTION_DEFAULT, CACHES, SpeedSettings
from .plans import plan_for

GB = 1024**3


class ParallelSetupError(UserInputError):
    """A parallel run that cannot work; every rank raises the same one, so only rank 0 needs to show it."""


def _divisors(count: int, limit: int = 16) -> list[int]:
    return [d for d in range(2, limit + 1) if count % d == 0]


def _choices(values: list[int]) -> str:
    return ", ".join(map(str, values)) if values else "none up to 16"


# Before the process group -------------------------------------------------------------------------------


def check_ring(ring: int) -> None:
    """`ring=N` in --parallel: only 1 (no ring attention) is accepted."""
    if ring != 1:
        # attention_dispatch.py:2386-2440 (TemplatedRingAttention): every rotated key/value chunk is attended
        # with the local query's own mask (wrong for padded prompts, which every HunyuanVideo run has), and it
        # needs the attention's log-sum-exp (`return_lse`), which the native backend cannot give on a CPU.
        raise ParallelSetupError(
            "Ring attention cannot run HunyuanVideo in diffusers 0.42.1: it applies each process's key-padding mask "
            "to every other process's keys (wrong for the padded prompts HunyuanVideo always has) and needs the "
            "attention's log-sum-exp, which the native backend does not return on a CPU. Use ulysses=N instead."
        )


def check_degrees(ulysses: int, cfg: int) -> None:
    if min(ulysses, cfg) < 1 or max(ulysses, cfg) == 1:
        raise ParallelSetupError(
            f"--parallel needs a degree above 1 (ulysses=N, cfg=2, or both), got ulysses={ulysses}, cfg={cfg}."
        )
    if cfg not in (1, 2):
        raise ParallelSetupError(
            f"cfg={cfg}: classifier-free guidance has two halves (conditional, unconditional), so cfg takes 2."
        )


def check_launch(world_size: int, expected: int, device_type: str, devices: int, local_world_size: int,
                 spec: str) -> None:
    """torchrun started the right number of processes, and each has a device of its own."""
    if world_size != expected:
        raise ParallelSetupError(
            f"--parallel {spec} runs on exactly {expected} processes, but {world_size} were started. Start "
            f"torchrun --nproc_per_node {expected} (times the number of machines: --nnodes)."
        )
    if device_type != "cpu":
        if devices == 0:
            raise ParallelSetupError(f"No {device_type} device is visible to this process.")
        if local_world_size > devices:
            raise ParallelSetupError(
                f"{local_world_size} processes on this machine but only {devices} {device_type} device(s): each "
                "process needs a device of its own (each holds a full copy of the weights). Start at most "
                f"{devices} processes per machine (check CUDA_VISIBLE_DEVICES), or run on the CPU with --device cpu."
            )


def no_process_group(spec: str, expected: int) -> ParallelSetupError:
    return ParallelSetupError(
        f"--parallel {spec} needs {expected} processes started by torchrun, one per device: "
        f"torchrun --nproc_per_node {expected} -m hunyuan_core generate ... --parallel {spec}"
    )


# Before loading -----------------------------------------------------------------------------------------


def transformer_config(folder: Path) -> dict:
    path = Path(folder) / "transformer" / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"Could not read {path} ({error}).") from error


def image_tokens(config: Mapping, latent_shape: tuple[int, ...]) -> int:
    """Image tokens the transformer makes of latents `[C, t, h, w]` (its patch sizes)."""
    t, h, w = latent_shape[-3:]
    p, pt = config.get("patch_size", 1), config.get("patch_size_t", 1)
    return (t // pt) * (h // p) * (w // p)


def image_token_problem(family, config: Mapping, width: int, height: int, frames: int, degree: int) -> str | None:
    """Why `degree` processes cannot share this video's image tokens equally (diffusers' sharder asserts
    divisibility, hooks/context_parallel.py:274), with the sizes that work; None if they can."""
    tokens = image_tokens(config, family.latent.shape(width, height, frames))
    if tokens % degree == 0:
        return None
    step = family.latent.temporal
    nearby = [f for f in range(max(1, frames - 12 * step), frames + 12 * step + 1, step)
              if image_tokens(config, family.latent.shape(width, height, f)) % degree == 0]
    nearby = sorted(nearby, key=lambda f: (abs(f - frames), f))[:4]
    return (
        f"{width}x{height} with {frames} frames makes {tokens} image tokens, which {degree} processes cannot share "
        f"equally. Degrees that divide them: {_choices(_divisors(tokens))}. With {degree} processes at this size, "
        f"frames {', '.join(map(str, sorted(nearby))) or 'nearby: none'} work"
        + (" (or change the width or height)." if nearby else "; change the width or height.")
    )


def check_model(family, folder: Path, ulysses: int, width: int, height: int, frames: int) -> None:
    """The family has a plan, the heads and the image tokens divide."""
    plan_for(family)
    config = transformer_config(folder)
    heads = config.get("num_attention_heads")
    if ulysses > 1 and heads % ulysses:
        raise ParallelSetupError(
            f"The transformer has {heads} attention heads, which ulysses={ulysses} cannot share equally. Use a "
            f"degree that divides {heads}: {_choices(_divisors(heads, heads))}."
        )
    if ulysses > 1:
        problem = image_token_problem(family, config, width, height, frames, ulysses)
        if problem:
            raise ParallelSetupError(problem)


CONTEXT_PARALLEL_MASKED_BACKENDS = ("native", "_native_cudnn")
"""diffusers 0.42.1 backends that run under context parallelism (`supports_context_parallel=True` in
models/attention_dispatch.py) and take HunyuanVideo's key-padding mask; the others that support context
parallelism (flash, sage, `_native_flash`, `_native_npu`, ...) refuse any mask, and the `_hub` varlen ones that
would take it are refused by the pack (speed/attention.py)."""


def check_speed(speed: SpeedSettings, shards: int) -> None:
    """Speed levers that cannot run in parallel: block-skipping caches (any parallel run), and under a
    sequence split, compilation and attention backends without context parallelism or masks."""
    if speed.cache in CACHES and CACHES[speed.cache].skips_blocks:
        # Under a sequence split, the cache's head hook sits on transformer_blocks.0 outside diffusers' split
        # hook there (caches are enabled per run, after parallelism): it would compare and reuse residuals of
        # one process's tokens against the whole sequence, and the processes would decide differently and wait
        # on each other. Under cfg=2, each group would decide from its half of the rows: not the result of one
        # process.
        raise ParallelSetupError(
            f"The {speed.cache} cache skips whole blocks from what the first block computes, which --parallel "
            f"splits across processes. Use {' or '.join(c.name for c in CACHES.values() if not c.skips_blocks)}, or "
            "no cache, with --parallel."
        )
    if shards == 1:
        return
    if speed.compile:
        raise ParallelSetupError(
            "--compile with --parallel has not been verified (diffusers' split hook and the all-to-all inside "
            "compiled blocks); run one or the other."
        )
    if speed.attention == ATTENTION_DEFAULT:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        backend = _AttentionBackendRegistry.get_active_backend()[0].value
    else:
        backend = speed.attention
    if backend not in CONTEXT_PARALLEL_MASKED_BACKENDS:
        raise ParallelSetupError(
            f"The {backend} attention backend cannot run under context parallelism with HunyuanVideo's text mask. "
            f"Use one of {', '.join(CONTEXT_PARALLEL_MASKED_BACKENDS)}."
        )


def weight_bytes(folder: Path, dtypes: Mapping[str, torch.dtype], files: Mapping[str, Path]) -> dict[str, int]:
    """Bytes of each torch component's weights once loaded (from the safetensors headers): in its dtype from the
    folder; a single file's own size (fp8 and GGUF files stay that small; a larger file's count is an upper
    bound)."""
    from ..loading.single_file.files import read_header

    sizes = {}
    for name, dtype in dtypes.items():
        if name in files:
            sizes[name] = Path(files[name]).stat().st_size
            continue
        headers = [read_header(path, name) for path in sorted((Path(folder) / name).glob("*.safetensors"))]
        elements = sum(math.prod(t.shape) for header in headers for t in header.tensors.values())
        sizes[name] = elements * torch.empty((), dtype=dtype).element_size()
    return sizes


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_offload(configs: Mapping[str, OffloadConfig], sizes: Mapping[str, int], local_world_size: int,
                  memory: int | None = None) -> None:
    """Every process holds a full copy of the weights (context parallelism splits the activations, not the
    weights), offloaded the way `configs` say: refuses a plan whose copies cannot fit this machine's RAM or
    the disk offload folder."""
    in_ram = sum(size for name, size in sizes.items()
                 if configs[name].disk_folder is None and (
                     configs[name].mode != OffloadMode.NONE or configs[name].onload_device == "cpu"))
    memory = physical_memory() if memory is None else memory
    if memory and local_world_size * in_ram > memory:
        raise ParallelSetupError(
            f"{local_world_size} processes on this machine each keep their own copy of the weights in system RAM: "
            f"{local_world_size} x {in_ram / GB:.1f} GB = {local_world_size * in_ram / GB:.1f} GB, but the machine "
            f"has {memory / GB:.1f} GB. Use the disk preset (weights read from files), fewer processes per machine, "
            "or smaller dtypes."
        )
    on_disk: dict[str, int] = {}
    for name, size in sizes.items():
        folder = configs[name].disk_folder
        if folder is not None:
            on_disk[folder] = on_disk.get(folder, 0) + size
    for folder, size in on_disk.items():
        path = Path(folder).expanduser().absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        if local_world_size * size > free:
            raise ParallelSetupError(
                f"Disk offloading writes a copy of the weights per process: {local_world_size} x {size / GB:.1f} GB "
                f"in {folder}, which has {free / GB:.1f} GB free. Free space there, choose another --offload-folder "
                "or a RAM preset."
            )


# Before sampling ----------------------------------------------------------------------------------------


def check_guidance(cfg: int, guided: bool, batched_cfg: bool) -> None:
    """cfg=2 puts the conditional and the unconditional rows of one batched pass on two halves of the ranks."""
    if cfg == 1:
        return
    if not guided:
        raise ParallelSetupError(
            "cfg=2 runs the conditional and unconditional halves of classifier-free guidance on two groups of "
            "processes, but guidance is off for this run (true_cfg_scale 1, or a distilled model). Use ulysses=N."
        )
    if not batched_cfg:
        raise ParallelSetupError(
            "cfg=2 splits the one batched CFG pass between two groups of processes; turn batched_cfg back on."
        )
