"""Where an offloaded denoising step spends its time on a GPU: kernels, weight transfers, their overlap.

    python -m benchmarks.profile_offload --scale full --width 848 --height 480 --frames 61 \\
        --presets none balanced lowest_vram --json profile.json

Measures pinned host-to-device bandwidth with one large copy, then per preset: two warm-up steps (the
first records the prefetch order), then one step under torch.profiler. From the profiler's CUDA timeline
it reports the step time, the time the GPU ran kernels, the time it copied host-to-device and how many
bytes, how much of the copying overlapped kernels, and the idle gaps between kernels (a gap is time the
GPU waited, for a transfer or for the host). Writes the numbers as JSON and each preset's trace.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from hunyuan_core.families.hunyuan_video import HUNYUAN_VIDEO
from hunyuan_core.loading.loader import prepare_pipeline
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import SamplingSettings, sample
from hunyuan_core.testing.hunyuan_video import SCALES
from hunyuan_core.testing.random_models import build_random_model

from .measure import environment


def pinned_bandwidth(gigabytes: float = 2.0) -> float:
    """Host-to-device GB/s of one large copy from pinned memory."""
    source = torch.empty(int(gigabytes * 2**30), dtype=torch.uint8).pin_memory()
    target = torch.empty_like(source, device="cuda")
    target.copy_(source, non_blocking=True)  # warm-up
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    target.copy_(source, non_blocking=True)
    end.record()
    torch.cuda.synchronize()
    return source.numel() / 2**30 / (start.elapsed_time(end) / 1000)


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def timeline(trace_path: str) -> dict:
    """Kernel and host-to-device copy time (ms), their overlap, copied GB and the longest kernel gaps."""
    with open(trace_path) as trace:
        events = json.load(trace)["traceEvents"]
    kernels = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "kernel"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", "")]
    copy_spans = [(e["ts"], e["ts"] + e["dur"]) for e in copies]
    copied = sum(e.get("args", {}).get("bytes", 0) for e in copies)
    busy, moving = _union(kernels), _union(copy_spans)
    gaps = sorted((b[0] - a[1] for a, b in zip(busy, busy[1:])), reverse=True)
    span = (max(end for _, end in busy + moving) - min(start for start, _ in busy + moving)) if busy else 0.0
    return {
        "gpu_span_ms": span / 1000,
        "kernel_ms": _length(busy) / 1000,
        "htod_ms": _length(moving) / 1000,
        "htod_overlapped_ms": _intersection(busy, moving) / 1000,
        "htod_gb": copied / 2**30,
        "kernel_idle_ms": (span - _length(busy)) / 1000,
        "largest_gaps_ms": [round(gap / 1000, 2) for gap in gaps[:5]],
        "gaps_over_1ms": sum(1 for gap in gaps if gap > 1000),
    }


def profile_preset(model, preset: str, settings: SamplingSettings, conditioning, out_dir: str) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as disk:
        model.configure_offload(preset_plan(preset, "cuda", disk_folder=disk))
        sample(model, conditioning, settings)  # warm-up: traces the prefetch order, fills caches
        one_step = SamplingSettings(**{**vars(settings), "steps": 1})
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            sample(model, conditioning, one_step)
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        trace = os.path.join(out_dir, f"trace_{preset}.json")
        prof.export_chrome_trace(trace)
    return {"preset": preset, "profiled_step_s": wall, "peak_vram_gb": torch.cuda.max_memory_allocated() / 2**30,
            **timeline(trace)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="mid")
    parser.add_argument("--width", type=int, default=848)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--presets", nargs="*", default=["none", "balanced", "lowest_vram"])
    parser.add_argument("--out", default=".", help="folder for the JSON and the traces")
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    record = {"environment": environment(torch.device("cuda")), "pinned_htod_gb_s": pinned_bandwidth(), "results": []}
    print(f"pinned host-to-device: {record['pinned_htod_gb_s']:.1f} GB/s", flush=True)
    pipe, template = build_random_model(scale=args.scale, dtype=torch.bfloat16)
    model = prepare_pipeline(pipe, HUNYUAN_VIDEO, preset_plan("none", "cuda"), template)
    conditioning = encode_prompts(model, "a cat walks on the grass, realistic style")
    settings = SamplingSettings(width=args.width, height=args.height, frames=args.frames, steps=2)
    for preset in args.presets:
        result = profile_preset(model, preset, settings, conditioning, args.out)
        record["results"].append(result)
        print(json.dumps(result), flush=True)
        with open(os.path.join(args.out, "profile.json"), "w") as out:
            json.dump(record, out, indent=2)


if __name__ == "__main__":
    main()
