"""The ComfyUI nodes: declarations complete, the whole chain runs, errors are explained, models reused."""

from __future__ import annotations

import importlib
import inspect

import comfy_stubs
import pytest
import torch
from conftest import FAMILY_FOLDERS, MODEL_NAME, TINY_SETTINGS

from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import sample
from hunyuan_core.runtime.vae import decode


@pytest.fixture
def nodes(pack):
    comfy_stubs.ProgressBar.updates = []
    comfy_stubs.ProgressBar.cancel_after = None
    return {name: cls() for name, cls in pack.NODE_CLASS_MAPPINGS.items()}


def pack_module(name):
    return importlib.import_module(f"{comfy_stubs.PACK_NAME}.{name}")


def load(nodes, offload=None, **dtypes):
    options = {"transformer_dtype": "auto", "text_encoder_dtype": "auto", "vae_dtype": "auto", **dtypes}
    return nodes["HunyuanDiffusersLoader"].load(MODEL_NAME, offload=offload, **options)[0]


TILING = dict(spatial_tiling=True, tile_size=256, tile_overlap=64, tile_frames=16, frame_overlap=4)


def sampler_inputs(**change):
    inputs = dict(width=TINY_SETTINGS.width, height=TINY_SETTINGS.height, frames=TINY_SETTINGS.frames,
                  steps=TINY_SETTINGS.steps, guidance_scale=6.0, true_cfg_scale=1.0, batched_cfg=True, flow_shift=7.0,
                  seed=TINY_SETTINGS.seed, videos_per_prompt=1, denoise=1.0)
    return {**inputs, **change}


def test_every_node_is_fully_declared(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert name.startswith("HunyuanDiffusers")
        assert cls.DESCRIPTION and cls.CATEGORY == "HunyuanVideo (diffusers)"
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
        inputs = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
        for input_name, declaration in inputs.items():
            assert declaration[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        parameters = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
        named = {p for p, value in parameters.items() if value.kind != value.VAR_KEYWORD} - {"self"}
        takes_rest = any(value.kind == value.VAR_KEYWORD for value in parameters.values())
        assert named <= set(inputs) and (takes_rest or named == set(inputs)), name


def test_loader_lists_every_family_and_nothing_else(pack):
    listed = pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersLoader"].INPUT_TYPES()["required"]["model"][0]
    assert listed == sorted([MODEL_NAME, *FAMILY_FOLDERS])


@pytest.mark.parametrize("folder", list(FAMILY_FOLDERS))
def test_the_same_nodes_run_every_family(pack, nodes, folder):
    """Loader, text encode (with the start image for image-to-video), sampler with a preview in the family's
    latent format, decode and VAE encode; the latent carries the family's layout and scale ratio."""
    model = nodes["HunyuanDiffusersLoader"].load(folder, "auto", "auto", "auto")[0]
    image = torch.rand(1, 40, 56, 3) if model.family.takes_image else None
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, 'a cat "HI"\na dog', "one prompt per line",
                                                              "", "", image=image)[0]
    comfy_stubs.Previewer.seen = []
    latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning,
                                                     **sampler_inputs(width=32, height=32, true_cfg_scale=0.0))[0]
    spatial = model.latent.spatial
    assert latent["samples"].shape == (2, model.latent.channels, 3, 32 // spatial, 32 // spatial)
    assert latent["downscale_ratio_spacial"] == spatial
    scale = comfy_stubs.HunyuanVideo15LatentFormat.scale_factor if spatial == 16 else 0.476986
    assert len(comfy_stubs.Previewer.seen) == TINY_SETTINGS.steps
    frames, videos = nodes["HunyuanDiffusersDecode"].decode(model, latent, **TILING)
    assert frames.shape == (2 * 9, 32, 32, 3) and len(videos) == 2
    encoded = nodes["HunyuanDiffusersVAEEncode"].encode(model, videos[0], **TILING)[0]
    assert encoded["samples"].shape == latent["samples"][:1].shape
    assert model.latent.scaling_factor == scale


def test_an_empty_latent_of_the_other_family_gives_only_the_size(nodes):
    """As ComfyUI adapts an EmptyHunyuanLatentVideo for a HunyuanVideo 1.5 model."""
    model = nodes["HunyuanDiffusersLoader"].load("HunyuanVideo-1.5-tiny", "auto", "auto", "auto")[0]
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    empty_v1 = {"samples": torch.zeros(1, 16, 3, 6, 4), "downscale_ratio_spacial": 8}
    latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs(), latent=empty_v1)[0]
    assert latent["samples"].shape == (1, 32, 3, 3, 2)


