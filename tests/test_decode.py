"""Decoding: frames in 0..1 in the right layout, tiling settings reach the VAE, bad inputs explained."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.sampling import sample
from hunyuan_core.runtime.vae import TilingSettings, decode


@pytest.fixture(scope="module")
def latents(shared_model, conditioning):
    return sample(shared_model, conditioning, TINY_SETTINGS)


def test_frames_layout_and_range(shared_model, latents):
    frames = decode(shared_model, latents)
    assert frames.shape == (2, 9, 16, 16, 3)
    assert frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert 0 <= frames.min() and frames.max() <= 1


def test_each_video_decodes_as_diffusers_decodes_it(shared_model, latents):
    frames = decode(shared_model, latents, TilingSettings(spatial=False))
    with torch.no_grad():
        video = shared_model.pipe.vae.decode(latents[1:], return_dict=False)[0]
    expected = shared_model.pipe.video_processor.postprocess_video(video, output_type="pt")[0].permute(0, 2, 3, 1)
    assert torch.equal(frames[1], expected)


def test_tiling_settings_reach_the_vae(shared_model):
    TilingSettings(spatial=True, tile_size=128, tile_overlap=32, tile_frames=24, frame_overlap=8).apply_to(
        shared_model.pipe.vae
    )
    vae = shared_model.pipe.vae
    assert vae.use_tiling
    assert (vae.tile_sample_min_height, vae.tile_sample_stride_width) == (128, 96)
    assert (vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames) == (24, 16)


def test_spatially_tiled_decode_stays_close(shared_model, conditioning):
    from dataclasses import replace

    latents = sample(shared_model, conditioning, replace(TINY_SETTINGS, width=128, height=128, steps=1))[:1]
    whole = decode(shared_model, latents, TilingSettings(spatial=False))
    tiled = decode(shared_model, latents, TilingSettings(tile_size=64, tile_overlap=32))
    assert tiled.shape == whole.shape == (1, 9, 128, 128, 3)
    assert (tiled - whole).abs().mean() < 0.05


@pytest.mark.parametrize(
    ("tiling", "message"),
    [
        (TilingSettings(tile_size=100), "Tile size must be a multiple of 32 and at least 64 pixels, got 100."),
        (
            TilingSettings(tile_overlap=200),
            "Tile overlap must be a multiple of 8 from 0 to half the tile size (128), got 200.",
        ),
        (TilingSettings(tile_frames=6), "Tile frames must be a multiple of 4 and at least 8, got 6."),
        (
            TilingSettings(frame_overlap=3),
            "Frame overlap must be a multiple of 4 from 0 to half the tile frames (8), got 3.",
        ),
    ],
)
def test_bad_tiling_is_explained(shared_model, latents, tiling, message):
    with pytest.raises(UserInputError) as error:
        decode(shared_model, latents, tiling)
    assert str(error.value) == message


def test_wrong_latents_are_explained(shared_model):
    with pytest.raises(UserInputError) as error:
        decode(shared_model, torch.zeros(1, 4, 8, 8))
    assert str(error.value) == (
        "Expected HunyuanVideo 1 text-to-video latents shaped [batch, 16, frames, height, width], got "
        "(1, 4, 8, 8). Connect the output of a sampler running this model, or an empty latent of its family."
    )
