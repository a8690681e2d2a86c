"""Shared fixtures: a tiny random HunyuanVideo saved in diffusers format, built once per test session."""

from __future__ import annotations

import json
import shutil

import comfy_stubs
import pytest
from helpers import generate

from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import SamplingSettings
from hunyuan_core.testing.random_models import save_random_model

TINY_SETTINGS = SamplingSettings(width=16, height=16, frames=9, steps=2, seed=7)
PROMPTS = ["a cat walks", "a red dog runs across the snowy field at night"]
MODEL_NAME = "HunyuanVideo-tiny"
FAMILY_FOLDERS = {"HunyuanVideo-I2V-tiny": "hunyuan-video-i2v", "HunyuanVideo-1.5-tiny": "hunyuan-video-1.5",
                  "HunyuanVideo-1.5-I2V-tiny": "hunyuan-video-1.5-i2v"}
"""The other families' folders in the ComfyUI models folder, by folder name."""


@pytest.fixture(scope="session", autouse=True)
def cpu_by_default():
    """Tests that name no device run on the CPU (float32, bitwise references) even on a machine with an
    accelerator; the GPU tests name theirs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hunyuan_core.devices.get_device", lambda: "cpu")
        yield


@pytest.fixture(scope="session")
def random_folder(tmp_path_factory):
    """`random_folder(name)`: the tiny random model `name` (see RANDOM_MODELS) saved once per session."""
    root = tmp_path_factory.mktemp("families")
    folders = {}

    def folder(name):
        if name not in folders:
            folders[name] = save_random_model(root / name, name)
        return folders[name]

    return folder


@pytest.fixture(scope="session")
def shared_family_model(random_folder):
    """`shared_family_model(name)`: a loaded tiny model of that family, for tests that only read from it."""
    models = {}

    def model(name):
        if name not in models:
            models[name] = load_pipeline(random_folder(name))
        return models[name]

    yield model
    for loaded in models.values():
        loaded.release()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("models") / "HunyuanVideo-tiny")


@pytest.fixture
def model(tiny_model_dir):
    """A freshly loaded tiny model (function scope: tests may reconfigure or release it)."""
    loaded = load_pipeline(tiny_model_dir)
    yield loaded
    loaded.release()


@pytest.fixture(scope="session")
def shared_model(tiny_model_dir):
    """A tiny model for tests that only read from it."""
    return load_pipeline(tiny_model_dir)


@pytest.fixture(scope="session")
def conditioning(shared_model):
    return encode_prompts(shared_model, PROMPTS, negative_prompts="blurry")



@pytest.fixture(scope="session")
def reference(tiny_model_dir):
    """Latents and frames of PROMPTS at TINY_SETTINGS without any offloading."""
    model = load_pipeline(tiny_model_dir)
    try:
        return generate(model, PROMPTS, TINY_SETTINGS)
    finally:
        model.release()


@pytest.fixture(scope="session")
def models_root(tiny_model_dir, random_folder, tmp_path_factory):
    """A ComfyUI models/diffusers folder: a tiny model of every family and a folder of another model family."""
    root = tmp_path_factory.mktemp("comfy_models")
    shutil.copytree(tiny_model_dir, root / MODEL_NAME)
    for folder, name in FAMILY_FOLDERS.items():
        shutil.copytree(random_folder(name), root / folder)
    other = root / "sd15"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return root


@pytest.fixture(scope="session")
def loras_root(tmp_path_factory):
    """ComfyUI's models/loras folder (empty: tests put their LoRA files there)."""
    return tmp_path_factory.mktemp("loras")


@pytest.fixture(scope="session")
def pack(models_root, loras_root):
    """The node pack imported as ComfyUI imports it, with stand-ins for ComfyUI's modules."""
    comfy_stubs.install([str(models_root)], [str(loras_root)])
    pack = comfy_stubs.load_pack()
    yield pack
    pack.nodes.comfy_bridge.PIPELINES.release()
    comfy_stubs.uninstall()
