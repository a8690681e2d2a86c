"""On a CUDA device: every component offloaded with streams, no device mismatch, same output, less VRAM.

Skipped without CUDA. Uses the `small` random model, whose weights (not activations) dominate memory
at the small video size used here, so the peak-memory comparison means something.
"""

from __future__ import annotations

import pytest
import torch
from helpers import generate

from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.offload.config import OffloadConfig, OffloadPlan
from hunyuan_core.offload.probe import count_onloads, hook_counts
from hunyuan_core.runtime.sampling import SamplingSettings
from hunyuan_core.testing.random_models import save_random_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SETTINGS = SamplingSettings(width=64, height=64, frames=9, steps=3, seed=1)
PROMPTS = ["a cat walks", "a red dog runs across the snowy field at night"]
COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")

STREAM_PLANS = {
    "block_level+stream": OffloadConfig(mode="block_level", onload_device="cuda", use_stream=True),
    "block_level+record_stream": OffloadConfig(mode="block_level", onload_device="cuda", use_stream=True,
                                               record_stream=True),
    "leaf_level+stream": OffloadConfig(mode="leaf_level", onload_device="cuda", use_stream=True),
    "leaf_level+stream+low_cpu_mem": OffloadConfig(mode="leaf_level", onload_device="cuda", use_stream=True,
                                                   low_cpu_mem_usage=True),
    "block_level": OffloadConfig(mode="block_level", onload_device="cuda"),
}


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("gpu") / "small", scale="small", dtype=torch.bfloat16)


def run(model_dir, config):
    """Loads with `config` for every component; returns outputs, peak VRAM, onloads and where weights ended."""
    model = load_pipeline(model_dir, offload=OffloadPlan.uniform(config))
    try:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with count_onloads(model.modules) as onloads:
            latents, frames = generate(model, PROMPTS, SETTINGS)
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        devices = {name: {p.device.type for p in module.parameters()} for name, module in model.modules.items()}
        weights = sum(p.numel() * p.element_size() for m in model.modules.values() for p in m.parameters())
        return latents, frames, peak, dict(onloads), hook_counts(model.modules), devices, weights
    finally:
        model.release()


@pytest.fixture(scope="module")
def resident(small_model_dir):
    return run(small_model_dir, OffloadConfig(onload_device="cuda"))


@pytest.mark.parametrize("name", list(STREAM_PLANS))
def test_offloaded_everywhere_on_cuda(small_model_dir, resident, name):
    latents, frames, peak, onloads, hooks, devices, weights = run(small_model_dir, STREAM_PLANS[name])
    assert all(hooks[c] > 0 for c in COMPONENTS), hooks
    assert all(onloads[c] > 0 for c in COMPONENTS), onloads
    assert all(devices[c] == {"cpu"} for c in COMPONENTS), f"weights left on the GPU: {devices}"
    torch.testing.assert_close(latents, resident[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(frames, resident[1], rtol=2e-2, atol=2e-2)
    saved = resident[2] - peak
    assert saved > 0.5 * weights, f"peak {peak / 2**20:.0f} MiB vs {resident[2] / 2**20:.0f} MiB without offload"


def test_only_the_transformer_offloaded_still_runs(small_model_dir, resident):
    plan = OffloadPlan.uniform(OffloadConfig(onload_device="cuda")).with_components(
        ("transformer",), STREAM_PLANS["leaf_level+stream"]
    )
    model = load_pipeline(small_model_dir, offload=plan)
    try:
        latents, _ = generate(model, PROMPTS, SETTINGS)
    finally:
        model.release()
    torch.testing.assert_close(latents, resident[0], rtol=2e-2, atol=2e-2)


def test_release_returns_the_vram(small_model_dir):
    torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")  # cuBLAS workspace, kept for good
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    model = load_pipeline(small_model_dir, offload=OffloadPlan.uniform(OffloadConfig(onload_device="cuda")))
    generate(model, PROMPTS[:1], SETTINGS)
    assert torch.cuda.memory_allocated() > before
    model.release()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before + 2**20


def test_failure_mid_forward_leaves_nothing_on_the_gpu(small_model_dir, resident):
    from hunyuan_core.errors import OutOfMemoryError

    model = load_pipeline(small_model_dir, offload=OffloadPlan.uniform(STREAM_PLANS["block_level+stream"]))
    try:
        block = model.modules["transformer"].transformer_blocks[2]

        def fail(*_):
            handle.remove()
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

        handle = block.register_forward_pre_hook(fail)
        with pytest.raises(OutOfMemoryError):
            generate(model, PROMPTS, SETTINGS)
        on_gpu = [n for m in model.modules.values() for n, p in m.named_parameters() if p.device.type == "cuda"]
        assert not on_gpu, f"left on the GPU after the failure: {on_gpu[:5]}"
        latents, _ = generate(model, PROMPTS, SETTINGS)
    finally:
        model.release()
    torch.testing.assert_close(latents, resident[0], rtol=2e-2, atol=2e-2)


def test_weights_are_pinned_only_while_a_configuration_needs_it(small_model_dir):
    """Streams pin the weights in place (no second host copy); a later configuration without pinned
    copies must give that page-locked RAM back instead of keeping it."""
    from hunyuan_core.offload.presets import preset_plan

    model = load_pipeline(small_model_dir, offload=preset_plan("balanced", "cuda"))
    try:
        def pinned():
            return {name: {p.is_pinned() for p in module.parameters() if p.device.type == "cpu"}
                    for name, module in model.modules.items()}

        assert pinned() == {name: {True} for name in COMPONENTS}
        model.configure_offload(preset_plan("low_system_ram", "cuda"))
        assert pinned() == {name: {False} for name in COMPONENTS}
        latents, _ = generate(model, PROMPTS[:1], SETTINGS)
        assert torch.isfinite(latents).all()
    finally:
        model.release()


FAMILY_MODELS = ["hunyuan-video-i2v", "hunyuan-video-i2v-33ch", "hunyuan-video-1.5", "hunyuan-video-1.5-i2v",
                 "hunyuan-video-1.5-i2v-step-distilled"]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: save_random_model(root / name, name) for name in FAMILY_MODELS}


def run_family(folder, plan, speed=None):
    from hunyuan_core.runtime.encode import encode_prompts
    from hunyuan_core.runtime.sampling import sample

    model = load_pipeline(folder, offload=plan, speed=speed)
    try:
        image = torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(0)) if model.family.takes_image \
            else None
        with count_onloads(model.modules) as onloads:
            conditioning = encode_prompts(model, ['a cat "HI"', "a dog"], negative_prompts="ugly", images=image)
            latents = sample(model, conditioning, SamplingSettings(width=64, height=64, frames=9, steps=3, seed=1))
            torch.cuda.synchronize()
        return latents, dict(onloads), model.last_run
    finally:
        model.release()


