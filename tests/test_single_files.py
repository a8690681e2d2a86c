"""Single files as ComfyUI users have them (transformer, VAE, text encoders; bf16, fp8, scaled fp8, GGUF),
written by the tests from tiny random models: each loads to the model it was written from, composes with every
offload preset, and wrong files are refused with a message saying what to use."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from conftest import PROMPTS, TINY_SETTINGS
from helpers import generate

from hunyuan_core.errors import UserInputError
from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.loading.single_file import ModelSource
from hunyuan_core.loading.single_file import transformer_keys as keys
from hunyuan_core.loading.single_file.transformer import module_maps
from hunyuan_core.offload.config import OffloadConfig, OffloadMode, OffloadPlan
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.offload.probe import count_onloads, poison_offloaded
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.testing import single_files as files

MODEL = "hunyuan-video"


def transformer_inputs(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(1, config.in_channels, 3, 4, 4, generator=generator),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 5, config.text_embed_dim, generator=generator),
        encoder_attention_mask=torch.ones(1, 5, dtype=torch.bool),
        pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
        guidance=torch.tensor([6000.0]),
    )


@torch.no_grad()
def forward(transformer, config):
    return transformer(**transformer_inputs(config)).sample


def with_weights(transformer, original: dict):
    """A copy of `transformer` holding `original` (Tencent names, the compute values a file should load to)."""
    config = dict(transformer.config)
    state = keys.to_diffusers(original, module_maps("HunyuanVideo 1", config),
                              config["num_attention_heads"] * config["attention_head_dim"])
    reference = copy.deepcopy(transformer)
    reference.load_state_dict(state, strict=True)
    return reference


@torch.no_grad()
def other_weights(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """A copy of `module` with every weight moved a little: a file written from it loads to values the model
    folder beside it does not hold, so a loader that took the folder's weights instead fails."""
    generator = torch.Generator().manual_seed(seed)
    changed = copy.deepcopy(module)
    for parameter in changed.parameters():
        parameter.add_(1e-2 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return changed


@pytest.mark.parametrize("storage, prefix, comfy_internal", [
    ("fp32", "", False), ("fp32", "model.diffusion_model.", False), ("bf16", "diffusion_model.", False),
    ("fp32", "model.", True),
])
def test_transformer_file_loads_to_the_model_it_was_written_from(random_folder, shared_family_model, tmp_path,
                                                                 storage, prefix, comfy_internal):
    """Tencent's names, bare or under ComfyUI's prefixes, or ComfyUI's internal names: bitwise the transformer
    the file was written from (a bf16 file: bitwise its bf16-rounded weights), not the folder's. The tiny model is 20 wide, so this also fails
    without the fix of diffusers' hard-coded width 3072."""
    reference = other_weights(shared_family_model(MODEL).pipe.transformer)
    path = tmp_path / "hunyuan_video_t2v.safetensors"
    files.write_transformer(reference, path, storage, prefix=prefix, comfy_internal=comfy_internal)
    model = load_pipeline(ModelSource(folder=random_folder(MODEL), transformer=path))
    try:
        loaded = model.pipe.transformer
        expected = reference if storage == "fp32" else with_weights(
            reference, files.dequantized(files.original_state_dict(reference), torch.bfloat16))
        for name, tensor in expected.state_dict().items():
            assert torch.equal(loaded.state_dict()[name].float(), tensor.float()), name
        assert torch.equal(forward(loaded, reference.config), forward(expected, reference.config))
    finally:
        model.release()


def test_the_width_fix_equals_diffusers_own_converter_at_the_released_width():
    """diffusers 0.42.1 splits `single_blocks.N.linear1` with a hard-coded width of 3072; at that width the
    pack's split gives exactly diffusers' result (the tensors are 3072 x 4 + MLP rows, one column each)."""
    from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers

    hidden = 3072
    tensors = {"single_blocks.0.linear1.weight": torch.randn(3 * hidden + 4 * hidden, 1),
               "single_blocks.0.linear1.bias": torch.randn(3 * hidden + 4 * hidden)}
    theirs = convert_hunyuan_video_transformer_to_diffusers(dict(tensors))
    linear1 = [m for m in module_maps("HunyuanVideo 1", {"guidance_embeds": False, "num_refiner_layers": 0,
                                                          "num_layers": 0, "num_single_layers": 1})
               if m.split == keys.LINEAR1]
    ours = keys.to_diffusers(dict(tensors), linear1, hidden)
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    with pytest.raises(RuntimeError, match="split_with_sizes"):  # why the fix exists: any other width fails
        convert_hunyuan_video_transformer_to_diffusers({k: v[: 3 * 20 + 80] for k, v in tensors.items()})


@pytest.mark.parametrize("storage", ["fp8_e4m3fn", "fp8_e5m2", "scaled_fp8"])
def test_fp8_files_stay_fp8_and_compute_exactly_the_files_values(random_folder, shared_family_model, tmp_path,
                                                                 storage):
    reference = shared_family_model(MODEL).pipe.transformer
    path = tmp_path / f"hunyuan_video_t2v_{storage}.safetensors"
    written = files.write_transformer(reference, path, storage)
    model = load_pipeline(ModelSource(folder=random_folder(MODEL), transformer=path))
    try:
        loaded = model.pipe.transformer
        fp8 = [n for n, p in loaded.named_parameters() if p.dtype in (torch.float8_e4m3fn, torch.float8_e5m2)]
        matrices = 2 if storage == "scaled_fp8" else 5  # ComfyUI scales Linear weights only; kijai's cast the conv too
        assert len(fp8) == sum(1 for n, p in reference.named_parameters()
                               if n.endswith(".weight") and 2 <= p.ndim <= matrices)
        assert loaded.dtype == torch.float32  # the compute dtype, as diffusers' layerwise casting reports it
        expected = with_weights(reference, files.dequantized(written, torch.float32))
        assert torch.equal(forward(loaded, reference.config), forward(expected, reference.config))
    finally:
        model.release()


@pytest.mark.parametrize("quant_type", ["Q8_0", "Q4_0"])
def test_gguf_transformer_equals_its_dequantized_weights(random_folder, shared_family_model, tmp_path, quant_type):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    reference = files.quantizable_transformer(shared_family_model(MODEL).pipe.transformer)
    path = tmp_path / f"hunyuan-video-t2v-{quant_type}.gguf"
    types = files.write_transformer_gguf(reference, path, quant_type)
    assert quant_type in types.values()
    model = load_pipeline(ModelSource(folder=random_folder(MODEL), transformer=path))
    try:
        loaded = model.pipe.transformer
        assert any(isinstance(p, GGUFParameter) and p.quant_type.name == quant_type for p in loaded.parameters())
        expected = with_weights(reference, files.gguf_dequantized(path, torch.float32))
        assert torch.equal(forward(loaded, reference.config), forward(expected, reference.config))
    finally:
        model.release()


# Whole pipelines -------------------------------------------------------------------------------------------------

def write_files(pipe, folder: Path, transformer="fp32", vae_naming="ldm", llama="fp32",
                clip_dtype=torch.float32) -> dict[str, Path]:
    """The pipeline's components as ComfyUI's single files, in `folder`."""
    paths = {"vae": folder / "hunyuan_video_vae.safetensors", "text_encoder": folder / "llava_llama3.safetensors",
             "text_encoder_2": folder / "clip_l.safetensors"}
    if transformer.startswith("gguf"):
        paths["transformer"] = folder / "hunyuan-video-t2v.gguf"
        files.write_transformer_gguf(pipe.transformer, paths["transformer"], transformer.split(":")[1])
    else:
        paths["transformer"] = folder / "hunyuan_video_t2v.safetensors"
        files.write_transformer(pipe.transformer, paths["transformer"], transformer, prefix="model.diffusion_model.")
    files.write_vae(pipe.vae, paths["vae"], vae_naming, dtype=torch.float32)
    files.write_language_model(pipe.text_encoder, paths["text_encoder"], llama)
    files.write_clip(pipe.text_encoder_2, paths["text_encoder_2"], clip_dtype)
    return paths


def configs_only(folder: Path, into: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of the model folder without any weights (but those of the components in `keep`): configs,
    tokenizers and scheduler only."""
    shutil.copytree(folder, into, ignore=shutil.ignore_patterns("*.safetensors"))
    for component in keep:
        shutil.copytree(folder / component, into / component, dirs_exist_ok=True)
    return into


def test_every_weight_from_single_files_generates_exactly_the_folders_video(random_folder, shared_family_model,
                                                                             tmp_path):
    """fp32 files of every component (the VAE in ComfyUI's LDM names), with a folder that holds no weights at
    all: the same latents and frames as the diffusers folder, bitwise."""
    folder = random_folder(MODEL)
    paths = write_files(shared_family_model(MODEL).pipe, tmp_path)
    model = load_pipeline(ModelSource(folder=configs_only(folder, tmp_path / "configs"), **paths))
    try:
        latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
        expected = generate(shared_family_model(MODEL), PROMPTS, TINY_SETTINGS)
        assert torch.equal(latents, expected[0]) and torch.equal(frames, expected[1])
    finally:
        model.release()


def assert_every_preset_is_exact(model, offload_folder: Path, fp8_components=(), prompts=PROMPTS, negative=None,
                                 images=None):
    """Every preset gives bitwise the output without offloading, every component's offloaded weights are onloaded
    when used (poisoned otherwise), and the files' fp8 stays fp8 while offloaded (the casting is applied before
    offloading)."""
    expected = generate(model, prompts, TINY_SETTINGS, negative, images)
    for name in ("balanced", "lowest_vram", "disk"):
        model.configure_offload(preset_plan(name, "cpu", disk_folder=str(offload_folder)))
        with poison_offloaded(model.modules) as poisoned, count_onloads(model.modules) as onloads:
            latents, frames = generate(model, prompts, TINY_SETTINGS, negative, images)
        assert not poisoned, (name, sorted(set(poisoned))[:5])
        assert all(onloads[c] > 0 for c in model.spec.module_names), (name, onloads)
        assert torch.equal(latents, expected[0]) and torch.equal(frames, expected[1]), name
        for component in fp8_components:
            assert torch.float8_e4m3fn in {p.dtype for p in model.modules[component].parameters()}, name


def test_fp8_files_compose_with_every_offload_preset(random_folder, shared_family_model, tmp_path):
    """Every component from a file: an fp8 transformer, a scaled-fp8 Llama, CLIP-L and the VAE in LDM names."""
    paths = write_files(shared_family_model(MODEL).pipe, tmp_path, transformer="fp8_e4m3fn", llama="scaled_fp8")
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(MODEL), tmp_path / "configs"), **paths))
    try:
        assert_every_preset_is_exact(model, tmp_path / "offload", ("transformer", "text_encoder"))
    finally:
        model.release()


@pytest.mark.parametrize("mode", [OffloadMode.BLOCK_LEVEL, OffloadMode.LEAF_LEVEL])
def test_gguf_transformer_composes_with_disk_offloading(random_folder, shared_family_model, tmp_path, mode):
    """Block-level disk offloading saves whole blocks, which fails on the views the fused layers' split leaves
    (they share memory); the loader gives each weight its own storage."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    reference = files.quantizable_transformer(shared_family_model(MODEL).pipe.transformer)
    path = tmp_path / "hunyuan-video-t2v-Q8_0.gguf"
    files.write_transformer_gguf(reference, path, "Q8_0")
    model = load_pipeline(ModelSource(folder=random_folder(MODEL), transformer=path))
    try:
        transformer = model.modules["transformer"]
        expected = forward(transformer, reference.config)
        model.configure_offload(OffloadPlan.uniform(OffloadConfig(mode=mode, disk_folder=str(tmp_path / "offload"))))
        with poison_offloaded({"transformer": transformer}) as poisoned, \
                count_onloads({"transformer": transformer}) as onloads:
            assert torch.equal(forward(transformer, reference.config), expected)
        assert not poisoned and onloads["transformer"] > 0
        assert any(isinstance(p, GGUFParameter) for p in transformer.parameters())
    finally:
        model.release()


def test_scaled_fp8_llama_computes_with_its_scaled_weights(random_folder, shared_family_model, tmp_path):
    llama = shared_family_model(MODEL).pipe.text_encoder
    path = tmp_path / "llava_llama3_fp8_scaled.safetensors"
    written = files.write_language_model(llama, path, "scaled_fp8")
    model = load_pipeline(ModelSource(folder=random_folder(MODEL), text_encoder=path))
    try:
        expected = copy.deepcopy(llama)
        expected.load_state_dict(files.dequantized(written, torch.float32), strict=True)
        ids = torch.tensor([[1, 5, 9, 3, 7]])
        with torch.no_grad():
            out = model.pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-3]
            assert torch.equal(out, expected(ids, output_hidden_states=True).hidden_states[-3])
    finally:
        model.release()


def test_every_families_weights_can_come_from_files():
    """Every torch component of every family has a reader (Llava's is two files), so no family needs its
    diffusers folder's weights."""
    from hunyuan_core.families import FAMILIES
    from hunyuan_core.loading.single_file.pipeline import LLAVA, planner

    readers = {"transformer": "_plan_transformer", "vae": "_plan_vae", "text_encoder": "_plan_encoder",
               "image_encoder": "_plan_encoder"}
    for family in FAMILIES.values():
        for name in family.spec.module_names:
            component = family.spec.component(name)
            if component.loaded_class != LLAVA:  # KeyError: no reader for the class
                read = planner(component)
                assert getattr(read, "func", read).__name__ == readers[component.role.value], (family.name, name)


# Wrong files -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def written(shared_family_model, tmp_path_factory):
    """The tiny model's components as single files, written once for the error tests."""
    return write_files(shared_family_model(MODEL).pipe, tmp_path_factory.mktemp("files"), transformer="bf16",
                       llama="fp16", clip_dtype=torch.float16)


def refused(source: ModelSource, message: str):
    with pytest.raises(UserInputError, match=message):
        load_pipeline(source)


def test_a_file_of_another_model_is_refused(random_folder, written):
    folder = random_folder(MODEL)
    refused(ModelSource(folder=folder, transformer=written["vae"]),
            r"hunyuan_video_vae.safetensors is not a HunyuanVideo transformer: it has none of its layers .*"
            r"Pick a HunyuanVideo file from models/diffusion_models")
    refused(ModelSource(folder=folder, vae=written["transformer"]), r"is not a HunyuanVideo VAE .* from models/vae")
    refused(ModelSource(folder=folder, text_encoder=written["text_encoder_2"]),
            r"clip_l.safetensors is not a Llama text encoder .* Use llava_llama3_fp16.safetensors")
    refused(ModelSource(folder=folder, text_encoder_2=written["text_encoder"]), r"is not a CLIP-L text encoder")


def test_incomplete_pickled_and_foreign_gguf_files_are_refused(random_folder, written, tmp_path):
    import gguf

    folder = random_folder(MODEL)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(written["transformer"].read_bytes()[:-100])
    refused(ModelSource(folder=folder, transformer=truncated), r"It is incomplete or corrupted; download it again")
    pickled = tmp_path / "hunyuan_video.pt"
    pickled.write_bytes(b"not read")
    refused(ModelSource(folder=folder, transformer=pickled), r"is a pickled checkpoint; .* Use the .safetensors")
    flux = tmp_path / "flux1-dev-Q8_0.gguf"
    writer = gguf.GGUFWriter(path=None, arch="flux")
    writer.add_tensor("double_blocks.0.img_attn.proj.weight", torch.zeros(4, 32).numpy())
    writer.write_header_to_file(path=str(flux))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    refused(ModelSource(folder=folder, transformer=flux),
            r"flux1-dev-Q8_0.gguf is a GGUF of a flux model, not a HunyuanVideo transformer")


def test_fp8_storage_on_a_file_already_stored_small_is_refused(random_folder, shared_family_model, tmp_path):
    from hunyuan_core.speed.settings import SpeedSettings

    path = tmp_path / "hunyuan_video_t2v_fp8_e4m3fn.safetensors"
    files.write_transformer(shared_family_model(MODEL).pipe.transformer, path, "fp8_e4m3fn")
    with pytest.raises(UserInputError, match=r"hunyuan_video_t2v_fp8_e4m3fn.safetensors is already stored as fp8; "
                                             r"turn fp8 storage off for the transformer in the speed settings"):
        load_pipeline(ModelSource(folder=random_folder(MODEL), transformer=path),
                      speed=SpeedSettings(fp8=("transformer",)))


def test_scaled_fp8_that_cannot_be_applied_exactly_is_refused(random_folder, shared_family_model, tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "hunyuan_video_t2v_fp8_scaled.safetensors"
    files.write_transformer(shared_family_model(MODEL).pipe.transformer, path, "scaled_fp8")
    tensors = load_file(path)
    key = "double_blocks.0.img_attn_qkv.scale_weight"
    tensors[key] = tensors[key].repeat(60)  # a scale per output channel
    save_file(tensors, path)
    refused(ModelSource(folder=random_folder(MODEL), transformer=path),
            r"double_blocks.0.img_attn_qkv has a scale of shape \(60,\) \(per channel or per block\); only "
            r"per-tensor scaled fp8 can be applied exactly. Use the bf16/fp16 file or a GGUF instead.")


def test_text_encoders_of_another_model_and_missing_tokenizers_are_refused(random_folder, shared_family_model,
                                                                           written, tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = random_folder(MODEL)
    clip = shared_family_model(MODEL).pipe.text_encoder_2
    wider = CLIPTextModel(CLIPTextConfig(**{**clip.config.to_dict(), "hidden_size": 16}))
    path = tmp_path / "clip_g.safetensors"
    files.write_clip(wider, path)
    refused(ModelSource(folder=folder, text_encoder_2=path),
            r"The text_encoder_2 is 16 wide but the transformer takes 8: they belong to different models")
    refused(ModelSource(**written), r"Without a model folder .* missing: tokenizer, tokenizer_2")
    tokenizers = {name: folder / name for name in ("tokenizer", "tokenizer_2")}
    refused(ModelSource(**written, **tokenizers),  # without a folder: the released models' configs
            r"hunyuan_video_t2v.safetensors has attention heads of 10 dims, but the rope axes \[16, 56, 56\] of the "
            r"released HunyuanVideo 1 text-to-video sum to 128. It is not the released model: give a model folder")


# Command line ----------------------------------------------------------------------------------------------------

def frames_of(path: Path) -> list[bytes]:
    from PIL import Image, ImageSequence

    with Image.open(path) as video:
        return [frame.convert("RGB").tobytes() for frame in ImageSequence.Iterator(video)]


def test_cli_takes_single_files_for_every_component(shared_family_model, tmp_path, capsys):
    """`--model tiny` is the same random model the files are written from: with every weight from files the
    video is the same, and each component's offload hooks fire."""
    from hunyuan_core.cli import main

    paths = write_files(shared_family_model(MODEL).pipe, tmp_path)
    common = ["generate", "--model", "tiny", "--prompt", "a cat", "--offload", "leaf_level"]
    assert main([*common, "--out", str(tmp_path / "folder.webp")]) == 0
    arguments = [*common, "--transformer", str(paths["transformer"]), "--vae", str(paths["vae"]),
                 "--text-encoder", str(paths["text_encoder"]), "--clip", str(paths["text_encoder_2"])]
    capsys.readouterr()
    assert main([*arguments, "--out", str(tmp_path / "files.webp")]) == 0
    printed = capsys.readouterr().out
    assert "model: transformer: hunyuan_video_t2v.safetensors, vae: hunyuan_video_vae.safetensors" in printed
    checks = [line for line in printed.splitlines() if line.startswith("offload check: ")]
    assert len(checks) == 4 and all(line.endswith(" ok") for line in checks), checks
    assert frames_of(tmp_path / "files.webp") == frames_of(tmp_path / "folder.webp")
    assert main([*common, "--transformer", str(paths["vae"]), "--out", str(tmp_path / "x.webp")]) == 2
    assert "hunyuan_video_vae.safetensors is not a HunyuanVideo transformer" in capsys.readouterr().err


@pytest.mark.parametrize("fused_qkv, comfy_internal", [(True, False), (False, False), (True, True)])
def test_hunyuan_video15_transformer_file_loads_with_its_folder(random_folder, shared_family_model, tmp_path,
                                                                fused_qkv, comfy_internal):
    """HunyuanVideo 1.5 (which diffusers cannot load from one file): q, k and v fused as ComfyUI keeps them, or
    apart as Tencent's checkpoints do, or in ComfyUI's internal names; the rest from the 1.5 folder."""
    name = "hunyuan-video-1.5"
    reference = other_weights(shared_family_model(name).pipe.transformer)
    path = tmp_path / "hunyuanvideo1.5_480p_t2v.safetensors"
    files.write_transformer(reference, path, "fp32", prefix="model.diffusion_model.", fused_qkv=fused_qkv,
                            comfy_internal=comfy_internal)
    model = load_pipeline(ModelSource(folder=random_folder(name), transformer=path))
    try:
        loaded = model.pipe.transformer.state_dict()
        assert loaded.keys() == reference.state_dict().keys()
        assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    finally:
        model.release()
    refused(ModelSource(folder=random_folder(MODEL), transformer=path),
            r"is a HunyuanVideo 1.5 transformer with 65 input channels, but the model folder .* is a HunyuanVideo 1 "
            r"text-to-video model \(16 input channels\)")


def test_fp8_casting_survives_a_failing_forward():
    """A forward that fails (out of memory, a cancel) must leave the scaled-fp8 weight as stored: the model
    stays loaded, and a weight left upcast would be scaled a second time by the next run."""
    from hunyuan_core.loading.single_file.fp8 import apply_file_dtype_casting

    class FailingLinear(torch.nn.Linear):
        fail = False

        def forward(self, x):
            output = super().forward(x)
            if self.fail:
                raise RuntimeError("out of memory")
            return output

    layer = FailingLinear(4, 4)
    layer.weight.data = layer.weight.data.to(torch.float8_e4m3fn)
    stored = layer.weight.data.clone()
    apply_file_dtype_casting(layer, {"weight"}, {"": torch.tensor(0.5)}, torch.float32)
    x = torch.randn(2, 4)
    expected = layer(x)
    layer.fail = True
    with pytest.raises(RuntimeError, match="out of memory"):
        layer(x)
    layer.fail = False
    assert layer.weight.dtype == torch.float8_e4m3fn and torch.equal(layer.weight.data.float(), stored.float())
    assert torch.equal(layer(x), expected)


# HunyuanVideo 1.5 ---------------------------------------------------------------------------------------------

V15 = "hunyuan-video-1.5"
PROMPTS15 = ["a cat walks", 'a dog holds a sign "HELLO"']  # quoted text reaches ByT5


def write_files15(pipe, folder: Path, transformer="fp32", qwen="fp32") -> dict[str, Path]:
    """A 1.5 pipeline's components as ComfyUI's single files: the transformer with q, k, v fused, the VAE in
    Tencent's names, Qwen2.5-VL beside a vision tower, ByT5 with its embedding once."""
    paths = {"transformer": folder / "hunyuanvideo1.5_480p_t2v.safetensors",
             "vae": folder / "hunyuanvideo15_vae.safetensors", "text_encoder": folder / "qwen_2.5_vl_7b.safetensors",
             "text_encoder_2": folder / "byt5_small_glyphxl.safetensors"}
    files.write_transformer(pipe.transformer, paths["transformer"], transformer, prefix="model.diffusion_model.")
    files.write_vae(pipe.vae, paths["vae"], "ldm", dtype=torch.float32)
    files.write_language_model(pipe.text_encoder, paths["text_encoder"], qwen)
    files.write_byt5(pipe.text_encoder_2, paths["text_encoder_2"], torch.float32)
    return paths


@pytest.mark.parametrize("name", [V15, "hunyuan-video-1.5-i2v"])
def test_hunyuan_video15_components_load_from_files_to_the_folders_weights(random_folder, shared_family_model,
                                                                         tmp_path, name):
    """Transformer, VAE (Tencent's names), Qwen2.5-VL (its vision tower left out), ByT5 (the embedding tied as
    T5 has it) and for image-to-video SigLIP (without its unused head) from files, with a folder holding no
    weights: every weight equals the folder's, and the prompts and start image encode bitwise the same."""
    reference = shared_family_model(name)
    paths = write_files15(reference.pipe, tmp_path)
    images = None
    if "i2v" in name:
        paths["image_encoder"] = tmp_path / "sigclip_vision_patch14_384.safetensors"
        files.write_siglip(reference.pipe.image_encoder, paths["image_encoder"], torch.float32)
        images = torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(0))
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(name), tmp_path / "configs"), **paths))
    try:
        for component in paths:
            loaded, expected = model.modules[component].state_dict(), getattr(reference.pipe, component).state_dict()
            assert loaded.keys() == {k for k in expected if not k.startswith("head.")}, component
            assert all(torch.equal(v, expected[k]) for k, v in loaded.items()), component
        byt5 = model.modules["text_encoder_2"]
        assert byt5.encoder.embed_tokens.weight is byt5.shared.weight
        prompts = PROMPTS15[1:]
        got = encode_prompts(model, prompts, negative_prompts="blurry", images=images)
        want = encode_prompts(reference, prompts, negative_prompts="blurry", images=images)
        for rows in ("positive", "negative"):
            expected_rows = getattr(want, rows).tensors
            assert getattr(got, rows).tensors.keys() == expected_rows.keys()
            assert all(torch.equal(getattr(got, rows)[key], value) for key, value in expected_rows.items()), rows
    finally:
        model.release()


