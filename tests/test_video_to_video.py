"""Video-to-video and native latents: input latents, the denoise schedule, the VAE encoder, tile progress."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.rows import RowTensors
from hunyuan_core.runtime.sampling import (
    SamplingSettings,
    _scheduler,
    _start_latents,
    initial_noise,
    sample,
    sized_like,
)
from hunyuan_core.runtime.vae import TilingSettings, decode, encode_video
from hunyuan_core.runtime.vae_tiles import decoder_calls, encoder_calls


@pytest.fixture(scope="module")
def one_prompt(shared_model):
    return encode_prompts(shared_model, "a cat walks")


@pytest.fixture(scope="module")
def frames():
    torch.manual_seed(3)
    return torch.rand(1, 9, 16, 32, 3)


def empty_hunyuan_latent(batch, width, height, length):
    """What ComfyUI's EmptyHunyuanLatentVideo makes."""
    return torch.zeros([batch, 16, ((length - 1) // 4) + 1, height // 8, width // 8])


def test_an_empty_native_latent_sets_the_size_and_full_denoise_equals_text_to_video(shared_model, one_prompt):
    latent = empty_hunyuan_latent(1, width=32, height=16, length=13)
    from_latent = sample(shared_model, one_prompt, TINY_SETTINGS, init_latents=latent)
    text_to_video = sample(shared_model, one_prompt, replace(TINY_SETTINGS, width=32, height=16, frames=13))
    assert from_latent.shape == latent.shape
    assert torch.equal(from_latent, text_to_video)


def test_full_denoise_ignores_the_input_latents(shared_model, one_prompt):
    latent = torch.randn(1, 16, 3, 2, 2)
    assert torch.equal(
        sample(shared_model, one_prompt, TINY_SETTINGS, init_latents=latent),
        sample(shared_model, one_prompt, TINY_SETTINGS),
    )


def test_denoise_runs_the_tail_of_a_longer_schedule(shared_model):
    settings = replace(TINY_SETTINGS, steps=3, denoise=0.5)
    assert settings.schedule_length == 6
    _, timesteps, sigmas = _scheduler(shared_model, settings, torch.device("cpu"))
    _, full_timesteps, full_sigmas = _scheduler(shared_model, replace(settings, steps=6, denoise=1.0),
                                                torch.device("cpu"))
    assert torch.equal(timesteps, full_timesteps[3:]) and torch.equal(sigmas, full_sigmas[3:])


def test_start_latents_are_the_input_noised_to_the_first_step(shared_model):
    settings = replace(TINY_SETTINGS, steps=2, denoise=0.4)
    scheduler, timesteps, sigmas = _scheduler(shared_model, settings, torch.device("cpu"))
    clean = torch.randn(1, 16, 3, 2, 2)
    noise = initial_noise((16, 3, 2, 2), [5, 6])
    start = _start_latents(shared_model, clean, noise, scheduler, timesteps[:1], RowTensors({}))
    scaled = clean * shared_model.pipe.vae.config.scaling_factor
    torch.testing.assert_close(start, sigmas[0] * noise + (1 - sigmas[0]) * scaled)


def test_lower_denoise_stays_closer_to_the_input(shared_model, one_prompt, frames):
    latents = encode_video(shared_model, frames)
    distances = []
    for denoise in (1.0, 0.6, 0.2):
        result = sample(shared_model, one_prompt, replace(TINY_SETTINGS, denoise=denoise), init_latents=latents)
        distances.append((result - latents).abs().mean())
    assert distances[0] > distances[1] > distances[2]


def test_input_latent_batches(shared_model, one_prompt):
    settings = replace(TINY_SETTINGS, videos_per_prompt=2, denoise=0.5)
    single = torch.randn(1, 16, 3, 2, 2)
    broadcast = sample(shared_model, one_prompt, settings, init_latents=single)
    per_video = sample(shared_model, one_prompt, settings, init_latents=single.repeat(2, 1, 1, 1, 1))
    assert torch.equal(broadcast, per_video)
    with pytest.raises(UserInputError) as error:
        sample(shared_model, one_prompt, settings, init_latents=single.repeat(3, 1, 1, 1, 1))
    assert str(error.value) == (
        "The input latent holds 3 videos, but the sampler makes 2 (prompts x videos per prompt). Give a latent "
        "with 1 video or with one per generated video."
    )


@pytest.mark.parametrize(
    ("denoise", "message"),
    [(0.0, "denoise must be above 0 and at most 1, got 0.0."), (1.5, "denoise must be above 0 and at most 1, got 1.5.")],
)
def test_bad_denoise(shared_model, one_prompt, denoise, message):
    with pytest.raises(UserInputError) as error:
        sample(shared_model, one_prompt, replace(TINY_SETTINGS, denoise=denoise))
    assert str(error.value) == message


def test_odd_latent_sizes_are_explained(shared_model, one_prompt):
    with pytest.raises(UserInputError, match="Width and height must be multiples of 16.*got 24x16"):
        sample(shared_model, one_prompt, TINY_SETTINGS, init_latents=torch.zeros(1, 16, 3, 2, 3))


def test_encoder_matches_diffusers_and_feeds_the_decoder(shared_model, frames):
    latents = encode_video(shared_model, frames)
    assert latents.shape == (1, 16, 3, 2, 4)
    with torch.no_grad():
        pixels = frames.permute(0, 4, 1, 2, 3) * 2 - 1
        expected = shared_model.pipe.vae.encode(pixels).latent_dist.mode()
    assert torch.equal(latents, expected)
    assert decode(shared_model, latents).shape == frames.shape


def test_sampler_output_decodes_as_diffusers_decodes_its_own_latents(shared_model, one_prompt):
    """Raw latents out of the core -> the pipeline's scaled space -> the same frames as diffusers makes."""
    settings = replace(TINY_SETTINGS, seed=11)
    ours = decode(shared_model, sample(shared_model, one_prompt, settings), TilingSettings(spatial=False))
    noise = initial_noise((16, 3, 2, 2), [settings.seed])
    theirs = shared_model.pipe(
        prompt_embeds=one_prompt.positive["encoder_hidden_states"],
        pooled_prompt_embeds=one_prompt.positive["pooled_projections"],
        prompt_attention_mask=one_prompt.positive["encoder_attention_mask"], latents=noise, height=16, width=16, num_frames=9,
        num_inference_steps=settings.steps, output_type="pt",
    ).frames
    torch.testing.assert_close(ours, theirs.permute(0, 1, 3, 4, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "tiling"),
    [
        ((9, 16, 16), TilingSettings()),
        ((17, 16, 16), TilingSettings(tile_frames=8, frame_overlap=4)),
        ((9, 128, 96), TilingSettings(tile_size=64, tile_overlap=32)),
        ((21, 128, 64), TilingSettings(tile_size=64, tile_overlap=16, tile_frames=8, frame_overlap=0)),
        ((21, 128, 64), TilingSettings(spatial=False, tile_frames=12, frame_overlap=4)),
    ],
)
def test_tile_counts_match_the_vae(shared_model, size, tiling):
    vae = shared_model.pipe.vae
    frames, height, width = size
    calls = {"encoder": 0, "decoder": 0}
    handles = [getattr(vae, name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
               for name in calls]
    progress = []
    try:
        latents = encode_video(shared_model, torch.rand(1, frames, height, width, 3), tiling,
                               on_tile=lambda done, total: progress.append(("encode", done, total)))
        decode(shared_model, latents, tiling, on_tile=lambda done, total: progress.append(("decode", done, total)))
    finally:
        for handle in handles:
            handle.remove()
    assert calls["encoder"] == encoder_calls(vae, frames, height, width)
    assert calls["decoder"] == decoder_calls(vae, *latents.shape[2:])
    assert [p for p in progress if p[0] == "decode"][-1] == ("decode", calls["decoder"], calls["decoder"])
    assert len(progress) == calls["encoder"] + calls["decoder"]


def test_frames_for_the_encoder_are_checked(shared_model):
    with pytest.raises(UserInputError, match="Frames must be 4k\\+1.*got 8"):
        encode_video(shared_model, torch.rand(1, 8, 16, 16, 3))
    with pytest.raises(UserInputError, match=r"Expected video frames shaped \[videos, frames, height, width, 3\]"):
        encode_video(shared_model, torch.rand(8, 16, 16, 3))


def test_settings_sized_like_latents(shared_model):
    settings = sized_like(shared_model, SamplingSettings(), torch.zeros(1, 16, 16, 60, 106))
    assert (settings.width, settings.height, settings.frames) == (848, 480, 61)
