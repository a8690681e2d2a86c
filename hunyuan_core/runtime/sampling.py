"""Sampling: the flow-matching Euler loop of diffusers' HunyuanVideo pipelines, per batch, for every family.

The loop is diffusers' own (same scheduler, same transformer call, same guider) but written out here so
that it can take a batch of different prompts, give every video its own seed, batch the classifier-free
guidance rows, start from input latents (video-to-video), report and preview each step and stop between
steps. Each video of a batch equals the same prompt and seed generated alone. What differs between
families (the transformer's inputs, image conditioning, the guidance rule) comes from the model's family.

Latents in and out of the core are raw VAE latents `[B, C, (frames-1)//4+1, H/s, W/s]`, not scaled by the
VAE's scaling factor: the layout ComfyUI's native HunyuanVideo nodes use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from ..speed.run import StepClock, speed_run
from .encode import Conditioning
from .recovery import recovering
from .rows import RowTensors

MAX_SEED = 2**64 - 1
SAMPLING_ADVICE = (
    "Use a lower-VRAM offload preset (lowest_vram), fewer frames or a smaller size, fewer videos at once, "
    "or turn batched_cfg off."
)


@dataclass(frozen=True)
class SamplingSettings:
    width: int = 848
    height: int = 480
    frames: int = 61
    steps: int = 30  # 0: the model's default (HunyuanVideo 1.5: 50, 12 for a step-distilled folder)
    guidance_scale: float = 6.0  # embedded guidance (HunyuanVideo 1's distilled "CFG")
    true_cfg_scale: float = 0.0  # classifier-free guidance against the negative prompt: 1 off, 0 the model's own
    flow_shift: float = 7.0  # 0: the folder scheduler's
    seed: int = 0
    videos_per_prompt: int = 1
    batched_cfg: bool = True  # with CFG: conditional and unconditional rows in one transformer pass
    denoise: float = 1.0  # with input latents: the share of the schedule that is run (1: from pure noise)

    def validate(self) -> None:
        """Checks everything but the video size, whose rule is the model family's."""
        if self.steps < 0:
            raise UserInputError(f"Steps must be at least 1 (or 0 for the model's default), got {self.steps}.")
        if self.videos_per_prompt < 1:
            raise UserInputError(f"Videos per prompt must be at least 1, got {self.videos_per_prompt}.")
        for name in ("guidance_scale", "true_cfg_scale", "flow_shift", "denoise"):
            if not math.isfinite(getattr(self, name)):
                raise UserInputError(f"{name} must be a finite number, got {getattr(self, name)}.")
        if 0 < self.true_cfg_scale < 1 or self.true_cfg_scale < 0:
            raise UserInputError(
                f"true_cfg_scale must be 0 (the model's default), 1 (off) or more, got {self.true_cfg_scale}."
            )
        if self.flow_shift < 0:
            raise UserInputError(f"flow_shift must be positive (or 0 for the model's own), got {self.flow_shift}.")
        if not 0 < self.denoise <= 1:
            raise UserInputError(f"denoise must be above 0 and at most 1, got {self.denoise}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserInputError(f"Seed must be between 0 and {MAX_SEED}, got {self.seed}.")

    @property
    def schedule_length(self) -> int:
        """Steps of the whole schedule; with denoise < 1 only its last `steps` run (as ComfyUI does)."""
        return max(self.steps, int(self.steps / self.denoise))


def initial_noise(shape: tuple[int, ...], seeds: list[int]) -> torch.Tensor:
    """Float32 noise made on the CPU, one generator per video, so results do not depend on the device."""
    rows = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s % (MAX_SEED + 1))) for s in seeds]
    return torch.stack(rows)


def sized_like(model: LoadedPipeline, settings: SamplingSettings, latents: torch.Tensor) -> SamplingSettings:
    """`settings` with the video size of the raw latents `latents`, checked against the model's family."""
    model.family.check_latents(latents)
    width, height, frames = model.latent.video_size(latents)
    return replace(settings, width=width, height=height, frames=frames)


def _scheduler(model: LoadedPipeline, settings: SamplingSettings, device: torch.device):
    """A fresh scheduler per run (nothing carries over from a cancelled run), the timesteps to run and
    their noise levels."""
    scheduler = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config, shift=settings.flow_shift)
    sigmas = np.linspace(1.0, 0.0, settings.schedule_length + 1)[:-1]
    scheduler.set_timesteps(sigmas=sigmas, device=device)
    start = settings.schedule_length - settings.steps
    scheduler.set_begin_index(start)
    return scheduler, scheduler.timesteps[start:], scheduler.sigmas[start:]


def _start_latents(model: LoadedPipeline, init_latents: torch.Tensor | None, noise: torch.Tensor, scheduler,
                   first_timestep: torch.Tensor, run: RowTensors) -> torch.Tensor:
    """The family's start (noise, for image-to-video with a trace of the image), or the input latents noised
    to the first timestep (scheduler.scale_noise)."""
    if init_latents is None:
        return model.family.initial_latents(model, noise, run)
    if init_latents.shape[0] not in (1, noise.shape[0]):
        raise UserInputError(
            f"The input latent holds {init_latents.shape[0]} videos, but the sampler makes {noise.shape[0]} "
            "(prompts x videos per prompt). Give a latent with 1 video or with one per generated video."
        )
    clean = init_latents.to(noise.device, torch.float32) * model.latent.scaling_factor
    return scheduler.scale_noise(clean.expand_as(noise), first_timestep.expand(len(noise)), noise)


