"""Offloading and speed levers, side by side: our presets, batched vs two-pass CFG, diffusers' own offload
modes, step caches, attention backends, fp8 storage and regional compile.

    python -m benchmarks.offload_benchmark --scale mid --width 256 --height 256 --frames 17 --steps 4
    python -m benchmarks.offload_benchmark --model hunyuan-video-1.5 --scale full --width 1280 --height 720 \
        --frames 121 --steps 3 --skip-decode --modes none balanced lowest_vram

Builds a random model of the chosen family and scale (speed and memory do not depend on weight values), then
for each mode in one process: median time per denoising step after warm-up, the transformer block calls
that ran (a cache skips some), peak accelerator memory, the most transformer weight bytes the hooks had
onloaded at once (measured from the hooks' own events, so also on a CPU), peak host RSS (applying the mode
included), the times to apply the mode and to run (encode, sample and, unless --skip-decode, decode), ratios
against no offloading, and for a speed lever its deviation from the same preset without it (the largest
latent difference; the PSNR of latents, and of decoded frames when decoding). Random weights say nothing
about visual quality: the deviation only shows how far a lever moves the numbers. Prints a table and writes
JSON after every mode. On a CPU the times are only ratios (nothing moves between devices there). fp8 storage
and compile cannot be undone, nor can diffusers' sequential offload, so their modes run last.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass, replace

import torch

from hunyuan_core.families import FAMILIES
from hunyuan_core.loading.loader import prepare_pipeline
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.offload.probe import peak_onloaded_bytes
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import (
    SamplingSettings,
    initial_noise,
    sample,
)
from hunyuan_core.runtime.vae import decode
from hunyuan_core.speed.compile import compile_blocks
from hunyuan_core.speed.settings import SpeedSettings
from hunyuan_core.speed.storage import store_in_fp8
from hunyuan_core.testing.random_models import RANDOM_MODELS, build_random_model

from .measure import PeakDeviceMemory, PeakRss, StepClock, environment, synchronize

PROMPT = "a cat walks on the grass, realistic style"
NEGATIVE = "blurry, low quality"
CFG_SCALE = 4.0


@dataclass(frozen=True)
class Mode:
    name: str
    preset: str | None = None  # one of ours; None for diffusers' own modes
    diffusers: str | None = None  # "model" or "sequential" cpu offload
    true_cfg: bool = False
    batched_cfg: bool = True
    speed: SpeedSettings | None = None  # a speed lever, compared with the same preset without it


def _levers(preset: str) -> list[Mode]:
    caches = [("first_block", 0.05), ("first_block", 0.1), ("mag", 0.06), ("mag", 0.12), ("taylorseer", 3),
              ("taylorseer", 5), ("sea", 0.25), ("sea", 0.5), ("faster", 2), ("pyramid", 2)]
    modes = [Mode(f"mag calibrate, {preset}", preset=preset, speed=SpeedSettings(cache="mag"))]
    modes += [Mode(f"{cache} {value}, {preset}", preset=preset, speed=SpeedSettings(cache=cache, cache_value=value))
              for cache, value in caches]
    modes += [Mode(f"attention {backend}, {preset}", preset=preset, speed=SpeedSettings(attention=backend))
              for backend in ("_native_math", "flex", "_native_cudnn", "_native_efficient", "flash_varlen",
                              "sage_varlen")]
    return modes


MODES = [
    Mode("none", preset="none"),
    Mode("balanced", preset="balanced"),
    Mode("lowest_vram", preset="lowest_vram"),
    Mode("low_system_ram", preset="low_system_ram"),
    Mode("disk", preset="disk"),
    Mode("cfg two-pass, none", preset="none", true_cfg=True, batched_cfg=False),
    Mode("cfg batched, none", preset="none", true_cfg=True),
    Mode("cfg two-pass, lowest_vram", preset="lowest_vram", true_cfg=True, batched_cfg=False),
    Mode("cfg batched, lowest_vram", preset="lowest_vram", true_cfg=True),
    Mode("diffusers enable_model_cpu_offload", diffusers="model"),
    *_levers("none"),
    *_levers("balanced"),
    # Last: they change the modules for good (sequential offload leaves the weights on the meta device).
    Mode("fp8, balanced", preset="balanced", speed=SpeedSettings(fp8=("transformer",))),
    Mode("fp8, none", preset="none", speed=SpeedSettings(fp8=("transformer",))),
    Mode("fp8 + compile, none", preset="none", speed=SpeedSettings(fp8=("transformer",), compile=True)),
    Mode("fp8 + compile + first_block 0.05, balanced", preset="balanced",
         speed=SpeedSettings(fp8=("transformer",), compile=True, cache="first_block", cache_value=0.05)),
    Mode("diffusers enable_sequential_cpu_offload", diffusers="sequential"),
]
MAG_RATIOS: dict[str, tuple[float, ...]] = {}  # per preset, from its calibrating mode


def prepare(model, mode: Mode, device, disk_folder: str) -> None:
    """Puts the mode's offloading and speed settings in place (outside the measured run: moving, pinning,
    casting and compiling are load time)."""
    if mode.preset is not None:
        speed = mode.speed or SpeedSettings(fp8=model.speed.fp8, compile=model.speed.compile)
        if speed.fp8 and not model.speed.fp8:
            with model.modifying(model.spec.module_names):  # fp8 storage goes under the offload hooks
                store_in_fp8(model.modules["transformer"])
        if speed.compile and not model.speed.compile:
            compile_blocks(model.modules["transformer"])
        model.speed = SpeedSettings(fp8=speed.fp8, compile=speed.compile)  # what the modules now are
        model.configure_offload(preset_plan(mode.preset, str(device), disk_folder=disk_folder))
        if speed.cache == "mag" and speed.cache_value is not None:
            speed = replace(speed, mag_ratios=MAG_RATIOS[mode.preset])
        model.configure_speed(speed)
        return
    model.detach_offload()
    if mode.diffusers == "model":
        model.pipe.enable_model_cpu_offload(device=device)
    else:
        model.pipe.enable_sequential_cpu_offload(device=device)


def run_ours(model, mode: Mode, settings: SamplingSettings, device, with_decode: bool):
    conditioning = encode_prompts(model, [PROMPT], negative_prompts=NEGATIVE if mode.true_cfg else None)
    clock = StepClock(device)
    run_settings = replace(settings, true_cfg_scale=CFG_SCALE if mode.true_cfg else 1.0,
                           batched_cfg=mode.batched_cfg)
    latents = sample(model, conditioning, run_settings, on_step=clock)
    if model.last_run.mag_ratios:
        MAG_RATIOS[mode.preset] = tuple(model.last_run.mag_ratios)
    frames = decode(model, latents) if with_decode else None
    return clock, latents, frames


def psnr(result: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal to noise ratio in dB, the reference's range as the peak."""
    error = torch.mean((result.float() - reference.float()) ** 2).item()
    peak = (reference.max() - reference.min()).item()
    return float("inf") if error == 0 else 10 * math.log10(peak**2 / error)