def test_the_whole_chain_matches_the_core(pack, nodes, tiny_model_dir):
    model = load(nodes)
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(
        model, "a cat walks\na red dog runs", "one prompt per line", "", "blurry"
    )[0]
    assert conditioning.prompts == ("a cat walks", "a red dog runs")
    comfy_stubs.ProgressBar.updates = []
    latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())[0]
    assert comfy_stubs.ProgressBar.updates == [(1, 2), (2, 2)]
    frames, videos = nodes["HunyuanDiffusersDecode"].decode(model, latent, **TILING)
    assert frames.shape == (2 * 9, 16, 16, 3) and 0 <= frames.min() and frames.max() <= 1
    assert len(videos) == 2 and torch.equal(torch.cat(videos), frames)
    assert pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersDecode"].OUTPUT_IS_LIST == (False, True)

    from hunyuan_core.loading.loader import load_pipeline

    core_model = load_pipeline(tiny_model_dir)
    try:
        core_latents = sample(core_model, encode_prompts(core_model, ["a cat walks", "a red dog runs"]), TINY_SETTINGS)
        assert torch.equal(latent["samples"], core_latents)
        assert torch.equal(frames, decode(core_model, core_latents).flatten(0, 1))
    finally:
        core_model.release()


def test_default_offload_on_cpu_and_the_offload_node(nodes):
    model = load(nodes)
    assert all(c.mode.value == "none" for c in model.offload_configs.values())
    offload = nodes["HunyuanDiffusersOffload"]
    plan = offload.configure("block_level", "all components", 1, False, False, False, False, "")[0]
    plan = offload.configure("leaf_level", "text encoders", 1, False, False, False, False, "", base=plan)[0]
    reloaded = load(nodes, offload=plan)
    assert reloaded is model, "only the offload plan changed: the loaded weights are reused"
    hooks = pack_module("hunyuan_core.offload.probe").hook_counts(model.modules)
    assert all(hooks.values()), hooks
    modes = {name: c.mode.value for name, c in model.offload_configs.items()}
    assert modes == {"transformer": "block_level", "text_encoder": "leaf_level",
                     "text_encoder_2": "leaf_level", "vae": "block_level"}


def test_offload_preset_node(nodes):
    preset = nodes["HunyuanDiffusersOffloadPreset"]
    plan = preset.configure("lowest_vram", "transformer", "")[0]
    plan = preset.configure("balanced", "vae", "", base=plan)[0]
    model = load(nodes, offload=plan)
    modes = {name: c.mode.value for name, c in model.offload_configs.items()}
    assert modes == {"transformer": "leaf_level", "text_encoder": "none", "text_encoder_2": "none",
                     "vae": "block_level"}


def test_other_dtypes_load_a_new_model_and_release_the_old(nodes):
    first = load(nodes)
    comfy_stubs.ProgressBar.updates = []
    second = load(nodes, transformer_dtype="bf16")
    assert comfy_stubs.ProgressBar.updates == [(done, 8) for done in range(1, 9)], "loading shows progress"
    assert second is not first and first.pipe is None
    assert second.modules["transformer"].dtype == torch.bfloat16


def test_sampler_validates_sizes_before_running(pack):
    validate = pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersSampler"].VALIDATE_INPUTS
    assert validate(width=848, height=480, frames=61) is True
    assert validate(width=848, height=480, frames=60) == (
        "Frames must be 4k+1 (1, 5, 9, ..., 61, ..., 129) because the VAE compresses time 4x, got 60. Try 61."
    )


