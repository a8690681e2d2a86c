"""The speed levers: each cache off is bitwise no cache and on skips blocks (and their transfers), batches stay
equal to videos made alone where the cache decides by schedule, attention backends are really used and never
leak, fp8 storage is exact and halves the bytes each onload moves, compilation composes with offloading."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.offload.config import OffloadConfig, OffloadPlan
from hunyuan_core.offload.hooks import offload_hooks
from hunyuan_core.offload.probe import count_onloads, group_bytes, poison_offloaded
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import sample
from hunyuan_core.speed.attention import check_backend
from hunyuan_core.speed.compile import compile_blocks
from hunyuan_core.speed.settings import CACHES, SpeedSettings, parse_cache

PROMPTS = ["a cat walks", 'a red dog runs across the snowy field holding a sign "HELLO"']
SETTINGS = replace(TINY_SETTINGS, width=32, height=32, steps=8)
FAMILIES = ["hunyuan-video", "hunyuan-video-1.5"]
SKIPPING = {"first_block": 0.3, "mag": 0.5, "taylorseer": 3, "sea": 0.5, "faster": 2, "pyramid": 2}


def run(model, speed: SpeedSettings, settings=SETTINGS, prompts=PROMPTS, **kwargs):
    previous = model.speed
    model.configure_speed(speed)
    try:
        return sample(model, encode_prompts(model, prompts, negative_prompts="ugly"), settings, **kwargs)
    finally:
        model.configure_speed(previous)


def calibrated(model, settings=SETTINGS):
    """MagCache's ratios for this model, measured by a calibrating run (which skips nothing)."""
    run(model, SpeedSettings(cache="mag"), settings)
    return tuple(model.last_run.mag_ratios)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("cache", list(CACHES))
def test_a_cache_that_never_skips_is_bitwise_no_cache_and_a_skipping_one_skips(shared_family_model, name, cache):
    model = shared_family_model(name)
    expected = run(model, SpeedSettings())
    ratios = calibrated(model) if cache == "mag" else None
    assert torch.equal(run(model, SpeedSettings(cache=cache, cache_value=CACHES[cache].off, mag_ratios=ratios)),
                       expected)
    assert model.last_run.blocks_run == model.last_run.blocks_total
    skipping = run(model, SpeedSettings(cache=cache, cache_value=SKIPPING[cache], mag_ratios=ratios))
    report = model.last_run
    attention_calls = sum(report.attention.values())
    if CACHES[cache].skips_blocks:
        assert report.blocks_run < report.blocks_total, report.describe()
    else:
        assert attention_calls < report.blocks_total, report.describe()
    assert torch.isfinite(skipping).all() and not torch.equal(skipping, expected)
    assert not model.pipe.transformer.is_cache_enabled, "the cache is taken off after the run"


def test_mag_cache_calibration_measures_one_ratio_per_step(shared_family_model):
    model = shared_family_model("hunyuan-video")
    expected = run(model, SpeedSettings())
    assert torch.equal(run(model, SpeedSettings(cache="mag")), expected), "calibrating skips nothing"
    ratios = model.last_run.mag_ratios
    assert len(ratios) == SETTINGS.steps and ratios[0] == 1.0 and all(r > 0 for r in ratios)


@pytest.mark.parametrize("mode", ["block_level", "leaf_level"])
@pytest.mark.parametrize("cache", ["first_block", "mag"])
def test_a_skipped_block_is_never_onloaded(random_folder, mode, cache):
    """The cache hook is outermost (enabled after the offload hooks), so skipped blocks move no weights."""
    model = load_pipeline(random_folder("hunyuan-video"))
    try:
        ratios = calibrated(model) if cache == "mag" else None
        expected = run(model, SpeedSettings(cache=cache, cache_value=SKIPPING[cache], mag_ratios=ratios))
        model.configure_offload(OffloadPlan.uniform(OffloadConfig(mode=mode)))
        transformer = {"transformer": model.modules["transformer"]}
        with count_onloads(transformer) as plain:
            run(model, SpeedSettings())
        with count_onloads(transformer) as cached, poison_offloaded(transformer) as poisoned:
            latents = run(model, SpeedSettings(cache=cache, cache_value=SKIPPING[cache], mag_ratios=ratios))
        assert cached["transformer"] < plain["transformer"] and not poisoned
        assert torch.equal(latents, expected)
        model.reset_offload(("transformer",))  # offload re-hooked between runs: the next run caches as before
        assert torch.equal(run(model, SpeedSettings(cache=cache, cache_value=SKIPPING[cache], mag_ratios=ratios)),
                           expected)
    finally:
        model.release()


