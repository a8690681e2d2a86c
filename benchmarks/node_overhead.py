"""What the node graph costs over calling diffusers directly, for the same work on the tiny model (CPU).

    python -m benchmarks.node_overhead --runs 30

Times, interleaved run by run: (a) diffusers' `HunyuanVideoPipeline.__call__` (encode, sample, decode)
and (b) the pack's encode, sampler and decode nodes, loaded as ComfyUI loads the pack (with stand-ins
for ComfyUI's modules). Loading is outside both timings. Reports medians and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hunyuan_core.testing.hunyuan_video import PROMPT_TEMPLATE
from hunyuan_core.testing.random_models import save_random_model

from .measure import environment

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a cat walks on the grass, realistic style"


def _comfy_stubs():
    spec = importlib.util.spec_from_file_location("comfy_stubs", REPO / "tests" / "comfy_stubs.py")
    stubs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stubs)
    return stubs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)

    from diffusers import HunyuanVideoPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as root:
        folder = save_random_model(Path(root) / "HunyuanVideo")
        pipe = HunyuanVideoPipeline.from_pretrained(folder, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)

        stubs = _comfy_stubs()
        stubs.install([root])
        nodes = {name: cls() for name, cls in stubs.load_pack().NODE_CLASS_MAPPINGS.items()}
        model = nodes["HunyuanDiffusersLoader"].load("HunyuanVideo", "auto", "auto", "auto")[0]

        def direct():
            return pipe(prompt=PROMPT, height=args.height, width=args.width, num_frames=args.frames,
                        num_inference_steps=args.steps, prompt_template=PROMPT_TEMPLATE,
                        generator=torch.Generator().manual_seed(0), output_type="pt").frames

        def graph():
            conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, PROMPT, "single prompt", "", "")[0]
            latent = nodes["HunyuanDiffusersSampler"].sample(
                model, conditioning, width=args.width, height=args.height, frames=args.frames, steps=args.steps,
                guidance_scale=6.0, true_cfg_scale=1.0, batched_cfg=True, flow_shift=7.0, seed=0,
                videos_per_prompt=1, denoise=1.0,
            )[0]
            stubs.Previewer.seen.clear()
            return nodes["HunyuanDiffusersDecode"].decode(
                model, latent, spatial_tiling=True, tile_size=256, tile_overlap=64, tile_frames=16, frame_overlap=4
            )[0]

        times = {"diffusers": [], "nodes": []}
        for _ in range(2):  # warm-up
            direct(), graph()
        for _ in range(args.runs):
            for name, run in (("diffusers", direct), ("nodes", graph)):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        model.release()
        stubs.uninstall()

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(environment(torch.device("cpu")))
    print(f"{args.width}x{args.height}x{args.frames}, {args.steps} steps, {args.runs} interleaved runs each")
    print(f"diffusers __call__: median {medians['diffusers'] * 1000:.1f} ms")
    print(f"node graph:         median {medians['nodes'] * 1000:.1f} ms")
    print(f"ratio nodes/diffusers: {medians['nodes'] / medians['diffusers']:.3f}")


if __name__ == "__main__":
    main()
