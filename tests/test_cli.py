"""The CLI runs the whole path on the tiny model and explains bad input instead of crashing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from hunyuan_core.cli import main


def test_generate_with_the_tiny_model(tmp_path, capsys):
    out = tmp_path / "video.webp"
    code = main(["generate", "--model", "tiny", "--prompt", "a cat", "--prompt", "a dog", "--offload", "block_level",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for component in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        assert f"offload check: {component}: " in printed and "NEVER" not in printed
    for index in range(2):
        with Image.open(tmp_path / f"video_{index}.webp") as image:
            assert (image.n_frames, image.size) == (9, (64, 64))


@pytest.mark.parametrize("model", ["tiny-i2v", "tiny-i2v-33ch", "tiny-1.5", "tiny-1.5-i2v",
                                   "tiny-1.5-i2v-step-distilled"])
def test_every_family_generates_end_to_end(tmp_path, capsys, model):
    out = tmp_path / "video.webp"
    image = tmp_path / "start.png"
    Image.new("RGB", (80, 48), (200, 30, 30)).save(image)
    arguments = ["generate", "--model", model, "--prompt", 'a sign "HI"', "--offload", "leaf_level", "--out", str(out)]
    code = main(arguments + (["--image", str(image)] if "i2v" in model else []))
    printed = capsys.readouterr().out
    assert code == 0, printed
    checks = [line for line in printed.splitlines() if line.startswith("offload check: ")]
    assert len(checks) == (5 if model.startswith("tiny-1.5-i2v") else 4)
    assert all(line.endswith(" ok") for line in checks), checks
    with Image.open(out) as video:
        assert (video.n_frames, video.size) == (9, (64, 64))


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--frames", "10", "--out", str(tmp_path / "v.webp")]) == 2
    assert "error: Frames must be 4k+1" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "v.webp")]) == 2
    assert "error: Model folder not found" in capsys.readouterr().err


def test_module_entry_point_and_make_random_model(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hunyuan_core", "make-random-model", str(tmp_path / "tiny")],
                            capture_output=True, text=True, check=True)
    assert "wrote" in result.stdout
    assert (tmp_path / "tiny" / "model_index.json").is_file()


def test_speed_flags_and_the_run_report(tmp_path, capsys):
    out = tmp_path / "video.webp"
    code = main(["generate", "--model", "tiny", "--steps", "8", "--cache", "first_block:0.3", "--attention",
                 "_native_math", "--fp8", "--offload", "block_level", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = next(line for line in printed.splitlines() if line.startswith("run: "))
    assert "cache first_block:" in report and "skipped" in report and "_native_math" in report
    assert "(0 skipped)" not in report
    assert main(["generate", "--model", "tiny", "--attention", "sage", "--out", str(out)]) == 2
    assert "cannot take the text padding mask" in capsys.readouterr().err


def test_lora_flags(tmp_path, capsys):
    """--lora FILE[:STRENGTH], repeatable, reported per LoRA; a LoRA that does not fit the model exits 2 with
    the reason (strengths and formats are tested in test_lora.py)."""
    from hunyuan_core.testing.loras import random_lora
    from hunyuan_core.testing.random_models import build_random_model

    transformer = build_random_model("hunyuan-video")[0].transformer  # the shapes --model tiny has
    lora = random_lora(transformer).save(tmp_path / "style.safetensors", "kohya")
    other = random_lora(transformer, seed=1).save(tmp_path / "other.safetensors", "comfyui")
    base = ["generate", "--model", "tiny", "--frames", "1", "--steps", "1", "--offload", "block_level"]
    assert main([*base, "--lora", f"{lora}:0.8", "--lora", str(other), "--out", str(tmp_path / "v.webp")]) == 0
    printed = capsys.readouterr().out
    assert "LoRA style.safetensors (kohya / musubi-tuner (lora_unet_…), Tencent's original names): 14 layers, " \
           "strength 0.8" in printed
    assert "LoRA other.safetensors (ComfyUI (lora_down / lora_up), Tencent's original names): 14 layers, " \
           "strength 1" in printed
    assert "offload check: transformer: " in printed and "NEVER" not in printed
    misfit = random_lora(build_random_model("hunyuan-video-1.5")[0].transformer, original_names=False)
    misfit_path = misfit.save(tmp_path / "misfit.safetensors", "diffusers")
    assert main([*base, "--lora", str(misfit_path), "--out", str(tmp_path / "x.webp")]) == 2
    assert "error: The LoRA misfit.safetensors does not fit this HunyuanVideo 1 text-to-video model" in \
        capsys.readouterr().err
    assert main([*base, "--lora", f"{tmp_path / 'missing.safetensors'}:0.5", "--out", str(tmp_path / "x.webp")]) == 2
    assert "error: LoRA file not found" in capsys.readouterr().err
