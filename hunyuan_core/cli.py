"""Command line: `python -m hunyuan_core generate --model PATH|tiny --prompt ... --out video.webp`.

The model family comes from the folder's model_index.json. `--model tiny` (or `tiny-i2v`, ...) builds a
tiny random model of that family in a temporary folder, so a fresh machine can run the whole path (load,
offload, encode, sample, decode, save) in seconds; its videos are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path

from .devices import default_device
from .errors import UserInputError
from .families import ModelFamily
from .io.images import load_images
from .io.video_io import FORMATS, numbered_paths, save_video
from .loading.folder import read_model_index
from .loading.loader import DTYPES, load_pipeline, parse_dtype
from .loading.single_file import ModelSource
from .lora import apply_loras, parse_lora
from .offload.config import OffloadConfig, OffloadMode, OffloadPlan, describe
from .offload.presets import PRESETS, default_preset, preset_plan
from .offload.probe import count_calls, count_onloads, hook_counts
from .runtime.encode import encode_prompts
from .runtime.sampling import SamplingSettings, guides_some_step
from .runtime.sampling import sample as sample_latents
from .runtime.vae import TilingSettings, decode
from .spec import Role
from .speed.attention import usable_backends
from .speed.settings import ATTENTION_DEFAULT, CACHES, SpeedSettings, parse_cache
from .testing.random_models import RANDOM_MODELS, TINY, save_random_model

TINY_DEFAULTS = {"width": 64, "height": 64, "frames": 9, "steps": 4}
FAMILY_DEFAULTS = ("width", "height", "frames", "guidance_scale")
"""Settings whose default is the model family's reference value."""
MODEL_DEFAULTS = ("steps", "flow_shift", "true_cfg_scale")
"""Settings whose default is the folder's own (0 tells the core so): steps, the scheduler's shift, the guider."""


def _add_generate(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate videos from text (and a start image)")
    parser.add_argument("--model", required=True,
                        help=f"diffusers-format model folder, or a tiny random model: {', '.join(TINY)}")
    parser.add_argument("--transformer", metavar="FILE",
                        help="the transformer from a single file instead of the model's (ComfyUI's "
                             "models/diffusion_models: bf16, fp8, scaled fp8 or a GGUF)")
    parser.add_argument("--vae", metavar="FILE", help="the VAE from a single file (ComfyUI's models/vae)")
    parser.add_argument("--text-encoder", metavar="FILE",
                        help="the first text encoder from a single file (models/text_encoders): HunyuanVideo 1's "
                             "Llama (llava_llama3_*), 1.5's Qwen2.5-VL (qwen_2.5_vl_7b*)")
    parser.add_argument("--clip", "--text-encoder-2", metavar="FILE", dest="clip",
                        help="the second text encoder from a single file: HunyuanVideo 1's CLIP-L "
                             "(clip_l.safetensors), 1.5's ByT5 (byt5_small_glyphxl_fp16.safetensors)")
    parser.add_argument("--image-encoder", metavar="FILE",
                        help="image-to-video, from models/clip_vision: 1.5's SigLIP (sigclip_vision_patch14_384), or "
                             "HunyuanVideo 1's Llava vision tower (llava_llama3_vision, with --text-encoder)")
    parser.add_argument("--prompt", action="append", help="prompt (repeat for a batch)")
    parser.add_argument("--clip-prompt", action="append",
                        help="HunyuanVideo 1: separate prompt for CLIP (one, or one per prompt)")
    parser.add_argument("--negative-prompt", help="negative prompt, used when --true-cfg-scale > 1")
    parser.add_argument("--image", action="append",
                        help="image-to-video: start image (one for every prompt, or repeat: one per prompt)")
    defaults = SamplingSettings()
    for field in fields(SamplingSettings):
        default = getattr(defaults, field.name)
        if field.name in FAMILY_DEFAULTS + MODEL_DEFAULTS:
            default = "the model family's" if field.name in FAMILY_DEFAULTS else "the model folder's"
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=None, help=f"default: {default}")
    parser.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                        help="a LoRA for the transformer, strength 1 unless given (repeat for several)")
    parser.add_argument("--device", help="compute device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", action="append", default=[], metavar="COMPONENT=DTYPE",
                        help=f"e.g. transformer=bf16 (a component or a role: "
                             f"{', '.join(role.value for role in Role)}); dtypes: {', '.join(DTYPES)}")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="offload preset for every component (default: balanced on a GPU, none on a CPU)")
    parser.add_argument("--offload", choices=[m.value for m in OffloadMode],
                        help="custom group offloading for every component instead of a preset")
    parser.add_argument("--offload-device", default="cpu")
    parser.add_argument("--blocks-per-group", type=int, default=1)
    for flag in ("use-stream", "record-stream", "non-blocking", "low-cpu-mem-usage"):
        parser.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--offload-folder", help="offload weights to files in this folder instead of RAM")
    parser.add_argument("--no-tiling", action="store_true", help="decode without spatial VAE tiling")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--out", default="video.webp", help=f"output file ({', '.join(FORMATS)}); numbered for batches")
    _add_speed(parser)
    _add_parallel(parser)