def run_diffusers(model, settings: SamplingSettings, device, with_decode: bool) -> StepClock:
    pipe = model.pipe
    clock = StepClock(device)

    def on_step_end(pipeline, step, timestep, tensors):
        clock(step + 1, settings.steps)
        return {}

    noise = initial_noise(model.latent.shape(settings.width, settings.height, settings.frames), [settings.seed]).to(device)
    pipe(prompt=PROMPT, height=settings.height, width=settings.width, num_frames=settings.frames,
         num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale, latents=noise,
         prompt_template=model.prompt_template, callback_on_step_end=on_step_end,
         output_type="pt" if with_decode else "latent")
    pipe.remove_all_hooks()
    return clock


PLAIN: dict[str, tuple] = {}  # per preset: the latents and frames without a lever


def measure(model, mode: Mode, settings, device, warmup: int, disk_folder: str, with_decode: bool) -> dict:
    """Host RSS covers applying the mode (pinned copies count); VRAM, weights and time cover the run."""
    latents = frames = None
    with PeakRss() as rss:
        started = time.perf_counter()
        prepare(model, mode, device, disk_folder)
        prepared = time.perf_counter()
        with PeakDeviceMemory(device) as vram, peak_onloaded_bytes(model.modules) as onloaded:
            if mode.preset is not None:
                clock, latents, frames = run_ours(model, mode, settings, device, with_decode)
            else:
                clock = run_diffusers(model, settings, device, with_decode)
            synchronize(device)
    transformer = model.modules["transformer"]
    weights = None if mode.preset is None else onloaded["transformer"]
    if mode.preset == "none":
        weights = sum(t.numel() * t.element_size() for t in (*transformer.parameters(), *transformer.buffers()))
    deviation = {}
    if mode.preset is not None and mode.speed is None and not mode.true_cfg:
        PLAIN[mode.preset] = (latents, frames)
    elif mode.speed is not None and mode.preset in PLAIN:
        plain_latents, plain_frames = PLAIN[mode.preset]
        deviation = {"max_latent_diff": (latents - plain_latents).abs().max().item(),
                     "latent_psnr_db": psnr(latents, plain_latents)}
        if frames is not None and plain_frames is not None:
            deviation["frames_psnr_db"] = psnr(frames, plain_frames)
    report = model.last_run if mode.preset is not None else None
    return {
        "mode": mode.name,
        "step_s": clock.median_step(warmup),
        "sampling_s": clock.times[-1] - clock.times[0],
        "blocks_run": None if report is None else report.blocks_run,
        "blocks_total": None if report is None else report.blocks_total,
        "attention": None if report is None else dict(report.attention),
        **deviation,
        "peak_vram_gb": None if vram.peak is None else vram.peak / 2**30,
        "transformer_weights_on_device_mb": None if weights is None else weights / 2**20,
        "peak_rss_gb": rss.peak / 2**30,
        "setup_s": prepared - started,
        "run_s": time.perf_counter() - prepared,
    }