def test_cancel_leaves_the_model_reusable(nodes):
    model = load(nodes)
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    expected = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())[0]["samples"]
    comfy_stubs.ProgressBar.cancel_after = 1
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())
    comfy_stubs.ProgressBar.cancel_after = None
    again = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())[0]["samples"]
    assert torch.equal(again, expected)


def test_text_encoding_shows_progress_per_encoder_pass_and_can_be_cancelled(nodes):
    model = load(nodes)
    encode = nodes["HunyuanDiffusersTextEncode"].encode
    comfy_stubs.ProgressBar.updates = []
    expected = encode(model, "a cat", "single prompt", "", "blurry")[0]
    assert comfy_stubs.ProgressBar.updates == [(done, 4) for done in range(1, 5)], "CLIP, Llama for each prompt set"
    comfy_stubs.ProgressBar.updates = []
    comfy_stubs.ProgressBar.cancel_after = 1
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        encode(model, "a cat", "single prompt", "", "blurry")
    comfy_stubs.ProgressBar.cancel_after = None
    again = encode(model, "a cat", "single prompt", "", "blurry")[0]
    for name in ("positive", "negative"):
        rows, expected_rows = getattr(again, name), getattr(expected, name)
        assert rows.tensors.keys() == expected_rows.tensors.keys()
        assert all(torch.equal(rows[field], expected_rows[field]) for field in rows.tensors)


def test_stream_offloading_on_a_cpu_is_explained(nodes):
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type, match="use_stream needs an accelerator"):
        nodes["HunyuanDiffusersOffload"].configure("leaf_level", "vae", 1, True, False, False, False, "")


@pytest.mark.parametrize("name", ["../outside", "/etc", "a/../../b", "C:\\models"])
def test_model_names_cannot_escape_the_model_folders(nodes, name):
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type, match="absolute paths and '..' are refused"):
        nodes["HunyuanDiffusersLoader"].load(name, "auto", "auto", "auto")


def test_missing_model_is_explained(nodes, models_root):
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type) as error:
        nodes["HunyuanDiffusersLoader"].load("gone", "auto", "auto", "auto")
    assert str(error.value) == (
        f"Model folder 'gone' not found in {models_root}. Put the diffusers-format HunyuanVideo folder there "
        "(or add a path in extra_model_paths.yaml) and refresh."
    )


def test_empty_prompt_batch_is_explained(nodes):
    model = load(nodes)
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type, match="The prompt list is empty; give at least one prompt."):
        nodes["HunyuanDiffusersTextEncode"].encode(model, "\n  \n", "one prompt per line", "", "")


def test_sampler_previews_and_makes_room_first(nodes):
    comfy_stubs.Memory.requests = []
    comfy_stubs.Previewer.seen = []
    model = load(nodes)
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())
    weights = sum(p.numel() * p.element_size() for p in model.modules["transformer"].parameters())
    [(requested, device)] = comfy_stubs.Memory.requests
    assert requested > weights and device == "cpu"
    assert len(comfy_stubs.Previewer.seen) == TINY_SETTINGS.steps
    assert comfy_stubs.Previewer.seen[0].shape == (1, 16, 3, 2, 2)


def test_a_comfyui_without_the_family_latent_format_samples_without_previews(nodes, monkeypatch, caplog):
    """ComfyUI releases before HunyuanVideo 1.5 (0.3.64, say) have no HunyuanVideo15 latent format."""
    import comfy.latent_formats

    monkeypatch.delattr(comfy.latent_formats, "HunyuanVideo15")
    comfy_stubs.Previewer.seen = []
    model = nodes["HunyuanDiffusersLoader"].load("HunyuanVideo-1.5-tiny", "auto", "auto", "auto")[0]
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    comfy_stubs.ProgressBar.updates = []
    latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())[0]
    assert latent["samples"].shape == (1, 32, 3, 1, 1)
    assert comfy_stubs.ProgressBar.updates == [(1, 2), (2, 2)] and comfy_stubs.Previewer.seen == []
    assert "this ComfyUI has no HunyuanVideo15 latent format, so sampling shows no previews" in caplog.text


