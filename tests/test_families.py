"""Every guarantee, for every family: the folder decides the family, every component is offloaded and every
weight is onloaded when used, batches equal their videos made alone, batched CFG equals two passes, sizes
follow each family's rule, native latents keep ComfyUI's layout and scale."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.families import FAMILIES
from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.offload.config import OffloadConfig, OffloadPlan
from hunyuan_core.offload.probe import (
    count_calls,
    count_onloads,
    hook_counts,
    poison_offloaded,
)
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.rows import RowTensors
from hunyuan_core.runtime.sampling import (
    _scheduler,
    _start_latents,
    guides_some_step,
    initial_noise,
    sample,
)
from hunyuan_core.runtime.vae import decode

FAMILY_OF = {
    "hunyuan-video": "HunyuanVideoPipeline",
    "hunyuan-video-i2v": "HunyuanVideoImageToVideoPipeline",
    "hunyuan-video-i2v-33ch": "HunyuanVideoImageToVideoPipeline",
    "hunyuan-video-1.5": "HunyuanVideo15Pipeline",
    "hunyuan-video-1.5-cfg-distilled": "HunyuanVideo15Pipeline",
    "hunyuan-video-1.5-i2v": "HunyuanVideo15ImageToVideoPipeline",
    "hunyuan-video-1.5-i2v-step-distilled": "HunyuanVideo15ImageToVideoPipeline",
}
NAMES = list(FAMILY_OF)
# Prompts of different token lengths; quoted text reaches HunyuanVideo 1.5's glyph encoder.
PROMPTS = ["a cat walks", 'a red dog runs across the snowy field holding a sign "HELLO"']
IMAGES = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(3))  # not the video's aspect ratio
SETTINGS = replace(TINY_SETTINGS, width=32, height=32)


def images_for(model, count=2):
    return IMAGES[:count] if model.family.takes_image else None


def generate(model, prompts, settings, images=None, negative="ugly"):
    conditioning = encode_prompts(model, prompts, negative_prompts=negative, images=images)
    latents = sample(model, conditioning, settings)
    return latents, decode(model, latents)


def uses_cfg(model, settings) -> bool:
    family = model.family
    return guides_some_step(family.guider(model, family.resolve(model, settings)), settings.steps)


@pytest.mark.parametrize("name", NAMES)
def test_the_folder_decides_the_family(shared_family_model, name):
    model = shared_family_model(name)
    assert model.family is FAMILIES[FAMILY_OF[name]]
    latent = model.family.latent
    assert latent.channels == model.pipe.vae.config.latent_channels
    assert set(model.modules) == set(model.spec.module_names)


@pytest.mark.parametrize("mode", ["block_level", "leaf_level"])
@pytest.mark.parametrize("name", NAMES)
def test_every_weight_is_onloaded_when_used_and_the_output_is_unchanged(random_folder, name, mode):
    """Offloaded weights hold NaN until their group is onloaded: a weight used without its group (the seed
    bug; a VAE whose decode() bypasses forward(); Llava's embedding used before its language model runs;
    SigLIP's pooling head) poisons the output."""
    model = load_pipeline(random_folder(name))
    try:
        images = images_for(model)
        expected = generate(model, PROMPTS, SETTINGS, images)
        model.configure_offload(OffloadPlan.uniform(OffloadConfig(mode=mode)))
        hooks = hook_counts(model.modules)
        assert all(hooks[component] > 0 for component in model.spec.module_names), hooks
        with poison_offloaded(model.modules) as poisoned, count_onloads(model.modules) as onloads, \
                count_calls(model.modules) as calls:
            latents, frames = generate(model, PROMPTS, SETTINGS, images)
        assert not poisoned, f"used while offloaded: {sorted(set(poisoned))[:5]}"
        assert all(onloads[c] > 0 for c in model.spec.module_names if calls[c]), (onloads, calls)
        assert all(calls[c] > 0 for c in model.spec.module_names), f"every component ran: {calls}"
        assert torch.equal(latents, expected[0]) and torch.equal(frames, expected[1])
    finally:
        model.release()


@pytest.mark.parametrize("name", NAMES)
def test_each_video_of_a_batch_equals_it_made_alone(shared_family_model, name):
    model = shared_family_model(name)
    images = images_for(model)
    settings = replace(SETTINGS, videos_per_prompt=2)
    conditioning = encode_prompts(model, PROMPTS, negative_prompts="ugly", images=images)
    mask = conditioning.positive["encoder_attention_mask"]
    assert mask[0].sum() != mask[1].sum(), "the prompts have different token lengths"
    batch = sample(model, conditioning, settings)
    assert batch.shape[0] == 4
    for index in range(4):
        prompt = index // 2
        alone_images = None if images is None else images[prompt:prompt + 1]
        alone = sample(model, encode_prompts(model, PROMPTS[prompt], negative_prompts="ugly", images=alone_images),
                       replace(settings, videos_per_prompt=1, seed=settings.seed + index))
        torch.testing.assert_close(batch[index], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_batched_cfg_equals_two_passes(shared_family_model, name):
    model = shared_family_model(name)
    settings = replace(SETTINGS, true_cfg_scale=0.0 if "1.5" in name and "distilled" not in name else 3.0)
    if not uses_cfg(model, settings):
        pytest.skip("this variant runs no CFG")
    conditioning = encode_prompts(model, PROMPTS, negative_prompts="ugly", images=images_for(model))
    passes = []
    handle = model.modules["transformer"].register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        batched = sample(model, conditioning, settings)
        batched_passes, passes[:] = list(passes), []
        two_pass = sample(model, conditioning, replace(settings, batched_cfg=False))
    finally:
        handle.remove()
    assert batched_passes == [4] * settings.steps and passes == [2, 2] * settings.steps
    torch.testing.assert_close(batched, two_pass, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["hunyuan-video-1.5-cfg-distilled", "hunyuan-video-1.5-i2v-step-distilled"])
def test_distilled_folders_run_one_pass_per_step(shared_family_model, name):
    """The folder's guider has scale 1: a negative prompt costs nothing, the transformer runs once per step."""
    model = shared_family_model(name)
    conditioning = encode_prompts(model, PROMPTS[:1], negative_prompts="ugly", images=images_for(model, 1))
    passes = []
    handle = model.modules["transformer"].register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        sample(model, conditioning, SETTINGS)
    finally:
        handle.remove()
    assert passes == [1] * SETTINGS.steps


@pytest.mark.parametrize("name", ["hunyuan-video-i2v", "hunyuan-video-1.5-i2v"])
def test_one_image_serves_every_prompt(shared_family_model, name):
    model = shared_family_model(name)
    one = sample(model, encode_prompts(model, PROMPTS, negative_prompts="ugly", images=IMAGES[:1]), SETTINGS)
    two = sample(model, encode_prompts(model, PROMPTS, negative_prompts="ugly",
                                       images=IMAGES[:1].expand(2, -1, -1, -1)), SETTINGS)
    assert torch.equal(one, two)
    other = sample(model, encode_prompts(model, PROMPTS, negative_prompts="ugly", images=IMAGES), SETTINGS)
    assert torch.equal(one[0], other[0]) and not torch.equal(one[1], other[1]), "prompt 2 has its own image"


@pytest.mark.parametrize("name", NAMES)
def test_native_latents_are_raw_vae_latents(shared_family_model, name):
    """Out: the sampler's latents decode as the VAE decodes raw latents (ComfyUI's native scale). In: a
    native latent is scaled by the family's factor before it is noised (what ComfyUI's process_in does)."""
    model = shared_family_model(name)
    latent = model.family.latent
    latents, frames = generate(model, PROMPTS[:1], SETTINGS, images_for(model, 1))
    assert latents.shape == (1, latent.channels, 3, 32 // latent.spatial, 32 // latent.spatial)
    raw = model.pipe.vae.decode(latents, return_dict=False)[0]
    expected = model.pipe.video_processor.postprocess_video(raw.float(), output_type="pt").permute(0, 1, 3, 4, 2)
    torch.testing.assert_close(frames, expected, rtol=1e-5, atol=1e-5)
    scheduler, timesteps, _ = _scheduler(model, replace(SETTINGS, denoise=0.5), "cpu")
    noise = initial_noise(latents.shape[1:], [0])
    start = _start_latents(model, latents, noise, scheduler, timesteps[:1], RowTensors({}))
    assert latent.scaling_factor == model.pipe.vae.config.scaling_factor
    assert torch.equal(start, scheduler.scale_noise(latents * latent.scaling_factor, timesteps[:1], noise))


@pytest.mark.parametrize("name", ["hunyuan-video-1.5", "hunyuan-video-1.5-i2v"])
def test_sizes_follow_the_family_rule(shared_family_model, name):
    model = shared_family_model(name)
    conditioning = encode_prompts(model, "a cat", negative_prompts="", images=images_for(model, 1))
    with pytest.raises(UserInputError) as error:
        sample(model, conditioning, replace(SETTINGS, width=40))
    assert str(error.value) == (
        "Width and height must be multiples of 16 (16x VAE times 1x patch), got 40x32. Try 48x32."
    )


@pytest.mark.parametrize("name", ["hunyuan-video-1.5", "hunyuan-video-1.5-i2v"])
def test_a_clip_prompt_is_refused_where_there_is_no_clip(shared_family_model, name):
    model = shared_family_model(name)
    with pytest.raises(UserInputError) as error:
        encode_prompts(model, "a cat", clip_prompts="style", images=images_for(model, 1))
    assert str(error.value) == (
        f"{model.family.name} has no second text encoder with a prompt of its own; leave the CLIP prompt empty."
    )


def test_prompts_encoded_for_another_family_are_refused(shared_family_model):
    v1, v15 = shared_family_model("hunyuan-video"), shared_family_model("hunyuan-video-1.5")
    with pytest.raises(UserInputError) as error:
        sample(v15, encode_prompts(v1, "a cat"), SETTINGS)
    assert str(error.value) == (
        "These prompts were encoded for a HunyuanVideoPipeline model, but the sampler's model is HunyuanVideo 1.5 "
        "text-to-video. Encode them with the same model."
    )


@pytest.mark.parametrize("name", ["hunyuan-video", "hunyuan-video-i2v-33ch", "hunyuan-video-1.5",
                                  "hunyuan-video-1.5-i2v-step-distilled"])
def test_every_family_samples_in_the_real_models_dtypes(random_folder, name):
    """On an accelerator the components load in bf16/fp16 (the tests elsewhere run float32 on the CPU): every
    input must reach the transformer in its dtype, and the latents stay float32 between steps."""
    family = FAMILIES[FAMILY_OF[name]]
    dtypes = {component.name: component.default_dtype for component in family.spec.components if component.is_module}
    assert dtypes["transformer"] == torch.bfloat16
    model = load_pipeline(random_folder(name), dtypes=dtypes)
    try:
        latents, _ = generate(model, PROMPTS[:1], SETTINGS, images=images_for(model, 1))
    finally:
        model.release()
    assert latents.dtype == torch.float32 and latents.isfinite().all()