def table(results: list[dict]) -> str:
    base = next((r["step_s"] for r in results if r["mode"] == "none" and "error" not in r), None)
    lines = ["| mode | s/step (median) | vs none | sampling s | block calls run | peak VRAM GB | transformer weights "
             "on device MB | peak RSS GB | setup s | run s | max latent diff | latent PSNR dB | frames PSNR dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['mode']} | n/a: {r['error']} |" + " |" * 11)
            continue
        vram = "-" if r["peak_vram_gb"] is None else f"{r['peak_vram_gb']:.2f}"
        weights = "-" if r["transformer_weights_on_device_mb"] is None else f"{r['transformer_weights_on_device_mb']:.1f}"
        ratio = "-" if base is None else f"{r['step_s'] / base:.2f}x"
        blocks = "-" if r["blocks_total"] is None else f"{r['blocks_run']}/{r['blocks_total']}"
        deviation = " | ".join(f"{r[k]:.4g}" if k in r else "-" for k in ("max_latent_diff", "latent_psnr_db",
                                                                             "frames_psnr_db"))
        lines.append(f"| {r['mode']} | {r['step_s']:.4f} | {ratio} | {r['sampling_s']:.2f} | {blocks} | {vram} | "
                     f"{weights} | {r['peak_rss_gb']:.2f} | {r['setup_s']:.1f} | {r['run_s']:.1f} | {deviation} |")
    by_name = {r["mode"]: r for r in results if "error" not in r}
    for preset in ("none", "lowest_vram"):
        two, one = by_name.get(f"cfg two-pass, {preset}"), by_name.get(f"cfg batched, {preset}")
        if two and one:
            lines.append(f"\nbatched CFG speed-up per step under '{preset}': {two['step_s'] / one['step_s']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(RANDOM_MODELS), default="hunyuan-video",
                        help="the random model's family")
    parser.add_argument("--scale", default="tiny", help="tiny, or a larger scale the family has (small, mid, full)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=4, help="steps per mode, warm-up included")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the median")
    parser.add_argument("--batch", type=int, default=1, help="videos per prompt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", nargs="*", help="mode names to run (default: all)")
    parser.add_argument("--skip-decode", action="store_true", help="leave VAE decoding out of each run")
    parser.add_argument("--json", default="benchmark.json")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    settings = SamplingSettings(width=args.width, height=args.height, frames=args.frames, steps=args.steps,
                                videos_per_prompt=args.batch, seed=0)
    settings.validate()
    modes = [m for m in MODES if not args.modes or m.name in args.modes]
    print(f"building the {args.scale} random model ({dtype}) ...", flush=True)
    pipe, template = build_random_model(args.model, scale=args.scale, dtype=dtype)
    family = FAMILIES[type(pipe).__name__]
    model = prepare_pipeline(pipe, family, preset_plan("none", str(device)), template)

    results = []
    with tempfile.TemporaryDirectory() as disk_folder:
        for mode in modes:
            print(f"- {mode.name}", flush=True)
            try:
                results.append(measure(model, mode, settings, device, args.warmup, disk_folder, not args.skip_decode))
            except Exception as error:  # a mode that fails here is recorded, not fatal
                results.append({"mode": mode.name, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"})
            print(f"  {results[-1]}", flush=True)
            record = {"environment": environment(device), "model": args.model, "scale": args.scale,
                      "settings": vars(args), "results": results}
            with open(args.json, "w") as out:  # after every mode: a run cut short keeps what it measured
                json.dump(record, out, indent=2)
    print(json.dumps(record["environment"], indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