def test_hunyuan_video15_from_files_generates_exactly_the_folders_video(random_folder, shared_family_model, tmp_path):
    paths = write_files15(shared_family_model(V15).pipe, tmp_path)
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(V15), tmp_path / "configs"), **paths))
    try:
        latents, frames = generate(model, PROMPTS15, TINY_SETTINGS, "blurry")
        expected = generate(shared_family_model(V15), PROMPTS15, TINY_SETTINGS, "blurry")
        assert torch.equal(latents, expected[0]) and torch.equal(frames, expected[1])
    finally:
        model.release()


def test_hunyuan_video15_fp8_files_compose_with_every_offload_preset(random_folder, shared_family_model, tmp_path):
    """Image-to-video with every weight from a file: an fp8 transformer, a scaled-fp8 Qwen2.5-VL
    (qwen_2.5_vl_7b_fp8_scaled), ByT5, SigLIP and the VAE."""
    name = "hunyuan-video-1.5-i2v"
    pipe = shared_family_model(name).pipe
    paths = write_files15(pipe, tmp_path, transformer="fp8_e4m3fn", qwen="scaled_fp8")
    paths["image_encoder"] = tmp_path / "sigclip_vision_patch14_384.safetensors"
    files.write_siglip(pipe.image_encoder, paths["image_encoder"])
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(name), tmp_path / "configs"), **paths))
    try:
        assert model.modules["text_encoder"].layers[0].self_attn.q_proj.weight.dtype == torch.float8_e4m3fn
        images = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(0))
        assert_every_preset_is_exact(model, tmp_path / "offload", ("transformer", "text_encoder"), PROMPTS15,
                                     "blurry", images)
    finally:
        model.release()


