"""Prompt encoding: Llama hidden states plus the pooled CLIP embedding, per prompt.

diffusers' `encode_prompt` ignores `prompt_2` and always feeds CLIP the Llama prompt (diffusers #13588).
The narrow fix: encode the CLIP prompt ourselves with the pipeline's own CLIP helper and hand it to
`encode_prompt` as `pooled_prompt_embeds`, which diffusers then uses as is.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from ..progress import StepCallback, step_progress
from .recovery import recovering

MAX_SEQUENCE_LENGTH = 256


@dataclass(frozen=True)
class PromptEmbeddings:
    """One row per prompt: Llama states `[P, L, D]`, their key-padding mask `[P, L]`, CLIP pooled `[P, Dc]`."""

    embeds: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def select(self, rows: Sequence[int] | torch.Tensor) -> PromptEmbeddings:
        index = torch.as_tensor(rows, dtype=torch.long)
        return PromptEmbeddings(self.embeds[index], self.mask[index], self.pooled[index])

    def concat(self, other: PromptEmbeddings) -> PromptEmbeddings:
        """Rows of `self` then rows of `other`, the shorter text padded (and masked) to the longer."""
        length = max(self.mask.shape[1], other.mask.shape[1])
        parts = [e._padded(length) for e in (self, other)]
        return PromptEmbeddings(*(torch.cat(tensors) for tensors in zip(*parts)))

    def _padded(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        extra = length - self.mask.shape[1]
        embeds = torch.nn.functional.pad(self.embeds, (0, 0, 0, extra))
        return embeds, torch.nn.functional.pad(self.mask, (0, extra)), self.pooled

    def to(self, device: torch.device, dtype: torch.dtype) -> PromptEmbeddings:
        return PromptEmbeddings(
            self.embeds.to(device, dtype), self.mask.to(device, dtype), self.pooled.to(device, dtype)
        )


@dataclass(frozen=True)
class Conditioning:
    """Encoded prompts; `negative` (one row per prompt) exists when a negative prompt was encoded."""

    prompts: tuple[str, ...]
    positive: PromptEmbeddings
    negative: PromptEmbeddings | None = None


def _as_list(prompts: str | Sequence[str] | None, what: str, count: int | None = None) -> list[str] | None:
    if prompts is None:
        return None
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise UserInputError(f"The {what} list is empty; give at least one prompt.")
    if not all(isinstance(p, str) for p in prompts):
        raise UserInputError(f"Every {what} must be text.")
    if count is not None and len(prompts) not in (1, count):
        raise UserInputError(f"Give one {what} or one per prompt ({count}), not {len(prompts)}.")
    if count is not None and len(prompts) == 1:
        prompts = prompts * count
    return prompts


def _recovering(model: LoadedPipeline):
    return recovering(model, ("text_encoder", "text_encoder_2"), "encoding the prompts", "Use the lowest_vram offload preset for the text encoders.")


@torch.no_grad()
def _encode(model: LoadedPipeline, prompts: list[str], clip_prompts: list[str],
            report_pass: Callable[[], None]) -> PromptEmbeddings:
    """Runs CLIP, then Llama; progress is reported between the passes, where a cancel leaves nothing behind."""
    pipe = model.pipe
    device = model.device
    with _recovering(model):
        pooled = pipe._get_clip_prompt_embeds(clip_prompts, device=device)
    report_pass()
    with _recovering(model):
        embeds, pooled, mask = pipe.encode_prompt(
            prompt=prompts,
            prompt_template=model.prompt_template,
            pooled_prompt_embeds=pooled,
            device=device,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
    report_pass()
    return PromptEmbeddings(embeds.cpu(), mask.cpu(), pooled.cpu())


def encode_prompts(
    model: LoadedPipeline,
    prompts: str | Sequence[str],
    clip_prompts: str | Sequence[str] | None = None,
    negative_prompts: str | Sequence[str] | None = None,
    on_pass: StepCallback | None = None,
) -> Conditioning:
    """Encodes prompts (and optionally a negative prompt) into CPU tensors the sampler accepts.

    `clip_prompts` go to CLIP instead of the prompts (one, or one per prompt); negative prompts likewise.
    `on_pass(done, total)` is called after each text-encoder pass (CLIP, then Llama, for each prompt set):
    with offloading, a pass of the 8B Llama is long enough to deserve a progress bar.
    """
    prompts = _as_list(prompts, "prompt")
    clip_prompts = _as_list(clip_prompts, "CLIP prompt", len(prompts)) or prompts
    negatives = _as_list(negative_prompts, "negative prompt", len(prompts))
    total = 2 if negatives is None else 4
    with step_progress(on_pass, total, "Encoding prompts") as report:
        passes_done = itertools.count(1)

        def report_pass() -> None:
            report(next(passes_done), total)

        positive = _encode(model, prompts, clip_prompts, report_pass)
        negative = None if negatives is None else _encode(model, negatives, negatives, report_pass)
    return Conditioning(prompts=tuple(prompts), positive=positive, negative=negative)
