"""Loading: each component explicitly, with its dtype, safetensors only, and clear errors for bad folders."""

from __future__ import annotations

import json
import shutil
import weakref

import pytest
import torch
from conftest import PROMPTS, TINY_SETTINGS
from helpers import generate

from hunyuan_core.errors import UserInputError
from hunyuan_core.loading.loader import load_pipeline, parse_dtype
from hunyuan_core.offload.presets import preset_plan
from hunyuan_core.testing.hunyuan_video import PROMPT_TEMPLATE
from hunyuan_core.testing.random_models import build_random_model


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_components_and_defaults_on_cpu(shared_model):
    pipe = shared_model.pipe
    assert type(pipe).__name__ == "HunyuanVideoPipeline"
    assert type(pipe.text_encoder).__name__ == "LlamaModel"
    assert type(pipe.text_encoder_2).__name__ == "CLIPTextModel"
    assert set(shared_model.dtypes.values()) == {torch.float32}
    assert shared_model.prompt_template == PROMPT_TEMPLATE
    assert pipe.tokenizer.padding_side == "right"
    assert not any(p.requires_grad for m in shared_model.modules.values() for p in m.parameters())


def test_weights_round_trip_through_the_folder(shared_model):
    built, _ = build_random_model()
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        expected = getattr(built, name).state_dict()
        loaded = getattr(shared_model.pipe, name).state_dict()
        assert all(torch.equal(expected[key], loaded[key]) for key in expected), name


def test_tokenizers_tokenise_the_same_after_reloading(shared_model):
    built, _ = build_random_model()
    text = "A cat, walking; 12 steps!"
    assert built.tokenizer(text).input_ids == shared_model.pipe.tokenizer(text).input_ids
    assert built.tokenizer_2(text).input_ids == shared_model.pipe.tokenizer_2(text).input_ids
    assert len(set(shared_model.pipe.tokenizer("ab ba").input_ids)) == 3  # spaces survive


def test_requested_dtypes_per_component(tiny_model_dir):
    model = load_pipeline(tiny_model_dir, dtypes={"transformer": torch.bfloat16, "text_encoder": torch.float16})
    try:
        assert model.modules["transformer"].dtype == torch.bfloat16
        assert model.modules["text_encoder"].dtype == torch.float16
        assert model.modules["vae"].dtype == torch.float32
    finally:
        model.release()


COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")


@pytest.mark.parametrize("preset", ["none", "lowest_vram", "disk"])
def test_release_drops_the_pipeline_and_frees_its_weights(tiny_model_dir, tmp_path, preset):
    model = load_pipeline(tiny_model_dir, offload=preset_plan(preset, "cpu", disk_folder=str(tmp_path)))
    generate(model, PROMPTS[:1], TINY_SETTINGS)
    modules = [weakref.ref(module) for module in model.modules.values()]
    model.release()
    with pytest.raises(UserInputError, match="was released"):
        model.modules  # noqa: B018
    assert [ref() for ref in modules] == [None] * len(modules), "hooked modules are garbage, not kept alive"
    assert not any(tmp_path.iterdir()), "disk offload files are deleted"


def check_error(folder, message):
    with pytest.raises(UserInputError) as error:
        load_pipeline(folder)
    assert str(error.value) == message.format(folder=folder)


def test_missing_folder(tmp_path):
    check_error(
        tmp_path / "nope",
        "Model folder not found: {folder}. Put the diffusers-format HunyuanVideo folder (the one that contains "
        "model_index.json) under ComfyUI/models/diffusers/, or pass its path.",
    )


def test_folder_without_model_index(tmp_path):
    check_error(
        tmp_path,
        "{folder} has no model_index.json, so it is not a diffusers-format model folder. Use the diffusers "
        "version of HunyuanVideo (e.g. hunyuanvideo-community/HunyuanVideo), not the original checkpoint files.",
    )


def test_model_of_another_family(model_copy):
    index = json.loads((model_copy / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (model_copy / "model_index.json").write_text(json.dumps(index))
    check_error(
        model_copy,
        "{folder} holds a StableDiffusionPipeline model, but this loader runs HunyuanVideoPipeline "
        "(HunyuanVideo 1 text-to-video), HunyuanVideoImageToVideoPipeline (HunyuanVideo 1 image-to-video), "
        "HunyuanVideo15Pipeline (HunyuanVideo 1.5 text-to-video), HunyuanVideo15ImageToVideoPipeline "
        "(HunyuanVideo 1.5 image-to-video) folders. Pick a HunyuanVideo folder.",
    )


def test_unreadable_model_index(model_copy):
    (model_copy / "model_index.json").write_text("{not json")
    with pytest.raises(UserInputError, match=r"model_index.json could not be read as JSON .* Download the model again"):
        load_pipeline(model_copy)


def test_missing_component(model_copy):
    shutil.rmtree(model_copy / "vae")
    check_error(model_copy, "{folder} is incomplete: the vae component is missing. Download the whole model folder.")


def test_pickle_weights_are_refused(model_copy):
    for weights in (model_copy / "text_encoder").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    check_error(
        model_copy,
        "{folder}/text_encoder has no .safetensors weights. This pack loads safetensors only (never pickled .bin "
        "files, which can run code); download the safetensors version of the model.",
    )


def test_truncated_weights_are_explained(model_copy):
    weights = next((model_copy / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserInputError, match=r"Could not load transformer from .*download them again"):
        load_pipeline(model_copy)


def test_bad_prompt_template_file(model_copy):
    (model_copy / "prompt_template.json").write_text(json.dumps({"template": "no placeholder", "crop_start": 0}))
    with pytest.raises(UserInputError, match="must hold an object with a 'template' string containing"):
        load_pipeline(model_copy)


def test_folder_without_template_file_uses_the_real_default(model_copy):
    (model_copy / "prompt_template.json").unlink()
    model = load_pipeline(model_copy)
    try:
        assert model.prompt_template["crop_start"] == 95
        assert model.prompt_template["template"].startswith("<|start_header_id|>system")
    finally:
        model.release()


def test_parse_dtype():
    assert parse_dtype("bf16") is torch.bfloat16
    with pytest.raises(UserInputError, match="Unknown dtype 'int8'; use one of bf16, fp16, fp32."):
        parse_dtype("int8")