def test_video_to_video_through_the_nodes(nodes):
    model = load(nodes)
    frames = torch.rand(9, 16, 32, 3)
    latent = nodes["HunyuanDiffusersVAEEncode"].encode(model, frames, **TILING)[0]
    assert latent["samples"].shape == (1, 16, 3, 2, 4)
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    result = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs(denoise=0.5), latent=latent)
    assert result[0]["samples"].shape == latent["samples"].shape
    decoded, _ = nodes["HunyuanDiffusersDecode"].decode(model, result[0], **TILING)
    assert decoded.shape == frames.shape


def test_freeing_comfyui_memory_releases_the_pipeline(nodes):
    import gc
    import weakref

    model = load(nodes)
    transformer = weakref.ref(model.modules["transformer"])
    unloads = comfy_stubs.Memory.unloads
    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
    assert comfy_stubs.Memory.unloads == unloads + 1, "ComfyUI's own unloading still runs"
    assert model.pipe is None and transformer() is None


def test_switching_models_keeps_one_copy_of_the_weights(nodes):
    import gc
    import weakref

    first = load(nodes)
    transformer = weakref.ref(first.modules["transformer"])
    load(nodes, vae_dtype="bf16")
    gc.collect()
    assert transformer() is None


def test_a_wrong_latent_is_explained_before_sampling(nodes):
    model = load(nodes)
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type, match=r"Expected HunyuanVideo 1 text-to-video latents shaped \[batch, 16, frames"):
        nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs(),
                                                latent={"samples": torch.zeros(1, 4, 8, 8)})


def test_loader_reports_a_change_only_when_its_model_was_released(pack, nodes):
    is_changed = pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersLoader"].IS_CHANGED
    before = is_changed(MODEL_NAME, "auto", "auto", "fp32")
    model = load(nodes, vae_dtype="fp32")
    assert is_changed(MODEL_NAME, "auto", "auto", "fp32") == before, "loading alone must not re-run the graph"
    import comfy.model_management

    comfy.model_management.unload_all_models()
    after = is_changed(MODEL_NAME, "auto", "auto", "fp32")
    assert after != before and model.pipe is None
    again = load(nodes, vae_dtype="fp32")
    assert again.pipe is not None and is_changed(MODEL_NAME, "auto", "auto", "fp32") == after


def test_speed_settings_reach_the_model_and_only_fp8_or_compile_reload_it(nodes, caplog):
    speed_node = nodes["HunyuanDiffusersSpeed"]
    cached = speed_node.configure("first_block", 0.3, "", "_native_math", "none", False)[0]
    model = load(nodes)
    again = nodes["HunyuanDiffusersLoader"].load(MODEL_NAME, "auto", "auto", "auto", speed=cached)[0]
    assert again is model and model.speed == cached, "cache and backend change in place"
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]
    with caplog.at_level("INFO"):
        nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs(steps=4))
    assert "cache first_block:" in caplog.text and "_native_math" in caplog.text
    fp8 = speed_node.configure("none", 0.0, "", "default", "transformer", False)[0]
    reloaded = nodes["HunyuanDiffusersLoader"].load(MODEL_NAME, "auto", "auto", "auto", speed=fp8)[0]
    assert reloaded is not model and model.pipe is None, "fp8 storage loads the model again, after releasing it"
    assert any(p.dtype == torch.float8_e4m3fn for p in reloaded.modules["transformer"].parameters())


def test_bad_speed_settings_are_explained(nodes):
    error_type = pack_module("hunyuan_core.errors").UserInputError
    with pytest.raises(error_type, match="The taylorseer cache takes cache interval"):
        nodes["HunyuanDiffusersSpeed"].configure("taylorseer", 2.5, "", "default", "none", False)