def _guided_prediction(model: LoadedPipeline, guider, latents: torch.Tensor,
                       timesteps: tuple[torch.Tensor, torch.Tensor], texts: list[RowTensors], run: RowTensors,
                       where: dict) -> torch.Tensor:
    """One transformer pass per entry of `texts`: [positive] (no CFG this step), [positive rows + negative
    rows] (batched CFG: the weights cross the bus once per step) or [positive, negative] (two passes),
    combined by the family's guider. Each pass runs in its own cache context (`where`: the step, its noise
    level and the step count, for the caches)."""
    family, transformer = model.family, model.pipe.transformer
    predictions = []
    names = ["cond_uncond"] if len(texts) == 1 and len(texts[0]) > len(latents) else ["cond", "uncond"]
    for name, text in zip(names, texts):
        copies = len(text) // len(latents)
        repeat = (copies,) + (1,) * (latents.ndim - 1)
        inputs = text.merge(run.repeat(copies))
        with transformer.cache_context(name, **where):
            output = family.predict(model, latents.repeat(repeat), *(t.repeat(copies) for t in timesteps), inputs)
        # Guidance and the scheduler's step in float32: diffusers' scheduler returns latents in the prediction's
        # dtype, and bf16 latents would round the result at every one of 50 steps.
        predictions.extend(output.float().chunk(copies))
    if len(predictions) == 1:
        return predictions[0]
    conditional, unconditional = predictions
    return guider.forward(conditional, unconditional).pred


def guides_some_step(guider, steps: int) -> bool:
    """Whether the guider runs the unconditional rows at any step (it may skip some, or all)."""
    for step in range(steps):
        guider.set_state(step=step, num_inference_steps=steps, timestep=None)
        if guider.num_conditions > 1:
            return True
    return False


def _check_conditioning(model: LoadedPipeline, conditioning: Conditioning, guider, settings: SamplingSettings) -> None:
    if conditioning.family != model.spec.pipeline_class:
        raise UserInputError(
            f"These prompts were encoded for a {conditioning.family} model, but the sampler's model is "
            f"{model.family.name}. Encode them with the same model."
        )
    if conditioning.negative is None and guides_some_step(guider, settings.steps):
        scale = settings.true_cfg_scale or f"{guider.guidance_scale}, the model's default"
        raise UserInputError(
            f"Classifier-free guidance is on (scale {scale}) but no negative prompt was encoded. Encode a negative "
            "prompt (it may be empty), or set true_cfg_scale to 1 to turn guidance off."
        )


@torch.no_grad()
def sample(
    model: LoadedPipeline,
    conditioning: Conditioning,
    settings: SamplingSettings,
    on_step: StepCallback | None = None,
    init_latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generates `len(prompts) * videos_per_prompt` videos; returns raw VAE latents on the CPU.

    Video k (prompt-major: all videos of the first prompt come first) uses seed `settings.seed + k`.
    With `init_latents` (raw VAE latents, one video or one per generated video) the videos take their
    size and start from them, noised to `settings.denoise` (video-to-video). `on_step` is called as
    `on_step(done, total, preview)`, `preview` being the current estimate of the result (raw latents).
    """
    family = model.family
    if init_latents is not None:
        settings = sized_like(model, settings, init_latents)
    settings.validate()
    family.check_video_size(settings.width, settings.height, settings.frames)
    settings = family.resolve(model, settings)
    guider = family.guider(model, settings)
    _check_conditioning(model, conditioning, guider, settings)
    device, dtype = model.device, model.dtypes["transformer"]
    scaling = model.latent.scaling_factor
    rows = torch.arange(len(conditioning.prompts)).repeat_interleave(settings.videos_per_prompt)
    batch = len(rows)
    positive = conditioning.positive.select(rows).to(device, dtype)
    negative = None if conditioning.negative is None else conditioning.negative.select(rows).to(device, dtype)

    shape = model.latent.shape(settings.width, settings.height, settings.frames)
    noise = initial_noise(shape, [settings.seed + k for k in range(batch)]).to(device)
    run = family.run_inputs(model, conditioning, rows, settings, shape)
    scheduler, timesteps, sigmas = _scheduler(model, settings, device)
    latents = _start_latents(model, init_latents, noise, scheduler, timesteps[:1], run)

    task = f"sampling {batch} video(s) of {settings.width}x{settings.height}, {settings.frames} frames"
    clock = StepClock()
    with step_progress(on_step, settings.steps, "Sampling") as report, \
            speed_run(model.pipe.transformer, model.speed, settings.steps, clock) as run_report:
        model.last_run = run_report
        for step, t in enumerate(timesteps):
            clock.timestep = float(t)
            where = {"step_index": step, "sigma": float(sigmas[step]), "num_inference_steps": settings.steps}
            following = timesteps[step + 1] if step + 1 < len(timesteps) else torch.zeros_like(t)
            step_times = (t.expand(batch).to(latents.dtype), following.expand(batch).to(latents.dtype))
            guider.set_state(step=step, num_inference_steps=settings.steps, timestep=t)
            if guider.num_conditions == 1:
                texts = [positive]
            else:
                texts = [positive.concat(negative)] if settings.batched_cfg else [positive, negative]
            with recovering(model, ("transformer",), task, SAMPLING_ADVICE):
                noise_pred = _guided_prediction(model, guider, latents, step_times, texts, run, where)
            estimate = family.after_step(model, latents - sigmas[step] * noise_pred, run)  # of the clean result
            latents = family.after_step(model, scheduler.step(noise_pred, t, latents, return_dict=False)[0], run)
            preview = estimate / scaling
            report(step + 1, settings.steps, preview)

    return (latents / scaling).cpu()