def test_hunyuan_video15_gguf_transformer_equals_its_dequantized_weights(random_folder, shared_family_model,
                                                                        tmp_path):
    """A 1.5 GGUF (city96's tools name it `hyvid` too) goes through diffusers' GGUF loading like a v1 one, with
    the pack's 1.5 conversion and the same offload proof."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    reference = files.quantizable_transformer(shared_family_model(V15).pipe.transformer)
    path = tmp_path / "hunyuanvideo1.5_480p_t2v-Q8_0.gguf"
    types = files.write_transformer_gguf(reference, path, "Q8_0")
    assert "Q8_0" in types.values()
    model = load_pipeline(ModelSource(folder=random_folder(V15), transformer=path))
    try:
        loaded = model.modules["transformer"]
        assert any(isinstance(p, GGUFParameter) and p.quant_type.name == "Q8_0" for p in loaded.parameters())
        expected = copy.deepcopy(reference)
        config = dict(reference.config)
        expected.load_state_dict(keys.to_diffusers(files.gguf_dequantized(path, torch.float32),
                                                   module_maps("HunyuanVideo 1.5", config),
                                                   config["num_attention_heads"] * config["attention_head_dim"]))
        inputs = dict(hidden_states=torch.randn(1, config["in_channels"], 2, 4, 4), timestep=torch.tensor([500.0]),
                      encoder_hidden_states=torch.randn(1, 5, config["text_embed_dim"]),
                      encoder_attention_mask=torch.ones(1, 5),
                      image_embeds=torch.zeros(1, 4, config["image_embed_dim"]),
                      encoder_hidden_states_2=torch.randn(1, 3, config["text_embed_2_dim"]),
                      encoder_attention_mask_2=torch.ones(1, 3))
        with torch.no_grad():
            assert torch.equal(loaded(**inputs).sample, expected(**inputs).sample)
        model.configure_offload(preset_plan("lowest_vram", "cpu"))
        with poison_offloaded(model.modules) as poisoned, count_onloads(model.modules) as onloads, torch.no_grad():
            assert torch.equal(loaded(**inputs).sample, expected(**inputs).sample)
        assert not poisoned and onloads["transformer"] > 0
    finally:
        model.release()


def test_vae_and_text_encoders_of_the_other_generation_are_refused(random_folder, shared_family_model, written,
                                                                  tmp_path):
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    v15 = write_files15(shared_family_model(V15).pipe, tmp_path)
    folder15, folder1 = random_folder(V15), random_folder(MODEL)
    refused(ModelSource(folder=folder15, vae=written["vae"]),
            r"hunyuan_video_vae.safetensors is a HunyuanVideo VAE, but this model needs the HunyuanVideo 1.5 VAE: "
            r"use hunyuanvideo15_vae_fp16.safetensors from models/vae")
    refused(ModelSource(folder=folder1, vae=v15["vae"]),
            r"hunyuanvideo15_vae.safetensors is a HunyuanVideo 1.5 VAE, but this model needs the HunyuanVideo VAE")
    refused(ModelSource(folder=folder15, text_encoder=written["text_encoder"]),
            r"llava_llama3.safetensors is not a Qwen2.5-VL text encoder .* Use qwen_2.5_vl_7b.safetensors")
    refused(ModelSource(folder=folder15, text_encoder_2=written["text_encoder_2"]),
            r"clip_l.safetensors is not a ByT5 text encoder .* Use byt5_small_glyphxl_fp16.safetensors")
    refused(ModelSource(folder=folder1, text_encoder_2=v15["text_encoder_2"]), r"is not a CLIP-L text encoder")
    siglip = tmp_path / "sigclip_vision_patch14_384.safetensors"
    files.write_siglip(shared_family_model("hunyuan-video-1.5-i2v").pipe.image_encoder, siglip)
    refused(ModelSource(folder=folder15, image_encoder=siglip),
            r"A HunyuanVideo 1.5 text-to-video model has no image_encoder: leave that file out")
    refused(ModelSource(folder=random_folder("hunyuan-video-1.5-i2v"), image_encoder=written["text_encoder_2"]),
            r"clip_l.safetensors is not a SigLIP image encoder .* Use sigclip_vision_patch14_384.safetensors from "
            r"models/clip_vision")
    refused(ModelSource(**v15, tokenizer=folder15 / "tokenizer", tokenizer_2=folder15 / "tokenizer_2"),
            r"hunyuanvideo1.5_480p_t2v.safetensors is a HunyuanVideo 1.5 transformer: its files load with a "
            r"HunyuanVideo 1.5 model folder, which gives the configs, tokenizers and scheduler")
    pipe = shared_family_model(V15).pipe
    qwen, byt5 = pipe.text_encoder.config, pipe.text_encoder_2.config
    wider = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(**{**qwen.to_dict(), "hidden_size": 2 * qwen.hidden_size,
                                                        "num_attention_heads": 2 * qwen.num_attention_heads}))
    files.write_language_model(wider, tmp_path / "qwen_wide.safetensors", "fp32")
    refused(ModelSource(folder=folder15, text_encoder=tmp_path / "qwen_wide.safetensors"),
            rf"This Qwen2.5-VL text encoder \({2 * qwen.hidden_size} wide\) does not fit the attention heads of the "
            r"model folder .*: it is not the released model")
    files.write_byt5(T5EncoderModel(T5Config(**{**byt5.to_dict(), "d_model": 2 * byt5.d_model})),
                     tmp_path / "byt5_wide.safetensors")
    refused(ModelSource(folder=folder15, text_encoder_2=tmp_path / "byt5_wide.safetensors"),
            rf"The text_encoder_2 is {2 * byt5.d_model} wide but the transformer takes {byt5.d_model}: they belong "
            r"to different models")


# HunyuanVideo 1 image-to-video: Llava from ComfyUI's two files ----------------------------------------------------

I2V = "hunyuan-video-i2v"


def write_files_i2v(model, folder: Path, llama="fp32") -> dict[str, Path]:
    """HunyuanVideo 1 image-to-video as ComfyUI's files: the text-to-video files plus Llava's vision tower."""
    pipe = model.pipe
    paths = {"transformer": folder / "hunyuan_video_i2v_720p.safetensors",
             "vae": folder / "hunyuan_video_vae.safetensors", "text_encoder": folder / "llava_llama3.safetensors",
             "text_encoder_2": folder / "clip_l.safetensors",
             "image_encoder": folder / "llava_llama3_vision.safetensors"}
    files.write_transformer(pipe.transformer, paths["transformer"], "fp32", prefix="model.diffusion_model.")
    files.write_vae(pipe.vae, paths["vae"], "ldm", dtype=torch.float32)
    files.write_language_model(pipe.text_encoder.language_model, paths["text_encoder"], llama)
    files.write_clip(pipe.text_encoder_2, paths["text_encoder_2"], torch.float32)
    files.write_llava_vision(pipe.text_encoder, paths["image_encoder"], torch.float32)
    return paths


def test_hunyuan_video_i2v_loads_llava_from_comfyuis_two_files(random_folder, shared_family_model, tmp_path):
    """The language model (llava_llama3_*) and the vision tower with its projector (clip_vision/
    llava_llama3_vision) make the Llava text encoder; with every other weight from files too, the folder's configs
    only: every weight equals the folder's, and a prompt with a start image encodes bitwise the same."""
    reference = shared_family_model(I2V)
    paths = write_files_i2v(reference, tmp_path)
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(I2V), tmp_path / "configs"), **paths))
    try:
        for component in ("transformer", "vae", "text_encoder", "text_encoder_2"):
            loaded, expected = model.modules[component].state_dict(), getattr(reference.pipe, component).state_dict()
            assert loaded.keys() == expected.keys(), component
            assert all(torch.equal(v, expected[k]) for k, v in loaded.items()), component
        images = torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(0))
        got = encode_prompts(model, ["a cat walks"], images=images).positive
        want = encode_prompts(reference, ["a cat walks"], images=images).positive
        assert got.tensors.keys() == want.tensors.keys()
        assert all(torch.equal(got[key], value) for key, value in want.tensors.items())
    finally:
        model.release()