@pytest.fixture
def single_files(shared_family_model, tmp_path, monkeypatch):
    """ComfyUI's models/diffusion_models (a bf16 and a GGUF transformer, in a subfolder too), models/unet,
    models/vae and models/text_encoders, holding files of the tiny model."""
    from hunyuan_core.testing import single_files as files

    pipe = shared_family_model("hunyuan-video").pipe
    folders = {name: tmp_path / name for name in ("diffusion_models", "unet", "vae", "text_encoders")}
    for folder in folders.values():
        (folder / "hyv").mkdir(parents=True)
    files.write_transformer(pipe.transformer, folders["diffusion_models"] / "hyv" / "t2v_fp8.safetensors",
                            "fp8_e4m3fn", prefix="model.diffusion_model.")
    files.write_transformer(pipe.transformer, folders["unet"] / "t2v_fp32.safetensors", "fp32")
    (folders["unet"] / "notes.txt").write_text("not a model")
    files.write_vae(pipe.vae, folders["vae"] / "hunyuan_video_vae.safetensors", naming="diffusers",
                    prefix="first_stage_model.", dtype=torch.float32)  # Tencent's names (the tests elsewhere: LDM's)
    files.write_language_model(pipe.text_encoder, folders["text_encoders"] / "llava_llama3.safetensors", "fp32")
    files.write_clip(pipe.text_encoder_2, folders["text_encoders"] / "clip_l.safetensors", torch.float32)
    for name, folder in folders.items():
        monkeypatch.setitem(comfy_stubs.FOLDERS, name, [str(folder)])
    return folders


def single_file_inputs(**change):
    inputs = dict(transformer="t2v_fp32.safetensors", vae="hunyuan_video_vae.safetensors",
                  text_encoder="llava_llama3.safetensors", clip="clip_l.safetensors", model_folder=MODEL_NAME,
                  transformer_dtype="auto", text_encoder_dtype="auto", vae_dtype="auto")
    return {**inputs, **change}


def test_single_file_loader_lists_comfyuis_folders(pack, single_files):
    required = pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersSingleFileLoader"].INPUT_TYPES()["required"]
    assert required["transformer"][0] == ["hyv/t2v_fp8.safetensors", "t2v_fp32.safetensors"]
    assert required["vae"][0] == ["from model folder", "hunyuan_video_vae.safetensors"]
    assert required["clip"][0] == required["text_encoder"][0] == [
        "from model folder", "clip_l.safetensors", "llava_llama3.safetensors"]
    assert required["model_folder"][0] == ["none", *sorted([MODEL_NAME, *FAMILY_FOLDERS])]


def test_single_file_loader_gives_the_folder_loaders_model(nodes, single_files):
    """Every weight from files gives the folder's video through the same nodes; offload settings connect as to
    the folder loader and every component's hooks fire; a model from other files replaces the first."""
    loader = nodes["HunyuanDiffusersSingleFileLoader"]
    preset = nodes["HunyuanDiffusersOffloadPreset"].configure("lowest_vram", "all components", "")[0]
    model = loader.load(**single_file_inputs(), offload=preset)[0]
    assert {c.mode.value for c in model.offload_configs.values()} == {"leaf_level"}

    def video(model):
        conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "one prompt per line", "", "")[0]
        latent = nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs())[0]
        return nodes["HunyuanDiffusersDecode"].decode(model, latent, **TILING)[0]

    from_files = video(model)
    assert torch.equal(from_files, video(load(nodes)))
    assert model.pipe is None, "loading another model released the first"
    fp8 = loader.load(**single_file_inputs(transformer="hyv/t2v_fp8.safetensors", vae="from model folder"))[0]
    assert torch.float8_e4m3fn in {p.dtype for p in fp8.modules["transformer"].parameters()}
    assert loader.IS_CHANGED(**single_file_inputs(transformer="hyv/t2v_fp8.safetensors", vae="from model folder")) == 0
    assert loader.IS_CHANGED(**single_file_inputs()) == 1, "the released model's inputs ask ComfyUI to load again"