def test_a_failure_mid_run_leaves_no_cache_and_sound_hooks(random_folder):
    """Recovery re-hooks offloading under the enabled cache; diffusers 0.42.1 would unhook the cache there and
    keep the removed offload hook reachable (each group onloaded twice afterwards)."""
    model = load_pipeline(random_folder("hunyuan-video"), offload=OffloadPlan.uniform(OffloadConfig(mode="block_level")))
    try:
        transformer = {"transformer": model.modules["transformer"]}
        with count_onloads(transformer) as before:
            expected = run(model, SpeedSettings())
        block = model.modules["transformer"].transformer_blocks[1]
        handle = block.register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("injected")))
        with pytest.raises(RuntimeError, match="injected"):
            run(model, SpeedSettings(cache="first_block", cache_value=0.3))
        handle.remove()
        with count_onloads(transformer) as after:
            assert torch.equal(run(model, SpeedSettings()), expected)
        assert after == before
    finally:
        model.release()


@pytest.mark.parametrize("cache", ["mag", "taylorseer"])
def test_schedule_caches_keep_each_video_of_a_batch_equal_to_it_alone(shared_family_model, cache):
    model = shared_family_model("hunyuan-video")
    ratios = calibrated(model, replace(SETTINGS, steps=8)) if cache == "mag" else None
    speed = SpeedSettings(cache=cache, cache_value=SKIPPING[cache], mag_ratios=ratios)
    batch = run(model, speed)
    assert model.last_run.blocks_run < model.last_run.blocks_total or sum(model.last_run.attention.values()) < \
        model.last_run.blocks_total
    for row, prompt in enumerate(PROMPTS):
        alone = run(model, speed, replace(SETTINGS, seed=SETTINGS.seed + row), prompts=[prompt])
        torch.testing.assert_close(batch[row], alone[0], rtol=1e-4, atol=1e-5)