def test_hunyuan_video_i2v_files_compose_with_every_offload_preset(random_folder, shared_family_model, tmp_path):
    """The scaled-fp8 Llama inside Llava stays fp8 under every preset."""
    paths = write_files_i2v(shared_family_model(I2V), tmp_path, llama="scaled_fp8")
    model = load_pipeline(ModelSource(folder=configs_only(random_folder(I2V), tmp_path / "configs"), **paths))
    try:
        images = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(0))
        assert_every_preset_is_exact(model, tmp_path / "offload", ("text_encoder",), images=images)
    finally:
        model.release()


def test_llava_needs_both_of_its_files_and_they_must_match(random_folder, shared_family_model, tmp_path):
    from safetensors.torch import load_file, save_file

    paths = write_files_i2v(shared_family_model(I2V), tmp_path)
    folder = random_folder(I2V)
    message = r"HunyuanVideo 1 image-to-video's text encoder is Llava, which ComfyUI keeps in two files: give both"
    refused(ModelSource(folder=folder, text_encoder=paths["text_encoder"]), message)
    refused(ModelSource(folder=folder, image_encoder=paths["image_encoder"]), message)
    refused(ModelSource(folder=folder, text_encoder=paths["text_encoder"], image_encoder=paths["text_encoder_2"]),
            r"clip_l.safetensors is not a Llava vision tower .* Use llava_llama3_vision.safetensors from "
            r"models/clip_vision")
    tensors = load_file(paths["image_encoder"])
    tensors["multi_modal_projector.linear_1.weight"] = tensors["multi_modal_projector.linear_1.weight"][:3]
    save_file(tensors, tmp_path / "other_vision.safetensors")
    refused(ModelSource(folder=folder, text_encoder=paths["text_encoder"],
                        image_encoder=tmp_path / "other_vision.safetensors"),
            r"The Llava vision file projects \d+ to 3 wide, but the language model is \d+ wide")