def test_single_file_loader_explains_missing_tokenizers_and_bad_names(nodes, single_files):
    loader = nodes["HunyuanDiffusersSingleFileLoader"]
    with pytest.raises(pack_module("hunyuan_core.errors").UserInputError,
                       match=r"No model folder is chosen and ComfyUI's own tokenizer files were not found "
                             r"\(comfy/text_encoders/llama_tokenizer, comfy/sd1_tokenizer\)"):
        loader.load(**single_file_inputs(model_folder="none"))
    with pytest.raises(pack_module("hunyuan_core.errors").UserInputError, match="absolute paths and '..' are refused"):
        loader.load(**single_file_inputs(transformer="../unet/t2v_fp32.safetensors"))
    with pytest.raises(pack_module("hunyuan_core.errors").UserInputError,
                       match=r"'gone.safetensors' not found in ComfyUI's diffusion_models / unet folders"):
        loader.load(**single_file_inputs(transformer="gone.safetensors"))


def test_without_a_folder_the_tokenizers_come_from_comfyuis_package(pack, single_files, tmp_path, monkeypatch):
    import sys

    package = tmp_path / "comfy"
    for name, sub in pack_module("nodes.comfy_bridge").COMFY_TOKENIZERS.items():
        (package / sub).mkdir(parents=True)
        (package / sub / "tokenizer_config.json").write_text("{}")
    monkeypatch.setattr(sys.modules["comfy"], "__file__", str(package / "__init__.py"), raising=False)
    source = pack_module("nodes.single_file_loader").model_source(**{
        k: v for k, v in single_file_inputs(model_folder="none").items() if not k.endswith("dtype")})
    assert source.folder is None
    assert source.tokenizer == package / "text_encoders" / "llama_tokenizer"
    assert source.tokenizer_2 == package / "sd1_tokenizer"


def test_lora_nodes_bring_the_loaded_model_to_their_list_in_place(pack, nodes, loras_root):
    """The LoRA nodes make a list; the loader applies exactly that list to the cached model (no reload):
    chained LoRAs apply together, strength 0 and an unconnected list give bitwise the model without LoRA."""
    from hunyuan_core.testing.loras import random_lora

    model = load(nodes)
    random_lora(model.modules["transformer"]).save(loras_root / "style.safetensors", "kohya")
    (loras_root / "more").mkdir()
    random_lora(model.modules["transformer"], seed=1).save(loras_root / "more" / "other.safetensors", "original")
    (loras_root / "old.ckpt").write_bytes(b"")
    listed = pack.NODE_CLASS_MAPPINGS["HunyuanDiffusersLoRA"].INPUT_TYPES()["required"]["lora_name"][0]
    assert listed == ["more/other.safetensors", "style.safetensors"]
    lora_node, loader = nodes["HunyuanDiffusersLoRA"], nodes["HunyuanDiffusersLoader"]
    chain = lora_node.add("more/other.safetensors", 0.5, lora_node.add("style.safetensors", 1.0)[0])[0]
    assert [(lora.path.name, lora.strength) for lora in chain] == [("style.safetensors", 1.0),
                                                                   ("other.safetensors", 0.5)]
    conditioning = nodes["HunyuanDiffusersTextEncode"].encode(model, "a cat", "single prompt", "", "")[0]

    def latents(**loader_inputs):
        assert loader.load(MODEL_NAME, "auto", "auto", "auto", **loader_inputs)[0] is model
        return nodes["HunyuanDiffusersSampler"].sample(model, conditioning, **sampler_inputs(steps=1))[0]["samples"]

    plain = latents()
    assert not torch.equal(latents(loras=chain), plain) and len(model.loras) == 2
    assert torch.equal(latents(loras=lora_node.add("style.safetensors", 0.0)[0]), plain) and len(model.loras) == 1
    assert torch.equal(latents(), plain) and model.loras == {}
    with pytest.raises(pack_module("hunyuan_core.errors").UserInputError, match="LoRA 'gone.safetensors' not found"):
        lora_node.add("gone.safetensors", 1.0)