@pytest.mark.parametrize("preset", ["balanced", "lowest_vram"])
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_family_runs_offloaded_with_streams_on_cuda(family_dirs, name, preset):
    """No device mismatch anywhere (the seed bug, a VAE or image encoder that never onloads would raise
    here), every component's hooks fire, and the output matches the model kept on the GPU."""
    from hunyuan_core.offload.presets import preset_plan

    resident, _, _ = run_family(family_dirs[name], preset_plan("none", "cuda"))
    latents, onloads, _ = run_family(family_dirs[name], preset_plan(preset, "cuda"))
    assert all(count > 0 for component, count in onloads.items() if component != "text_encoder_2"), onloads
    torch.testing.assert_close(latents, resident, rtol=2e-2, atol=2e-2)


def test_a_cache_keeps_skipping_blocks_under_streamed_offloading(small_model_dir):
    """Streamed offloading removes its trace hooks after the first forward, from under the cache (diffusers
    0.42.1 would unhook the cache there); the first_block cache still skips, and skipped blocks move nothing."""
    from hunyuan_core.offload.presets import preset_plan
    from hunyuan_core.speed.settings import SpeedSettings

    speed = SpeedSettings(cache="first_block", cache_value=1.0)  # skips about half the steps of random weights
    _, _, resident = run_family(small_model_dir, preset_plan("none", "cuda"), speed)
    plan = preset_plan("balanced", "cuda")
    _, plain, _ = run_family(small_model_dir, plan)
    _, cached, report = run_family(small_model_dir, plan, speed)
    assert resident.blocks_run < resident.blocks_total, resident.describe()
    assert report.blocks_run == resident.blocks_run, (report.describe(), resident.describe())
    assert cached["transformer"] < plain["transformer"]


def test_fp8_storage_moves_half_the_bytes_with_streams(small_model_dir):
    from hunyuan_core.offload.presets import preset_plan
    from hunyuan_core.speed.settings import SpeedSettings

    plan = preset_plan("balanced", "cuda")
    resident, _, _ = run_family(small_model_dir, preset_plan("none", "cuda"), SpeedSettings(fp8=("transformer",)))
    model = load_pipeline(small_model_dir, offload=plan, speed=SpeedSettings(fp8=("transformer",)))
    try:
        block = model.modules["transformer"].transformer_blocks[0]
        moved = [t.dtype for m in block.modules() for t in m.parameters(recurse=False)]
        assert torch.float8_e4m3fn in moved, "the blocks' weights are stored, pinned and moved in fp8"
    finally:
        model.release()
    latents, _, _ = run_family(small_model_dir, plan, SpeedSettings(fp8=("transformer",)))
    torch.testing.assert_close(latents, resident, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", ["_native_cudnn", "_native_efficient", "flex"])
def test_attention_backends_on_cuda(small_model_dir, backend):
    from hunyuan_core.offload.presets import preset_plan
    from hunyuan_core.speed.settings import SpeedSettings

    plan = preset_plan("none", "cuda")
    reference, _, _ = run_family(small_model_dir, plan)
    latents, _, report = run_family(small_model_dir, plan, SpeedSettings(attention=backend))
    assert set(report.attention) == {backend}, report.describe()
    torch.testing.assert_close(latents, reference, rtol=5e-2, atol=5e-2)