def _add_speed(parser) -> None:
    caches = "; ".join(f"{c.name}: {c.parameter}, default {c.default}" for c in CACHES.values())
    parser.add_argument("--cache", default="none", metavar="NAME[:VALUE]", help=f"step cache: {caches}")
    parser.add_argument("--mag-ratios", metavar="FILE|LIST",
                        help="--cache mag: calibrated ratios (a JSON file or comma-separated); without, the run "
                             "calibrates them, prints them and saves them next to --out")
    parser.add_argument("--attention", default=ATTENTION_DEFAULT, metavar="BACKEND",
                        help=f"attention backend of diffusers' dispatcher: {', '.join(usable_backends())}")
    parser.add_argument("--fp8", nargs="*", metavar="COMPONENT",
                        help="store these components (or roles) in fp8, computing in bf16; alone: the transformer")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer's repeated blocks")


def _add_parallel(parser) -> None:
    parser.add_argument("--parallel", metavar="ulysses=N[,cfg=2]",
                        help="several GPUs, one process each, started by torchrun: ulysses=N splits every "
                             "transformer call's sequence over N processes, cfg=2 runs the two halves of "
                             "classifier-free guidance on two groups of them (torchrun --nproc_per_node N -m "
                             "hunyuan_core generate ... --parallel ulysses=N); ring=N is refused with the reason")


def _speed_settings(args) -> SpeedSettings:
    cache, value = parse_cache(args.cache)
    ratios = None
    if args.mag_ratios:
        text = Path(args.mag_ratios).read_text() if Path(args.mag_ratios).is_file() else args.mag_ratios
        try:
            ratios = tuple(float(r) for r in json.loads(text)) if text.lstrip().startswith("[") else tuple(
                float(r) for r in text.replace(",", " ").split())
        except ValueError as error:
            raise UserInputError(f"--mag-ratios: not a list of numbers ({error}).") from error
    fp8 = None if args.fp8 is None else tuple(args.fp8) or ("transformer",)
    speed = SpeedSettings(cache=cache, cache_value=value, mag_ratios=ratios, attention=args.attention,
                          fp8=fp8 or (), compile=args.compile)
    speed.validate()
    return speed


def _sampling_settings(args, family: ModelFamily, tiny: bool) -> SamplingSettings:
    """The settings given, else the tiny model's small ones, else the family's reference values or the
    folder's own."""
    values = {}
    for field in fields(SamplingSettings):
        value = getattr(args, field.name)
        if value is None and tiny:
            value = TINY_DEFAULTS.get(field.name)
        if value is None and field.name in FAMILY_DEFAULTS:
            value = getattr(family.defaults, field.name)
        if value is None and field.name in MODEL_DEFAULTS:
            value = 0
        if value is not None:
            values[field.name] = value
    return SamplingSettings(**values)


def _offload_plan(args) -> OffloadPlan:
    device = args.device or str(default_device())
    if args.offload is None:
        preset = args.preset or default_preset(device)
        return preset_plan(preset, device, args.offload_device, args.offload_folder)
    if args.preset is not None:
        raise UserInputError("Give either --preset or --offload (custom settings), not both.")
    config = OffloadConfig(
        mode=args.offload,
        onload_device=device,
        offload_device=args.offload_device,
        num_blocks_per_group=args.blocks_per_group,
        use_stream=args.use_stream,
        record_stream=args.record_stream,
        non_blocking=args.non_blocking,
        low_cpu_mem_usage=args.low_cpu_mem_usage,
        disk_folder=args.offload_folder,
    )
    return OffloadPlan.uniform(config)


def _dtypes(pairs: list[str]) -> dict:
    dtypes = {}
    for pair in pairs:
        name, _, dtype = pair.partition("=")
        if not dtype:
            raise UserInputError(f"--dtype takes COMPONENT=DTYPE, e.g. transformer=bf16; got {pair!r}.")
        dtypes[name] = parse_dtype(dtype)
    return dtypes


