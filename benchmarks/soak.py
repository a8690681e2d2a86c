"""Soak test: the same generation many times on one loaded model, with optional preset switches between runs.

    python -m benchmarks.soak --model models/diffusers/HunyuanVideo --runs 50 --switch-presets

Prints, per run, the time, host RSS, peak VRAM and a hash of the frames; fails (exit 1) if any run's
frames differ from the first run's or host RSS grows by more than 5% after a preset's second run. With
`--model tiny` it runs on the tiny random model.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time

import torch

from hunyuan_core.devices import default_device
from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.offload.presets import PRESETS, default_preset, preset_plan
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import SamplingSettings, sample
from hunyuan_core.runtime.vae import decode
from hunyuan_core.testing.random_models import save_random_model

from .measure import PeakDeviceMemory, PeakRss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="diffusers HunyuanVideo folder, or 'tiny'")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--preset", choices=list(PRESETS))
    parser.add_argument("--switch-presets", action="store_true", help="cycle through every preset between runs")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=272)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    device = str(default_device())
    presets = list(PRESETS) if args.switch_presets else [args.preset or default_preset(device)]
    settings = SamplingSettings(width=args.width, height=args.height, frames=args.frames, steps=args.steps, seed=1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = save_random_model(f"{scratch}/tiny") if args.model == "tiny" else args.model
        model = load_pipeline(folder, offload=preset_plan(presets[0], device, disk_folder=scratch))
        hashes, sizes = [], {}
        for run in range(args.runs):
            preset = presets[run % len(presets)]
            model.configure_offload(preset_plan(preset, device, disk_folder=scratch))
            started = time.perf_counter()
            with PeakRss() as rss, PeakDeviceMemory(torch.device(device)) as vram:
                conditioning = encode_prompts(model, "a cat walks on the grass, realistic style")
                frames = decode(model, sample(model, conditioning, settings))
            digest = hashlib.sha256(frames.numpy().tobytes()).hexdigest()[:16]
            hashes.append(digest)
            sizes.setdefault(preset, []).append(rss.peak)
            peak = "-" if vram.peak is None else f"{vram.peak / 2**30:.2f} GB"
            print(f"run {run + 1:3d} {preset:15s} {time.perf_counter() - started:7.1f} s  RSS {rss.peak / 2**30:6.2f} GB  "
                  f"VRAM {peak}  frames {digest}", flush=True)
        model.release()
    identical = len(set(hashes)) == 1
    flat = all(runs[-1] <= runs[1] * 1.05 for runs in sizes.values() if len(runs) > 2)
    print(f"identical outputs: {identical}; host RSS flat (per preset, after its second run): {flat}")
    return 0 if identical and flat else 1


if __name__ == "__main__":
    sys.exit(main())
