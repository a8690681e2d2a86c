"""What a model family is to the shared core: data, plus the few steps in which families differ.

Loading, offloading and its proof, batching, batched CFG, progress, cancelling, recovery, tiling and the
nodes are shared. A family contributes its components (`spec`), its latent format, its defaults, how it
encodes prompts (and images) into the transformer's conditioning inputs, the per-run inputs it adds (an
embedded guidance scale, image latents), how one denoising step calls its transformer, and its
classifier-free-guidance rule (a diffusers guider).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from ..errors import UserInputError
from ..quiet import GUIDERS, quiet
from ..spec import PipelineSpec

if TYPE_CHECKING:
    from ..loading.model import LoadedPipeline
    from ..runtime.conditioning import Conditioning
    from ..runtime.rows import RowTensors
    from ..runtime.sampling import SamplingSettings


@dataclass(frozen=True)
class LatentFormat:
    """A family's video latents (a loaded folder's configs must agree: `ModelFamily.check_loaded`)."""

    channels: int
    spatial: int  # VAE compression of height and width
    temporal: int  # VAE compression of time: frames are temporal*k + 1
    patch: int  # the transformer's spatial patch: sizes are multiples of spatial*patch
    scaling_factor: float  # the sampler works on raw VAE latents times this
    comfy_format: str  # the class in ComfyUI's comfy.latent_formats with the same layout and scale

    @property
    def size_multiple(self) -> int:
        return self.spatial * self.patch

    def shape(self, width: int, height: int, frames: int) -> tuple[int, int, int, int]:
        """Latent `[channels, t, h, w]` of one video."""
        return (self.channels, (frames - 1) // self.temporal + 1, height // self.spatial, width // self.spatial)

    def video_size(self, latents: torch.Tensor) -> tuple[int, int, int]:
        """Width, height and frames of the videos that `[B, C, t, h, w]` latents hold."""
        _, _, frames, height, width = latents.shape
        return width * self.spatial, height * self.spatial, (frames - 1) * self.temporal + 1

    def describe(self) -> str:
        return (f"of {self.channels} channels, {self.spatial}x/{self.temporal}x compression, patch {self.patch}, "
                f"scale {self.scaling_factor}")


@dataclass(frozen=True)
class FamilyDefaults:
    """The family's reference settings, for the CLI and new workflows; the flow shift and the guidance scale
    come from the folder's scheduler and guider configs."""

    width: int
    height: int
    frames: int
    steps: int
    guidance_scale: float  # embedded guidance; ignored by families without a guidance embedding