def generate(args, parallel=None) -> list[Path]:
    """One generation; under torchrun, `parallel` is this process's `ParallelSession`: every rank loads and
    samples, rank 0 alone decodes and writes."""
    tiny = args.model in TINY
    plan = _offload_plan(args)
    speed = _speed_settings(args)
    images = load_images(args.image) if args.image else None
    loras = [parse_lora(text) for text in args.lora]
    with ExitStack() as stack:
        folder = args.model
        if tiny:
            folder = getattr(args, "tiny_folder", None) or _tiny_model(args.model, stack)
        source = ModelSource(folder=folder, transformer=args.transformer, vae=args.vae,
                             text_encoder=args.text_encoder, text_encoder_2=args.clip,
                             image_encoder=args.image_encoder)
        family = read_model_index(source.folder, provided=source.files)
        settings = _sampling_settings(args, family, tiny)
        settings.validate()
        family.check_video_size(settings.width, settings.height, settings.frames)
        if parallel is not None:
            parallel.check_before_loading(folder, family, settings, plan, speed, _dtypes(args.dtype), source.files)
        model = load_pipeline(source if source.files else folder, _dtypes(args.dtype), plan, speed=speed)
        stack.callback(model.release)
        print(f"model: {source.describe()} ({family.name})\ndevice: {model.device}\n"
              f"offload:\n{describe(model.offload_configs)}")
        for line in apply_loras(model, loras):  # the weights final before context parallelism wraps the model
            print(line)
        if parallel is not None:
            parallel.attach(model)
        negative = args.negative_prompt
        resolved = family.resolve(model, settings)
        guided = guides_some_step(family.guider(model, resolved), resolved.steps)
        if negative is None and guided:
            negative = ""  # guidance is on (the folder's guider, say): an empty negative prompt, as diffusers uses
        if parallel is not None:
            parallel.check_run(guided, settings.batched_cfg)
        main_rank = parallel is None or parallel.is_main
        with count_onloads(model.modules) as onloads, count_calls(model.modules) as calls:
            conditioning = encode_prompts(
                model, args.prompt or ["a cat walks on the grass, realistic"], args.clip_prompt, negative,
                on_pass=None if main_rank else (lambda *_: None), images=images,
            )
            latents = sample_latents(model, conditioning, settings,
                                     on_step=None if parallel is None else parallel.agreed_steps())
            videos = decode(model, latents, TilingSettings(spatial=not args.no_tiling)) if main_rank else []
        _report_onloads(hook_counts(model.modules), onloads, calls)
        print(f"run: {model.last_run.describe()}")
        if model.last_run.mag_ratios:
            saved = Path(args.out).with_suffix(".mag_ratios.json")
            saved.write_text(json.dumps(model.last_run.mag_ratios))
            print(f"MagCache ratios saved to {saved}: pass --cache mag --mag-ratios {saved}")
    paths = [save_video(video, path, args.fps) for video, path in zip(videos, numbered_paths(args.out, len(videos)))]
    for path in paths:
        print(f"wrote {path}")
    return paths


def _tiny_model(name: str, stack: ExitStack) -> Path:
    scratch = stack.enter_context(tempfile.TemporaryDirectory())
    return save_random_model(Path(scratch) / name, TINY[name])


def _generate_in_parallel(args) -> list[Path]:
    """`generate` as one rank of a torchrun job: this rank's device, and the report on rank 0 only."""
    from .parallel import ParallelSettings, parallel_session, quiet_rank
    from .parallel.launch import check_started_by_torchrun

    settings = ParallelSettings.parse(args.parallel)
    check_started_by_torchrun(settings)
    with ExitStack() as stack:
        if int(os.environ.get("RANK", "0")):
            stack.enter_context(quiet_rank())
        if args.model in TINY:  # before the process group: transformers then saves weights on rank 0 only
            args.tiny_folder = _tiny_model(args.model, stack)
        session = stack.enter_context(parallel_session(settings, args.device))
        args.device = str(session.device)
        args.offload_folder = session.disk_folder(args.offload_folder)
        return generate(args, session)


def _error_line(args, error: Exception) -> str | None:
    """The error as the CLI prints it; under --parallel, ranks other than 0 name themselves and leave the
    setup errors that every rank finds alike to rank 0."""
    rank = int(os.environ.get("RANK", "0")) if getattr(args, "parallel", None) else 0
    if rank == 0:
        return f"error: {error}"
    from .parallel import ParallelSetupError

    return None if isinstance(error, ParallelSetupError) else f"error (rank {rank}): {error}"


def _report_onloads(hooks: dict[str, int], onloads: dict[str, int], calls: dict[str, int]) -> None:
    for name, count in hooks.items():
        if count:
            status = "ok" if onloads[name] else "NEVER ONLOADED" if calls[name] else "not used in this run"
            print(f"offload check: {name}: {count} hooks, {onloads[name]} onloads - {status}")


def _make_random_model(args) -> None:
    try:
        folder = save_random_model(args.folder, args.family, args.scale)
    except ValueError as error:
        raise UserInputError(str(error)) from error
    print(f"wrote {folder} ({RANDOM_MODELS[args.family].family}, {args.scale})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hunyuan_core", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate(subparsers)
    random_model = subparsers.add_parser("make-random-model", help="save a random model as a diffusers folder")
    random_model.add_argument("folder")
    random_model.add_argument("--family", choices=list(RANDOM_MODELS), default="hunyuan-video",
                              help="; ".join(f"{name}: {model.family}" for name, model in RANDOM_MODELS.items()))
    scales = sorted({scale for model in RANDOM_MODELS.values() for scale in model.scales})
    random_model.add_argument("--scale", choices=scales, default="tiny",
                              help="tiny: seconds on a CPU; larger scales (HunyuanVideo 1: small, mid, full) have "
                                   "the real widths, random weights")
    args = parser.parse_args(argv)
    try:
        if args.command != "generate":
            _make_random_model(args)
        elif args.parallel:
            _generate_in_parallel(args)
        else:
            generate(args)
    except UserInputError as error:
        line = _error_line(args, error)
        if line:
            print(line, file=sys.stderr)
        return 2
    return 0
