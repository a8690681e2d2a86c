"""Helpers shared by tests: run the whole text-(or image-)to-video path on a loaded model."""

from __future__ import annotations

from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import sample
from hunyuan_core.runtime.vae import decode


def generate(model, prompts, settings, negative_prompts=None, images=None):
    """Encode, sample and decode; returns (latents, frames)."""
    conditioning = encode_prompts(model, prompts, negative_prompts=negative_prompts, images=images)
    latents = sample(model, conditioning, settings)
    return latents, decode(model, latents)