class ModelFamily:
    """Base of the families; subclasses set the data and override the steps that differ."""

    name: str  # for people: "HunyuanVideo 1.5 image-to-video"
    spec: PipelineSpec
    latent: LatentFormat
    defaults: FamilyDefaults
    max_text_tokens: int  # text tokens the transformer attends over at most, for the memory estimate
    takes_image = False  # image-to-video: a start image per prompt
    secondary_prompt: str | None = None  # a second text encoder's own prompt ("CLIP"), if the family has one

    def prepare_pipeline(self, pipe) -> None:
        """Readies a freshly loaded diffusers pipeline (tokenizer settings, the batch-safe attention)."""

    def default_prompt_template(self, pipe) -> dict | None:
        """The text encoder's prompt template for folders without a prompt_template.json (None: none used)."""
        return None

    def default_steps(self, pipe) -> int:
        return self.defaults.steps

    def resolve(self, model: LoadedPipeline, settings: SamplingSettings) -> SamplingSettings:
        """`settings` with the model's own values where they say 0: the family's steps for this folder, the
        folder scheduler's flow shift (classifier-free guidance at 0 is the guider's business)."""
        from dataclasses import replace

        return replace(settings, steps=settings.steps or self.default_steps(model.pipe),
                       flow_shift=settings.flow_shift or model.pipe.scheduler.config.shift)

    def prompt_template_problem(self, template) -> str | None:
        """What is wrong with a folder's prompt_template.json, completing "<path> ..."; None if it is usable."""
        return "is not used by this model family."

    def check_loaded(self, pipe) -> None:
        """Refuses a folder whose configs do not have the family's latent layout (a mislabelled folder)."""
        found = LatentFormat(
            channels=pipe.vae.config.latent_channels, spatial=pipe.vae_scale_factor_spatial,
            temporal=pipe.vae_scale_factor_temporal, patch=pipe.transformer.config.patch_size,
            scaling_factor=pipe.vae.config.scaling_factor, comfy_format=self.latent.comfy_format,
        )
        if found != self.latent:
            raise UserInputError(
                f"This {self.name} folder's configs describe latents {found.describe()}, but the family's are "
                f"{self.latent.describe()}. The folder is not a {self.name} model; download it again."
            )

    def check_latents(self, latents) -> None:
        latent = self.latent
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != latent.channels:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise UserInputError(
                f"Expected {self.name} latents shaped [batch, {latent.channels}, frames, height, width], got "
                f"{shape}. Connect the output of a sampler running this model, or an empty latent of its family."
            )

    def check_video_size(self, width: int, height: int, frames: int) -> None:
        """Raises `UserInputError` with a valid suggestion unless the size is one this family can generate."""
        latent = self.latent
        multiple = latent.size_multiple
        if width < multiple or height < multiple or width % multiple or height % multiple:
            suggestion = f"{_nearest(width, multiple, 0, multiple)}x{_nearest(height, multiple, 0, multiple)}"
            raise UserInputError(
                f"Width and height must be multiples of {multiple} ({latent.spatial}x VAE times {latent.patch}x "
                f"patch), got {width}x{height}. Try {suggestion}."
            )
        if frames < 1 or (frames - 1) % latent.temporal:
            step = latent.temporal
            raise UserInputError(
                f"Frames must be {step}k+1 (1, {step + 1}, {2 * step + 1}, ..., 61, ..., 129) because the VAE "
                f"compresses time {step}x, got {frames}. Try {_nearest(frames, step, 1, 1)}."
            )

    # Encoding -------------------------------------------------------------------------------------------

    def encode_text(self, model: LoadedPipeline, prompts: list[str], secondary: list[str] | None,
                    images: tuple[torch.Tensor, ...] | None, report_pass: Callable[[], None]) -> RowTensors:
        """One row per prompt of the transformer's text inputs; `report_pass()` after each encoder pass.
        `images` are the prompts' start images (None for negative prompts) for encoders that see them."""
        raise NotImplementedError

    def text_passes(self) -> int:
        """Encoder passes per prompt set, for progress."""
        return 1

    # Sampling -------------------------------------------------------------------------------------------

    def run_inputs(self, model: LoadedPipeline, conditioning: Conditioning, rows: torch.Tensor,
                   settings: SamplingSettings, latent_shape: tuple[int, ...]) -> RowTensors:
        """Per-video transformer inputs, the same for every step and for both CFG halves (an embedded
        guidance scale, image latents at the video's size)."""
        from ..runtime.rows import RowTensors

        return RowTensors({})

    def predict(self, model: LoadedPipeline, latents: torch.Tensor, timestep: torch.Tensor,
                next_timestep: torch.Tensor, inputs: RowTensors) -> torch.Tensor:
        """The transformer's velocity prediction for `latents` (one row per input row); `next_timestep` is
        the step's target (0 after the last), for models distilled to jump there (MeanFlow)."""
        transformer = model.pipe.transformer
        return transformer(hidden_states=latents.to(transformer.dtype), timestep=timestep, **inputs.tensors,
                           return_dict=False)[0]

    def initial_latents(self, model: LoadedPipeline, noise: torch.Tensor, inputs: RowTensors) -> torch.Tensor:
        """The latents the first step starts from when no input latents are given."""
        return noise

    def after_step(self, model: LoadedPipeline, latents: torch.Tensor, inputs: RowTensors) -> torch.Tensor:
        """Latents (or the preview) after a scheduler step: image-to-video may pin the first frame here."""
        return latents

    def guider(self, model: LoadedPipeline, settings: SamplingSettings):
        """The diffusers guider combining conditional and unconditional predictions: classifier-free guidance
        at `true_cfg_scale` (1 turns it off), diffusers' formula, as HunyuanVideo 1's pipeline computes it."""
        from diffusers.guiders import ClassifierFreeGuidance

        return quietly(ClassifierFreeGuidance, guidance_scale=settings.true_cfg_scale or 1.0)


def _nearest(value: int, step: int, offset: int, minimum: int) -> int:
    """The value of the form `offset + k*step` nearest to `value` (ties round up), at least `minimum`."""
    return max(minimum, (value - offset + step // 2) // step * step + offset)


def quietly(make_guider, **config):
    """A diffusers guider, built without its "experimental" warning."""
    with quiet(GUIDERS):
        return make_guider(**config)