def test_faster_cache_starting_inside_its_skip_range_computes_first_then_skips(shared_family_model):
    """Video-to-video starts at a low timestep, inside FasterCache's range: diffusers 0.42.1 fails there (it
    reuses an empty cache). The first step computes: off, or over one step, it is bitwise no cache; on, it
    then skips every other step's attention."""
    model = shared_family_model("hunyuan-video")
    start = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    settings = replace(SETTINGS, denoise=0.3, flow_shift=1.0)  # starts at timestep 308, inside (-1, 681)
    one_step = replace(settings, steps=1)
    assert torch.equal(run(model, SpeedSettings(cache="faster", cache_value=SKIPPING["faster"]), one_step,
                           PROMPTS[:1], init_latents=start),
                       run(model, SpeedSettings(), one_step, PROMPTS[:1], init_latents=start))
    expected = run(model, SpeedSettings(), settings, PROMPTS[:1], init_latents=start)
    off = SpeedSettings(cache="faster", cache_value=CACHES["faster"].off)
    assert torch.equal(run(model, off, settings, PROMPTS[:1], init_latents=start), expected)
    skipping = run(model, SpeedSettings(cache="faster", cache_value=SKIPPING["faster"]), settings, PROMPTS[:1],
                   init_latents=start)
    report = model.last_run
    # Every block's attention runs on the first step and then on every second one (one attention per block).
    assert sum(report.attention.values()) == report.blocks_total // SKIPPING["faster"], report.describe()
    assert not torch.equal(skipping, expected) and torch.isfinite(skipping).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_the_chosen_attention_backend_is_used_and_does_not_leak(shared_family_model, name):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    model = shared_family_model(name)
    default = _AttentionBackendRegistry.get_active_backend()
    expected = run(model, SpeedSettings())
    assert set(model.last_run.attention) == {"native"}
    for backend in ("_native_math", "flex"):
        latents = run(model, SpeedSettings(attention=backend))
        assert set(model.last_run.attention) == {backend}, model.last_run.describe()
        torch.testing.assert_close(latents, expected, rtol=1e-4, atol=1e-4)
    assert _AttentionBackendRegistry.get_active_backend() == default
    run(model, SpeedSettings())
    assert set(model.last_run.attention) == {"native"}, "the processors are back to the default"


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("sage", "The sage attention backend cannot take the text padding mask HunyuanVideo's attention always has."),
        ("sage_varlen", "Please install"),
        ("warp", "Unknown attention backend 'warp'"),
        ("flash_varlen_hub", "downloads its kernel code from the Hugging Face Hub, which this pack does not run"),
    ],
)
def test_unusable_attention_backends_are_explained(backend, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_backend(backend)


def tensors_of(module):
    return {name: t for name, t in (*module.named_parameters(), *module.named_buffers())}


def test_fp8_storage_is_exact_and_halves_the_bytes_each_onload_moves(random_folder):
    """Against a bf16 model whose cast layers were rounded to fp8 and back by hand: bitwise. Against plain
    bf16: each block group moves about half the bytes (norms and embedders stay bf16)."""
    folder = random_folder("hunyuan-video")
    dtypes = {"transformer": torch.bfloat16}
    block_level = OffloadPlan.uniform(OffloadConfig(mode="block_level"))
    fp8 = load_pipeline(folder, dtypes, block_level, speed=SpeedSettings(fp8=("transformer",)))
    plain = load_pipeline(folder, dtypes, block_level)
    try:
        stored = tensors_of(fp8.modules["transformer"])
        assert any(t.dtype == torch.float8_e4m3fn for t in stored.values())
        with torch.no_grad():
            for name, tensor in tensors_of(plain.modules["transformer"]).items():
                if stored[name].dtype == torch.float8_e4m3fn:
                    tensor.copy_(tensor.to(torch.float8_e4m3fn).to(torch.bfloat16))
        assert torch.equal(run(fp8, SpeedSettings(fp8=("transformer",))), run(plain, SpeedSettings()))

        def block_group_bytes(model):
            block = model.modules["transformer"].transformer_blocks[0]
            return next(group_bytes(h.group) for h in offload_hooks(block, recurse=False))

        assert block_group_bytes(fp8) <= 0.6 * block_group_bytes(plain)
        with poison_offloaded(fp8.modules) as poisoned:
            run(fp8, SpeedSettings(fp8=("transformer",)))
        assert not poisoned
    finally:
        fp8.release()
        plain.release()


@pytest.mark.parametrize("mode", ["block_level", "leaf_level"])
def test_fp8_storage_composes_with_disk_offloading(random_folder, tmp_path, mode):
    speed = SpeedSettings(fp8=("transformer", "text_encoder"))
    reference = load_pipeline(random_folder("hunyuan-video"), speed=speed)
    model = load_pipeline(random_folder("hunyuan-video"), speed=speed,
                          offload=OffloadPlan.uniform(OffloadConfig(mode=mode, disk_folder=str(tmp_path))))
    try:
        assert torch.equal(run(model, speed), run(reference, speed))
    finally:
        model.release()
        reference.release()


def test_regional_compile_composes_with_block_offloading_and_a_cache(random_folder):
    model = load_pipeline(random_folder("hunyuan-video"), offload=OffloadPlan.uniform(OffloadConfig(mode="block_level")))
    try:
        speed, settings = SpeedSettings(cache="first_block", cache_value=0.3), replace(SETTINGS, steps=3)
        expected = run(model, speed, settings)
        assert compile_blocks(model.pipe.transformer, backend="eager") == 4 + 2, "4 blocks, the patch and text embedders"
        assert torch.equal(run(model, speed, settings), expected)
    finally:
        model.release()


@pytest.mark.parametrize(
    ("speed", "offload", "message"),
    [
        (SpeedSettings(compile=True), "leaf_level", "Regional compilation does not work with leaf-level offloading"),
        (SpeedSettings(compile=True, cache="mag"), "block_level", "Regional compilation and the mag cache"),
        (SpeedSettings(cache="warp"), "none", "Unknown step cache 'warp'; use none or one of first_block"),
        (SpeedSettings(cache="taylorseer", cache_value=1.5), "none", "The taylorseer cache takes cache interval"),
        (SpeedSettings(fp8=("unet",)), "none", "fp8 storage: no component or role named unet"),
    ],
)
def test_speed_settings_that_cannot_work_are_refused_before_loading(random_folder, speed, offload, message):
    with pytest.raises(UserInputError, match=message):
        load_pipeline(random_folder("hunyuan-video"), offload=OffloadPlan.uniform(OffloadConfig(mode=offload)),
                      speed=speed)


def test_cache_flags():
    assert parse_cache("first_block:0.1") == ("first_block", 0.1)
    assert parse_cache("mag") == ("mag", None)
    with pytest.raises(UserInputError, match="--cache takes NAME"):
        parse_cache("mag:x")


def test_fp8_for_all_components_names_only_those_the_family_has(shared_family_model):
    """The speed node's "all components" names every role; a text-to-video model has no image encoder."""
    from hunyuan_core.speed.storage import fp8_components

    every_role = ("transformer", "text_encoder", "image_encoder", "vae")
    assert fp8_components(shared_family_model("hunyuan-video").spec, every_role) == (
        "transformer", "text_encoder", "text_encoder_2", "vae")
    assert "image_encoder" in fp8_components(shared_family_model("hunyuan-video-1.5-i2v").spec, every_role)
    with pytest.raises(UserInputError, match="fp8 storage: no component or role named encoder"):
        fp8_components(shared_family_model("hunyuan-video").spec, ("encoder",))
