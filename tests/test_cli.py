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
