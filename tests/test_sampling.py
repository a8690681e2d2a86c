"""Sampling: same numbers as diffusers' pipeline, batch invariance, seeds, progress, input checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import PROMPTS, TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import (
    SamplingSettings,
    initial_noise,
    sample,
)


def diffusers_latents(model, conditioning, settings, true_cfg_scale=1.0):
    """What diffusers' HunyuanVideoPipeline.__call__ makes from the same embeddings and noise (raw VAE space)."""
    batch = len(conditioning.prompts)
    noise = initial_noise(model.latent.shape(settings.width, settings.height, settings.frames), [settings.seed + k for k in range(batch)])
    negative = conditioning.negative
    scaled = model.pipe(
        prompt_embeds=conditioning.positive["encoder_hidden_states"],
        pooled_prompt_embeds=conditioning.positive["pooled_projections"],
        prompt_attention_mask=conditioning.positive["encoder_attention_mask"],
        negative_prompt_embeds=negative["encoder_hidden_states"],
        negative_pooled_prompt_embeds=negative["pooled_projections"],
        negative_prompt_attention_mask=negative["encoder_attention_mask"],
        true_cfg_scale=true_cfg_scale,
        latents=noise,
        height=settings.height,
        width=settings.width,
        num_frames=settings.frames,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        output_type="latent",
    ).frames
    return scaled / model.pipe.vae.config.scaling_factor


@pytest.mark.parametrize("true_cfg_scale", [1.0, 4.0])
def test_matches_diffusers_pipeline_bitwise(shared_model, conditioning, true_cfg_scale):
    settings = replace(TINY_SETTINGS, true_cfg_scale=true_cfg_scale, batched_cfg=False)
    ours = sample(shared_model, conditioning, settings)
    assert torch.equal(ours, diffusers_latents(shared_model, conditioning, settings, true_cfg_scale))


@pytest.mark.parametrize("videos_per_prompt", [1, 2])
def test_batched_cfg_matches_two_passes(shared_model, conditioning, videos_per_prompt):
    settings = replace(TINY_SETTINGS, true_cfg_scale=4.0, videos_per_prompt=videos_per_prompt)
    assert settings.batched_cfg, "batched CFG is the default"
    batched = sample(shared_model, conditioning, settings)
    two_pass = sample(shared_model, conditioning, replace(settings, batched_cfg=False))
    assert batched.shape[0] == 2 * videos_per_prompt
    torch.testing.assert_close(batched, two_pass, rtol=1e-4, atol=1e-5)
    assert not torch.equal(batched, sample(shared_model, conditioning, replace(settings, true_cfg_scale=1.0)))


def test_batched_cfg_makes_one_transformer_pass_per_step(shared_model, conditioning):
    calls = []
    handle = shared_model.modules["transformer"].register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        sample(shared_model, conditioning, replace(TINY_SETTINGS, true_cfg_scale=4.0))
        batched_calls, calls[:] = list(calls), []
        sample(shared_model, conditioning, replace(TINY_SETTINGS, true_cfg_scale=4.0, batched_cfg=False))
    finally:
        handle.remove()
    assert batched_calls == [4] * TINY_SETTINGS.steps
    assert calls == [2, 2] * TINY_SETTINGS.steps


def test_flow_shift_changes_the_schedule(shared_model, conditioning):
    a = sample(shared_model, conditioning, TINY_SETTINGS)
    b = sample(shared_model, conditioning, replace(TINY_SETTINGS, flow_shift=1.0))
    assert not torch.allclose(a, b)


def test_latent_layout(shared_model, conditioning):
    settings = replace(TINY_SETTINGS, width=32, height=48, frames=13)
    latents = sample(shared_model, conditioning, settings)
    assert latents.shape == (2, 16, 4, 6, 4)
    assert latents.dtype == torch.float32 and latents.device.type == "cpu"


