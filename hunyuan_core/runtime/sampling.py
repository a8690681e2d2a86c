"""Sampling: the flow-matching Euler loop of diffusers' HunyuanVideoPipeline, per batch.

The loop is diffusers' own (same scheduler, same transformer call, same guidance embedding) but written
out here so that it can take a batch of different prompts, give every video its own seed, batch the
classifier-free guidance rows, start from input latents (video-to-video), report and preview each step
and stop between steps. Each video of a batch equals the same prompt and seed generated alone.

Latents in and out of the core are raw VAE latents `[B, 16, (frames-1)//4+1, H/8, W/8]`, not scaled by
the VAE's scaling factor: the layout ComfyUI's native HunyuanVideo nodes use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .decode import check_latents
from .encode import Conditioning, PromptEmbeddings
from .recovery import recovering

MAX_SEED = 2**64 - 1
SAMPLING_ADVICE = (
    "Use a lower-VRAM offload preset (lowest_vram), fewer frames or a smaller size, fewer videos at once, "
    "or turn batched_cfg off."
)


def _nearest(value: int, step: int, offset: int, minimum: int) -> int:
    """The value of the form `offset + k*step` nearest to `value` (ties round up), at least `minimum`."""
    return max(minimum, (value - offset + step // 2) // step * step + offset)


def check_video_size(width: int, height: int, frames: int) -> None:
    """Raises `UserInputError` unless the size is one HunyuanVideo can generate."""
    if width < 16 or height < 16 or width % 16 or height % 16:
        suggestion = f"{_nearest(width, 16, 0, 16)}x{_nearest(height, 16, 0, 16)}"
        raise UserInputError(
            f"Width and height must be multiples of 16 (8x VAE times 2x patch), got {width}x{height}. "
            f"Try {suggestion}."
        )
    if frames < 1 or (frames - 1) % 4:
        suggestion = _nearest(frames, 4, 1, 1)
        raise UserInputError(
            f"Frames must be 4k+1 (1, 5, 9, ..., 61, ..., 129) because the VAE compresses time 4x, got {frames}. "
            f"Try {suggestion}."
        )


@dataclass(frozen=True)
class SamplingSettings:
    width: int = 848
    height: int = 480
    frames: int = 61
    steps: int = 30
    guidance_scale: float = 6.0  # embedded guidance (the distilled model's "CFG")
    true_cfg_scale: float = 1.0  # > 1 runs real classifier-free guidance against the negative prompt
    flow_shift: float = 7.0
    seed: int = 0
    videos_per_prompt: int = 1
    batched_cfg: bool = True  # with true CFG: conditional and unconditional rows in one transformer pass
    denoise: float = 1.0  # with input latents: the share of the schedule that is run (1: from pure noise)

    def validate(self) -> None:
        check_video_size(self.width, self.height, self.frames)
        if self.steps < 1:
            raise UserInputError(f"Steps must be at least 1, got {self.steps}.")
        if self.videos_per_prompt < 1:
            raise UserInputError(f"Videos per prompt must be at least 1, got {self.videos_per_prompt}.")
        for name in ("guidance_scale", "true_cfg_scale", "flow_shift", "denoise"):
            if not math.isfinite(getattr(self, name)):
                raise UserInputError(f"{name} must be a finite number, got {getattr(self, name)}.")
        if self.true_cfg_scale < 1:
            raise UserInputError(f"true_cfg_scale must be 1 (off) or more, got {self.true_cfg_scale}.")
        if self.flow_shift <= 0:
            raise UserInputError(f"flow_shift must be positive, got {self.flow_shift}.")
        if not 0 < self.denoise <= 1:
            raise UserInputError(f"denoise must be above 0 and at most 1, got {self.denoise}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserInputError(f"Seed must be between 0 and {MAX_SEED}, got {self.seed}.")

    @property
    def uses_true_cfg(self) -> bool:
        return self.true_cfg_scale > 1

    @property
    def schedule_length(self) -> int:
        """Steps of the whole schedule; with denoise < 1 only its last `steps` run (as ComfyUI does)."""
        return max(self.steps, int(self.steps / self.denoise))

    def sized_like(self, latents: torch.Tensor) -> SamplingSettings:
        """These settings with the video size of raw HunyuanVideo latents `[B, 16, t, h, w]`."""
        _, _, frames, height, width = latents.shape
        return replace(self, width=width * 8, height=height * 8, frames=(frames - 1) * 4 + 1)


def initial_noise(shape: tuple[int, ...], seeds: list[int]) -> torch.Tensor:
    """Float32 noise made on the CPU, one generator per video, so results do not depend on the device."""
    rows = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s % (MAX_SEED + 1))) for s in seeds]
    return torch.stack(rows)


def latent_shape(model: LoadedPipeline, settings: SamplingSettings) -> tuple[int, int, int, int]:
    pipe = model.pipe
    return (
        pipe.transformer.config.in_channels,
        (settings.frames - 1) // pipe.vae_scale_factor_temporal + 1,
        settings.height // pipe.vae_scale_factor_spatial,
        settings.width // pipe.vae_scale_factor_spatial,
    )


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
                   first_timestep: torch.Tensor) -> torch.Tensor:
    """Pure noise, or the input latents noised to the first timestep (scheduler.scale_noise)."""
    if init_latents is None:
        return noise
    if init_latents.shape[0] not in (1, noise.shape[0]):
        raise UserInputError(
            f"The input latent holds {init_latents.shape[0]} videos, but the sampler makes {noise.shape[0]} "
            "(prompts x videos per prompt). Give a latent with 1 video or with one per generated video."
        )
    clean = init_latents.to(noise.device, torch.float32) * model.pipe.vae.config.scaling_factor
    return scheduler.scale_noise(clean.expand_as(noise), first_timestep.expand(len(noise)), noise)


def _predict(transformer, latents, timestep, text: PromptEmbeddings, guidance, dtype) -> torch.Tensor:
    return transformer(
        hidden_states=latents.to(dtype),
        timestep=timestep,
        encoder_hidden_states=text.embeds,
        encoder_attention_mask=text.mask,
        pooled_projections=text.pooled,
        guidance=guidance,
        return_dict=False,
    )[0]


def _guided_prediction(transformer, latents, timestep, guidance, texts, cfg_scale, dtype) -> torch.Tensor:
    """One transformer pass per entry of `texts`: [positive] (no true CFG), [positive rows + negative rows]
    (batched CFG: the weights cross the bus once per step) or [positive, negative] (two passes)."""
    predictions = []
    for text in texts:
        copies = len(text) // len(latents)
        repeat = (copies,) + (1,) * (latents.ndim - 1)
        output = _predict(transformer, latents.repeat(repeat), timestep.repeat(copies), text,
                          guidance.repeat(copies), dtype)
        predictions.extend(output.chunk(copies))
    if len(predictions) == 1:
        return predictions[0]
    conditional, unconditional = predictions
    return unconditional + cfg_scale * (conditional - unconditional)


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
    if init_latents is not None:
        check_latents(init_latents, model.pipe.transformer.config.in_channels)
        settings = settings.sized_like(init_latents)
    settings.validate()
    if settings.uses_true_cfg and conditioning.negative is None:
        raise UserInputError(
            f"true_cfg_scale is {settings.true_cfg_scale} but no negative prompt was encoded. Encode a negative "
            "prompt (it may be empty) or set true_cfg_scale to 1."
        )
    device, dtype = model.device, model.dtypes["transformer"]
    transformer = model.pipe.transformer
    scaling = model.pipe.vae.config.scaling_factor
    rows = torch.arange(len(conditioning.prompts)).repeat_interleave(settings.videos_per_prompt)
    batch = len(rows)
    positive = conditioning.positive.select(rows).to(device, dtype)
    texts = [positive]
    if settings.uses_true_cfg:
        negative = conditioning.negative.select(rows).to(device, dtype)
        texts = [positive.concat(negative)] if settings.batched_cfg else [positive, negative]

    noise = initial_noise(latent_shape(model, settings), [settings.seed + k for k in range(batch)]).to(device)
    guidance = torch.full((batch,), settings.guidance_scale * 1000.0, dtype=dtype, device=device)
    scheduler, timesteps, sigmas = _scheduler(model, settings, device)
    latents = _start_latents(model, init_latents, noise, scheduler, timesteps[:1])

    with step_progress(on_step, settings.steps, "Sampling") as report:
        for step, t in enumerate(timesteps):
            timestep = t.expand(batch).to(latents.dtype)
            with recovering(model, ("transformer",), f"sampling {batch} video(s) of {settings.width}x{settings.height}, "
                            f"{settings.frames} frames", SAMPLING_ADVICE):
                noise_pred = _guided_prediction(
                    transformer, latents, timestep, guidance, texts, settings.true_cfg_scale, dtype
                )
            preview = (latents - sigmas[step] * noise_pred) / scaling  # the flow model's estimate of the result
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            report(step + 1, settings.steps, preview)

    return (latents / scaling).cpu()
