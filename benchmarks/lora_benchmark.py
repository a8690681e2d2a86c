"""LoRA kept as unfused adapters (the pack's choice) against fused into the weights: CPU time per step, and
the time to add, re-weight and remove a LoRA, under an offload preset.

    python -m benchmarks.lora_benchmark --preset balanced --rank 32 --steps 4

The transformer has HunyuanVideo 1's real width (3072) with few blocks (speed per block does not depend on
weight values); the text encoders and VAE are the tiny ones, since a LoRA changes only the transformer. The
LoRA covers every attention and feed-forward layer of the blocks. Modes, one after another on one model:

- no LoRA;
- unfused: a peft adapter per LoRA, strength = the adapter's weight (`apply_loras`); a strength change is
  `set_adapters`, no weight and no offload hook changes;
- fused: diffusers' `fuse_lora` merges the adapter into the weights (hooks taken off and applied again around
  it, as any weight change needs); a strength change is unfuse, new weight, fuse, and the hooks again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from hunyuan_core.families import FAMILIES
from hunyuan_core.loading.loader import prepare_pipeline
from hunyuan_core.lora import LoraFile, apply_loras
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import SamplingSettings, sample
from hunyuan_core.testing import hunyuan_video
from hunyuan_core.testing.loras import random_lora
from hunyuan_core.testing.random_models import build_random_model

from .measure import StepClock, environment


def build_model(preset: str, double_blocks: int, single_blocks: int):
    """The tiny pipeline with a transformer of the real width (3072) and the given block counts."""
    pipe, template = build_random_model("hunyuan-video")
    tiny = hunyuan_video.SCALES["tiny"]
    scale = replace(hunyuan_video.SCALES["mid"], double_blocks=double_blocks, single_blocks=single_blocks,
                    refiner_blocks=1, llama_hidden=tiny.llama_hidden, clip_hidden=tiny.clip_hidden)
    pipe.transformer = hunyuan_video.build_transformer(scale, torch.float32)
    return prepare_pipeline(pipe, FAMILIES[type(pipe).__name__], preset_plan(preset, "cpu"), template)


class CpuStepClock(StepClock):
    """StepClock on this process's CPU time."""

    def __init__(self):
        self.times = [time.process_time()]

    def __call__(self, done: int, total: int, *_preview) -> None:
        self.times.append(time.process_time())


def timed(work) -> float:
    """CPU seconds of `work` (see step_time)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--double-blocks", type=int, default=1)
    parser.add_argument("--single-blocks", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = build_model(args.preset, args.double_blocks, args.single_blocks)
    transformer = model.modules["transformer"]
    settings = SamplingSettings(width=args.width, height=args.height, frames=args.frames, steps=args.steps, seed=0)
    conditioning = encode_prompts(model, ["a cat walks on the grass"])

    def step_time() -> float:
        """Median CPU seconds per step (process time: on a shared machine wall time mostly measures the
        other processes)."""
        clock = CpuStepClock()
        sample(model, conditioning, settings, on_step=clock)
        return clock.median_step(args.warmup)

    results = {"environment": environment(torch.device("cpu")), "preset": args.preset, "rank": args.rank,
               "transformer_parameters": sum(p.numel() for p in transformer.parameters())}
    with tempfile.TemporaryDirectory() as scratch:
        path = random_lora(transformer, original_names=False, rank=args.rank, scale=0.01).save(
            Path(scratch) / "lora.safetensors", "diffusers")
        results["none s/step"] = step_time()
        results["unfused: add s"] = timed(lambda: apply_loras(model, [LoraFile(path)]))
        results["unfused s/step"] = step_time()
        results["unfused: change strength s"] = timed(lambda: apply_loras(model, [LoraFile(path, 0.5)]))
        results["unfused: remove s"] = timed(lambda: apply_loras(model, []))
        apply_loras(model, [LoraFile(path)])
        adapters = [applied.adapter for applied in model.loras.values()]

        def fuse(weight: float, unfuse_first: bool) -> None:
            with model.modifying(("transformer",)) as modules:
                if unfuse_first:
                    modules["transformer"].unfuse_lora()
                modules["transformer"].set_adapters(adapters, [weight])
                modules["transformer"].fuse_lora(adapter_names=adapters)

        results["fused: fuse s"] = timed(lambda: fuse(1.0, unfuse_first=False))
        results["fused s/step"] = step_time()
        results["fused: change strength s"] = timed(lambda: fuse(0.5, unfuse_first=True))
    for key, value in results.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    model.release()


if __name__ == "__main__":
    main()