@pytest.mark.parametrize("true_cfg_scale", [1.0, 3.0])
def test_each_video_of_a_batch_equals_it_alone(shared_model, true_cfg_scale):
    settings = replace(TINY_SETTINGS, videos_per_prompt=2, true_cfg_scale=true_cfg_scale)
    conditioning = encode_prompts(shared_model, PROMPTS, negative_prompts="ugly")
    mask = conditioning.positive["encoder_attention_mask"]
    assert mask[0].sum() != mask[1].sum()
    batch = sample(shared_model, conditioning, settings)
    assert batch.shape[0] == 4
    for index in range(4):
        prompt = PROMPTS[index // 2]
        alone_settings = replace(settings, videos_per_prompt=1, seed=settings.seed + index)
        alone = sample(shared_model, encode_prompts(shared_model, prompt, negative_prompts="ugly"), alone_settings)
        torch.testing.assert_close(batch[index], alone[0], rtol=1e-4, atol=1e-5)


def test_seeds(shared_model, conditioning):
    first = sample(shared_model, conditioning, TINY_SETTINGS)
    assert torch.equal(first, sample(shared_model, conditioning, TINY_SETTINGS))
    assert not torch.allclose(first, sample(shared_model, conditioning, replace(TINY_SETTINGS, seed=8)))


def test_progress_is_reported_every_step(shared_model, conditioning):
    seen = []
    result = sample(shared_model, conditioning, replace(TINY_SETTINGS, steps=3),
                    on_step=lambda d, t, preview: seen.append((d, t, preview)))
    assert [(d, t) for d, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    previews = [preview.cpu() for _, _, preview in seen]
    assert all(p.shape == result.shape for p in previews)
    # The estimate of the result converges on the result: exact at the last step (sigma 0 is never run,
    # so compare distances instead).
    distances = [(p - result).abs().mean() for p in previews]
    assert distances[0] > distances[-1]


def test_cancelling_between_steps_leaves_the_model_reusable(model):
    conditioning = encode_prompts(model, PROMPTS)
    expected = sample(model, conditioning, TINY_SETTINGS)

    class Cancelled(Exception):
        pass

    def cancel(done, total, preview):
        raise Cancelled

    with pytest.raises(Cancelled):
        sample(model, conditioning, TINY_SETTINGS, on_step=cancel)
    assert torch.equal(sample(model, conditioning, TINY_SETTINGS), expected)


def test_true_cfg_needs_a_negative_prompt(shared_model):
    conditioning = encode_prompts(shared_model, "a cat")
    with pytest.raises(UserInputError) as error:
        sample(shared_model, conditioning, replace(TINY_SETTINGS, true_cfg_scale=2.0))
    assert str(error.value) == (
        "Classifier-free guidance is on (scale 2.0) but no negative prompt was encoded. Encode a negative prompt "
        "(it may be empty), or set true_cfg_scale to 1 to turn guidance off."
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": 40}, "Width and height must be multiples of 16 (8x VAE times 2x patch), got 40x16. Try 48x16."),
        ({"height": 0}, "Width and height must be multiples of 16 (8x VAE times 2x patch), got 16x0. Try 16x16."),
        (
            {"frames": 10},
            "Frames must be 4k+1 (1, 5, 9, ..., 61, ..., 129) because the VAE compresses time 4x, got 10. Try 9.",
        ),
        ({"steps": -1}, "Steps must be at least 1 (or 0 for the model's default), got -1."),
        ({"videos_per_prompt": 0}, "Videos per prompt must be at least 1, got 0."),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number, got nan."),
        ({"true_cfg_scale": float("inf")}, "true_cfg_scale must be a finite number, got inf."),
        ({"true_cfg_scale": 0.5}, "true_cfg_scale must be 0 (the model's default), 1 (off) or more, got 0.5."),
        ({"flow_shift": -1.0}, "flow_shift must be positive (or 0 for the model's own), got -1.0."),
        ({"seed": -1}, "Seed must be between 0 and 18446744073709551615, got -1."),
    ],
)
def test_bad_settings_are_explained(shared_model, conditioning, change, message):
    with pytest.raises(UserInputError) as error:
        sample(shared_model, conditioning, SamplingSettings(**{**vars(TINY_SETTINGS), **change}))
    assert str(error.value) == message
