"""Checks on this machine that a parallel run gives what one process gives, through the library path a user
takes (load, the session's checks and attach, encode, sample with the agreed step callback):

    torchrun --nproc_per_node 2 -m hunyuan_core.parallel.verify                 # every family, tiny models
    torchrun --nproc_per_node 2 -m hunyuan_core.parallel.verify --case "tiny-1.5 cfg=2" --case \\
        "PATH ulysses=2 true_cfg_scale=4 offload=block_level width=848 height=480 frames=61 steps=2"

Each rank first samples alone (the same code without a session), then as one rank of the parallel run,
and rank 0 prints one JSON line per case: the largest difference from the lone run (absolute, and relative
to the largest latent), whether every rank ended with the same latents, each rank's share of the image rows
the first block computes (1/N when the work is really split N ways), and both sampling times. Exits 1
if a case differs by more than --atol or ranks disagree. A case is a model (a tiny name or a folder),
then `ulysses=N`/`cfg=2`, `offload=MODE`, `cache=NAME[:VALUE]`, `attention=BACKEND` and sampling settings
as `name=value`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import fields, replace
from pathlib import Path

import torch
import torch.distributed as dist

from ..loading.folder import read_model_index
from ..loading.loader import load_pipeline
from ..offload.config import OffloadConfig, OffloadPlan
from ..runtime.encode import encode_prompts
from ..runtime.sampling import SamplingSettings, guides_some_step, sample
from ..speed.settings import SpeedSettings, parse_cache
from ..testing.random_models import TINY, save_random_model
from .launch import ParallelSettings, join_process_group, parallel_session, quiet_rank, rank_device

PROMPTS = ["a cat walks", "a red dog runs across the snowy field at night"]
BASE = SamplingSettings(width=64, height=64, frames=9, steps=4, seed=3)
CASES = {
    2: ["tiny ulysses=2", "tiny ulysses=2 true_cfg_scale=4", "tiny cfg=2 true_cfg_scale=4",
        "tiny ulysses=2 offload=block_level videos_per_prompt=2", "tiny-i2v ulysses=2",
        "tiny-i2v-33ch ulysses=2", "tiny-1.5 ulysses=2",
        "tiny-1.5 cfg=2", "tiny-1.5-i2v ulysses=2", "tiny-1.5-i2v-step-distilled ulysses=2"],
    4: ["tiny cfg=2,ulysses=2 true_cfg_scale=4", "tiny-1.5 cfg=2,ulysses=2", "tiny-1.5-i2v cfg=2,ulysses=2"],
}
"""The default cases per process count (the tiny models have 2 heads: ulysses up to 2)."""


def parse_case(text: str) -> tuple[str, str, str, SpeedSettings, dict]:
    model, *pairs = text.split()
    parallel, offload, speed, values = [], "none", SpeedSettings(), {}
    types = {field.name: type(getattr(BASE, field.name)) for field in fields(SamplingSettings)}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name in ("ulysses", "cfg", "ring"):
            parallel.append(pair)
        elif name == "offload":
            offload = value
        elif name == "cache":
            cache, number = parse_cache(value)
            speed = replace(speed, cache=cache, cache_value=number)
        elif name == "attention":
            speed = replace(speed, attention=value)
        elif name in types:
            values[name] = types[name](value) if types[name] is not bool else value.lower() in ("1", "true")
        else:
            raise SystemExit(f"Unknown setting {name!r} in case {text!r}.")
    return model, ",".join(parallel), offload, speed, values


def start_image() -> torch.Tensor:
    """A fixed start image `[H, W, 3]` for image-to-video cases."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 80), indexing="ij")
    return torch.stack([x, y, (x + y) / 2], dim=-1)


def run(folder: Path, settings: SamplingSettings, offload: str, speed: SpeedSettings, device: torch.device,
        session=None):
    """Samples the case's videos; returns the raw latents, the sampling time and the image rows (batch x tokens)
    the first transformer block computed in its first call: what a rank's share of the work is."""
    family = read_model_index(folder)
    plan = OffloadPlan.uniform(OffloadConfig(mode=offload, onload_device=str(device)))
    if session is not None:
        session.check_before_loading(folder, family, settings, plan, speed)
    model = load_pipeline(folder, offload=plan, speed=speed)
    try:
        if session is not None:
            session.attach(model)
        rows = []

        def count_rows(_block, _args, output):  # its output: the plan splits the tokens on the block's way in
            rows.append(output[0].shape[0] * output[0].shape[1])

        model.modules["transformer"].transformer_blocks[0].register_forward_hook(count_rows)
        resolved = family.resolve(model, settings)
        guided = guides_some_step(family.guider(model, resolved), resolved.steps)
        if session is not None:
            session.check_run(guided, settings.batched_cfg)
        silent = lambda *_: None
        conditioning = encode_prompts(model, PROMPTS, negative_prompts="blurry" if guided else None, on_pass=silent,
                                      images=[start_image()] if family.takes_image else None)
        started = time.perf_counter()
        latents = sample(model, conditioning, settings,
                         on_step=silent if session is None else session.agreed_steps(silent))
        return latents, time.perf_counter() - started, rows[0]
    finally:
        model.release()


def ranks_agree(latents: torch.Tensor, device: torch.device) -> bool:
    mine = latents.to(device).contiguous()
    pieces = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(pieces, mine)
    return all(torch.equal(piece, pieces[0]) for piece in pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun ... -m hunyuan_core.parallel.verify",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append",
                        help="MODEL [ulysses=N] [cfg=2] [offload=MODE] [cache=NAME] [setting=value ...]")
    parser.add_argument("--device", help="cpu or cuda (default: the accelerator if there is one)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest absolute difference accepted")
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cases = [parse_case(text) for text in (args.case or CASES.get(world, []))]
    if not cases:
        raise SystemExit(f"No default cases for {world} processes; give --case.")
    rank = int(os.environ.get("RANK", "0"))
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        if rank:
            stack.enter_context(quiet_rank())
        folders = {}
        for model, *_ in cases:  # before the process group: transformers saves weights on rank 0 only then
            if model in TINY and dist.is_initialized():
                raise SystemExit(f"Give a folder for {model}: tiny models are built before the process group.")
            if model not in folders:
                folders[model] = save_random_model(Path(scratch) / model, TINY[model]) if model in TINY else Path(model)
        device = rank_device(args.device)
        owns_group = not dist.is_initialized()  # a caller's group (a test job running more) is left to it
        if owns_group:
            join_process_group(device)
        failed = False
        try:
            for model, spec, offload, speed, values in cases:
                settings = replace(BASE, **values)
                alone, alone_s, alone_rows = run(folders[model], settings, offload, speed, device)
                with parallel_session(ParallelSettings.parse(spec), args.device) as session:
                    split, split_s, split_rows = run(folders[model], settings, offload, speed, device, session)
                difference = (split.double() - alone.double()).abs().max().item()
                largest = alone.double().abs().max().item()
                agree = ranks_agree(split, device)
                ok = difference <= args.atol and agree
                failed |= not ok
                if rank == 0:
                    print(json.dumps({
                        "model": model, "parallel": spec, "offload": offload, "cache": speed.cache, "settings": values,
                        "max_abs": difference, "max_rel": difference / largest, "ranks_equal": agree,
                        "share": split_rows / alone_rows,
                        "single_s": round(alone_s, 3), "parallel_s": round(split_s, 3), "ok": ok,
                    }), flush=True)
        finally:
            if owns_group:
                dist.destroy_process_group()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
