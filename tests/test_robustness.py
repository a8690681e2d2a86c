"""Nothing crashes the server, nothing is lost: out of memory, reconfiguration, repeated runs, disk offload
files, unsafe loading."""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import re
from pathlib import Path

import comfy_stubs
import pytest
import torch
from conftest import MODEL_NAME, PROMPTS, TINY_SETTINGS
from helpers import generate

from hunyuan_core.errors import OutOfMemoryError, UserInputError
from hunyuan_core.offload import hooks as offload
from hunyuan_core.offload.hooks import offload_hooks
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.offload.probe import hook_counts

COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")
REPO = Path(__file__).resolve().parents[1]


def rss() -> int:
    """Resident memory after a garbage collection and, with glibc, after returning freed heap pages to the
    system: what stays is live memory, not allocator caching (which otherwise makes RSS jump at random)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fail_once(module: torch.nn.Module, error: BaseException):
    """Makes the next forward of `module` raise `error`, as an allocation failure inside the model would."""

    def hook(*_):
        handle.remove()
        raise error

    handle = module.register_forward_pre_hook(hook)
    return handle


def out_of_memory() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("preset", ["lowest_vram", "balanced", "disk"])
def test_out_of_memory_while_sampling_is_explained_and_the_model_recovers(model, reference, tmp_path, preset):
    model.configure_offload(preset_plan(preset, "cpu", disk_folder=str(tmp_path)))
    hooks = hook_counts(model.modules)
    fail_once(model.modules["transformer"].transformer_blocks[1], out_of_memory())
    with pytest.raises(OutOfMemoryError) as error:
        generate(model, PROMPTS, TINY_SETTINGS)
    assert str(error.value) == (
        "Out of GPU memory while sampling 2 video(s) of 16x16, 9 frames. Use a lower-VRAM offload preset "
        "(lowest_vram), fewer frames or a smaller size, fewer videos at once, or turn batched_cfg off. "
        "The model is ready for another run."
    )
    assert hook_counts(model.modules) == hooks
    assert len(list(tmp_path.iterdir())) == (len(COMPONENTS) if preset == "disk" else 0)
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])


def test_out_of_memory_while_decoding_is_explained(model, reference):
    model.configure_offload(preset_plan("lowest_vram", "cpu"))
    fail_once(model.modules["vae"].decoder.up_blocks[1], out_of_memory())
    with pytest.raises(OutOfMemoryError) as error:
        generate(model, PROMPTS, TINY_SETTINGS)
    assert str(error.value) == (
        "Out of GPU memory while decoding. Turn spatial tiling on, use a smaller tile_size or tile_frames, or the "
        "lowest_vram preset for the VAE. The model is ready for another run."
    )
    assert torch.equal(generate(model, PROMPTS, TINY_SETTINGS)[1], reference[1])


def test_out_of_memory_while_encoding_prompts_is_explained(model):
    model.configure_offload(preset_plan("balanced", "cpu"))
    fail_once(model.modules["text_encoder"].layers[0], out_of_memory())
    with pytest.raises(OutOfMemoryError, match="^Out of GPU memory while encoding the prompts. Use the lowest_vram"):
        generate(model, PROMPTS, TINY_SETTINGS)


def test_other_failures_inside_the_model_pass_through_and_the_model_recovers(model, reference):
    model.configure_offload(preset_plan("lowest_vram", "cpu"))
    fail_once(model.modules["transformer"].single_transformer_blocks[0], KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(generate(model, PROMPTS, TINY_SETTINGS)[0], reference[0])


def hook_ids(model):
    return {name: {id(hook) for hook in offload_hooks(module)} for name, module in model.modules.items()}


def test_a_failure_rebuilds_only_the_hooks_of_the_component_that_was_running(model, reference, tmp_path):
    """A cancelled decode must not read back and rewrite a disk-offloaded 24 GB transformer."""
    model.configure_offload(preset_plan("disk", "cpu", disk_folder=str(tmp_path)))
    before, folders = hook_ids(model), set(tmp_path.iterdir())
    fail_once(model.modules["vae"].decoder.up_blocks[1], KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate(model, PROMPTS, TINY_SETTINGS)
    after = hook_ids(model)
    assert [name for name in COMPONENTS if after[name] != before[name]] == ["vae"]
    assert len(folders - set(tmp_path.iterdir())) == 1, "only the VAE's offload files were replaced"
    assert len(list(tmp_path.iterdir())) == len(COMPONENTS)
    assert torch.equal(generate(model, PROMPTS, TINY_SETTINGS)[1], reference[1])


def test_rehooking_deletes_the_old_offload_files_before_writing_new_ones(model, tmp_path, monkeypatch):
    model.configure_offload(preset_plan("disk", "cpu", disk_folder=str(tmp_path)))
    folders_when_writing = []
    apply = offload.apply_component_offload

    def counting_apply(*args):
        folders_when_writing.append(len(list(tmp_path.iterdir())))
        return apply(*args)

    monkeypatch.setattr(offload, "apply_component_offload", counting_apply)
    model.reset_offload(("transformer",))
    assert folders_when_writing == [len(COMPONENTS) - 1], "the component is never on disk twice"


def test_a_model_that_cannot_be_rehooked_after_a_failure_is_released(pack, monkeypatch):
    nodes = {name: cls() for name, cls in pack.NODE_CLASS_MAPPINGS.items()}
    bridge = importlib.import_module(f"{comfy_stubs.PACK_NAME}.nodes.comfy_bridge")
    core_offload = importlib.import_module(f"{comfy_stubs.PACK_NAME}.hunyuan_core.offload.hooks")
    loader_inputs = (MODEL_NAME, "auto", "auto", "auto")
    offload_settings = nodes["HunyuanDiffusersOffloadPreset"].configure("lowest_vram", "all components", "")[0]
    model = nodes["HunyuanDiffusersLoader"].load(*loader_inputs, offload=offload_settings)[0]
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    releases = nodes["HunyuanDiffusersLoader"].IS_CHANGED(*loader_inputs, offload=offload_settings)
    fail_once(model.modules["transformer"].transformer_blocks[1], out_of_memory())

    def failing_apply(name, *_):
        raise RuntimeError(f"pinning {name} failed")

    monkeypatch.setattr(core_offload, "apply_component_offload", failing_apply)
    sampler = dict(width=16, height=16, frames=9, steps=2, guidance_scale=6.0, true_cfg_scale=1.0, batched_cfg=True,
                   flow_shift=7.0, seed=0, videos_per_prompt=1, denoise=1.0)
    with pytest.raises(importlib.import_module(f"{comfy_stubs.PACK_NAME}.hunyuan_core.errors").OutOfMemoryError) as error:
        nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler)
    assert str(error.value).endswith(
        "turn batched_cfg off. The model was released; the loader loads it again on the next run.")
    assert model.pipe is None
    assert nodes["HunyuanDiffusersLoader"].IS_CHANGED(*loader_inputs, offload=offload_settings) == releases + 1, "ComfyUI loads it again"
    assert bridge.PIPELINES.current is None


def test_switching_presets_20_times_leaves_one_set_of_hooks_and_no_growth(model, reference, tiny_model_dir, tmp_path):
    presets = ["balanced", "lowest_vram", "disk", "low_system_ram", "none"]
    sizes = []
    for switch in range(20):
        model.configure_offload(preset_plan(presets[switch % len(presets)], "cpu", disk_folder=str(tmp_path)))
        sizes.append(rss())
    model.configure_offload(preset_plan("lowest_vram", "cpu"))
    from hunyuan_core.loading.loader import load_pipeline

    fresh = load_pipeline(tiny_model_dir, offload=preset_plan("lowest_vram", "cpu"))
    try:
        assert hook_counts(model.modules) == hook_counts(fresh.modules)
    finally:
        fresh.release()
    assert not any(tmp_path.iterdir()), "replaced plans leave no offload files behind"
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])
    assert sizes[-1] <= sizes[1] * 1.05, f"RSS grew from {sizes[1] / 2**20:.0f} to {sizes[-1] / 2**20:.0f} MiB"


def test_20_runs_of_the_graph_keep_memory_flat_and_outputs_identical(pack):
    nodes = {name: cls() for name, cls in pack.NODE_CLASS_MAPPINGS.items()}
    comfy_stubs.ProgressBar.cancel_after = None
    model = nodes["HunyuanDiffusersLoader"].load(MODEL_NAME, "auto", "auto", "auto")[0]
    tiling = dict(spatial_tiling=True, tile_size=256, tile_overlap=64, tile_frames=16, frame_overlap=4)
    sampler = dict(width=32, height=32, frames=9, steps=2, guidance_scale=6.0, true_cfg_scale=2.0, batched_cfg=True,
                   flow_shift=7.0, seed=3, videos_per_prompt=1, denoise=1.0)
    outputs, sizes = [], []
    for _ in range(20):
        comfy_stubs.ProgressBar.updates = []
        comfy_stubs.Previewer.seen = []
        conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat\na dog", "one prompt per line", "", "")[0]
        latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler)[0]
        outputs.append(nodes["HunyuanDiffusersDecode"].decode(model, latent, **tiling)[0])
        del conditioning, latent
        sizes.append(rss())
    assert all(torch.equal(output, outputs[0]) for output in outputs)
    assert sizes[-1] <= sizes[1] * 1.05, f"RSS grew from {sizes[1] / 2**20:.0f} to {sizes[-1] / 2**20:.0f} MiB"


def test_stale_offload_folders_of_dead_processes_are_removed(model, tmp_path):
    dead = tmp_path / "hyvd-transformer-pid999999999-abcd"
    alive = tmp_path / "hyvd-transformer-pid1-abcd"  # pid 1 always exists
    unrelated = tmp_path / "my-files"
    for folder in (dead, alive, unrelated):
        folder.mkdir()
    model.configure_offload(preset_plan("disk", "cpu", disk_folder=str(tmp_path)))
    assert not dead.exists() and alive.exists() and unrelated.exists()
    ours = [f for f in tmp_path.iterdir() if f.name.startswith("hyvd-") and f"pid{os.getpid()}-" in f.name]
    assert len(ours) == len(COMPONENTS)
    model.release()
    assert not any(f"pid{os.getpid()}-" in f.name for f in tmp_path.iterdir()), "released models delete their files"


def test_a_full_disk_is_explained_and_nothing_stays_applied(model, tmp_path, monkeypatch):
    import safetensors.torch

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    with pytest.raises(UserInputError) as error:
        model.configure_offload(preset_plan("disk", "cpu", disk_folder=str(tmp_path)))
    assert re.fullmatch(
        r"Could not write the offload files of transformer to .* \(No space left on device\)\. Free disk space "
        r"there \(about 0\.0 GB for transformer\) or choose another folder\.",
        str(error.value),
    )
    assert hook_counts(model.modules) == dict.fromkeys(COMPONENTS, 0)
    assert not any(tmp_path.iterdir())


def test_corrupted_weights_are_explained(tiny_model_dir, tmp_path):
    import shutil

    from hunyuan_core.loading.loader import load_pipeline

    copy = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = next((copy / "vae").glob("*.safetensors"))
    weights.write_bytes(b"\xff" * 64 + weights.read_bytes()[64:])
    with pytest.raises(UserInputError, match=r"^Could not load vae from .*The files may be incomplete or corrupted"):
        load_pipeline(copy)


def test_the_code_never_unpickles_or_runs_remote_code():
    sources = [p for folder in ("hunyuan_core", "nodes") for p in (REPO / folder).rglob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text()
        for forbidden in ("torch.load(", "import pickle", "trust_remote_code=True", "use_safetensors=False"):
            assert forbidden not in text, f"{path.name} contains {forbidden}"
