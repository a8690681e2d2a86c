"""The pack's sampling equals diffusers' own pipelines where those work (one prompt, one video), for the
image-to-video and 1.5 families; and the 1.5 VAE's tiles are counted as it runs them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.images import to_pil
from hunyuan_core.runtime.sampling import initial_noise, sample
from hunyuan_core.runtime.vae import TilingSettings, decode, encode_video
from hunyuan_core.runtime.vae_tiles import decoder_calls, encoder_calls

SETTINGS = replace(TINY_SETTINGS, width=32, height=32, frames=9, steps=2)
IMAGE = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(5))  # the video's size: no resizing


def noise_for(model, settings):
    return initial_noise(model.latent.shape(settings.width, settings.height, settings.frames), [settings.seed])


def configure_like_the_folder(pipe, template):
    """diffusers' 1.5 pipelines keep their text settings as attributes; give them the folder's."""
    pipe.system_message, pipe.prompt_template_encode_start_idx = template["system_message"], template["crop_start"]
    pipe.tokenizer_max_length, pipe.tokenizer_2_max_length = template["max_length"], template["byt5_max_length"]
    pipe.vision_num_semantic_tokens = template["image_tokens"]


@pytest.mark.parametrize("name", ["hunyuan-video-1.5", "hunyuan-video-1.5-cfg-distilled"])
def test_hunyuan_video15_matches_diffusers(shared_family_model, name):
    model = shared_family_model(name)
    pipe = model.pipe
    configure_like_the_folder(pipe, model.prompt_template)
    prompt = 'a cat holds a sign "HI"'
    settings = replace(SETTINGS, batched_cfg=False, steps=3, flow_shift=0.0)
    ours = sample(model, encode_prompts(model, prompt, negative_prompts=""), settings)
    theirs = pipe(prompt=prompt, negative_prompt="", height=32, width=32, num_frames=9, num_inference_steps=3,
                  latents=noise_for(model, settings), output_type="latent").frames
    assert torch.equal(ours, theirs / model.latent.scaling_factor)


@pytest.mark.parametrize("name", ["hunyuan-video-1.5-i2v", "hunyuan-video-1.5-i2v-step-distilled"])
def test_hunyuan_video15_image_to_video_matches_diffusers(shared_family_model, name):
    """diffusers picks the size from the image's aspect bucket; a square image and a target size of 32 give
    the pack's 32x32. The step-distilled transformer gets the next timestep at every step."""
    model = shared_family_model(name)
    pipe = model.pipe
    configure_like_the_folder(pipe, model.prompt_template)
    pipe.target_size = 32
    settings = replace(SETTINGS, batched_cfg=False, steps=3, flow_shift=0.0)
    prompt = "a cat walks"
    ours = sample(model, encode_prompts(model, prompt, negative_prompts="", images=IMAGE), settings)
    theirs = pipe(image=to_pil(IMAGE[0]), prompt=prompt, negative_prompt="", num_frames=9, num_inference_steps=3,
                  latents=noise_for(model, settings), output_type="latent").frames
    assert torch.equal(ours, theirs / model.latent.scaling_factor)


@pytest.mark.parametrize("name", ["hunyuan-video-i2v", "hunyuan-video-i2v-33ch"])
def test_hunyuan_video_image_to_video_matches_diffusers(shared_family_model, name):
    """Without true CFG (diffusers encodes negative prompts with another image-token stride, a bug the
    pack does not copy). diffusers' latent output drops the first latent frame of the 33-channel model."""
    model = shared_family_model(name)
    settings = replace(SETTINGS, steps=3)
    prompt = "a cat walks"
    ours = sample(model, encode_prompts(model, prompt, images=IMAGE), settings)
    theirs = model.pipe(image=to_pil(IMAGE[0]), prompt=prompt, height=32, width=32, num_frames=9,
                        num_inference_steps=3, guidance_scale=settings.guidance_scale,
                        prompt_template=model.prompt_template, latents=noise_for(model, settings),
                        output_type="latent").frames
    if name.endswith("33ch"):
        ours = ours[:, :, 1:]
    torch.testing.assert_close(ours, theirs / model.latent.scaling_factor, rtol=1e-5, atol=1e-6)


def test_token_replace_keeps_the_image_as_the_first_frame(shared_family_model):
    model = shared_family_model("hunyuan-video-i2v")
    latents = sample(model, encode_prompts(model, "a cat", images=IMAGE), SETTINGS)
    pixels = model.pipe.video_processor.preprocess(to_pil(IMAGE[0]), 32, 32).unsqueeze(2)
    image_latent = model.pipe.vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(latents[:, :, :1], image_latent, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "tiling"),
    [
        ((9, 32, 32), TilingSettings()),
        ((9, 96, 128), TilingSettings(tile_size=64, tile_overlap=32)),
        ((5, 128, 64), TilingSettings(tile_size=64, tile_overlap=0)),
        ((9, 96, 128), TilingSettings(spatial=False)),
    ],
)
def test_hunyuan_video15_tile_counts_match_the_vae(shared_family_model, size, tiling):
    model = shared_family_model("hunyuan-video-1.5")
    vae = model.pipe.vae
    frames, height, width = size
    calls = {"encoder": 0, "decoder": 0}
    handles = [getattr(vae, part).register_forward_hook(lambda *_, part=part: calls.__setitem__(part, calls[part] + 1))
               for part in calls]
    try:
        video = torch.rand(1, frames, height, width, 3, generator=torch.Generator().manual_seed(1))
        latents = encode_video(model, video, tiling)
        decode(model, latents, tiling)
    finally:
        for handle in handles:
            handle.remove()
    tiling.apply_to(vae)
    assert calls["encoder"] == encoder_calls(vae, frames, height, width)
    assert calls["decoder"] == decoder_calls(vae, *latents.shape[2:])
    assert latents.shape == (1, 32, (frames - 1) // 4 + 1, height // 16, width // 16)


def test_hunyuan_video15_tiled_decode_stays_close(shared_family_model):
    model = shared_family_model("hunyuan-video-1.5")
    latents = torch.randn(1, 32, 2, 6, 8, generator=torch.Generator().manual_seed(2))
    whole = decode(model, latents, TilingSettings(spatial=False))
    tiled = decode(model, latents, TilingSettings(tile_size=64, tile_overlap=32))
    assert whole.shape == tiled.shape == (1, 5, 96, 128, 3)
    assert float(np.abs((whole - tiled).numpy()).mean()) < 0.1
