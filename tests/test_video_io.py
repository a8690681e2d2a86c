"""Video files: animated WebP/GIF through Pillow, numbered names for batches, clear errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hunyuan_core.errors import UserInputError
from hunyuan_core.io.video_io import numbered_paths, save_video

FRAMES = torch.linspace(0, 1, 5 * 8 * 16 * 3).reshape(5, 8, 16, 3)


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_animated_files(tmp_path, suffix):
    path = save_video(FRAMES, tmp_path / f"clip{suffix}", fps=10)
    with Image.open(path) as image:
        assert (image.n_frames, image.size) == (5, (16, 8))
        image.load()
        assert image.info["duration"] == 100


def test_unknown_format(tmp_path):
    with pytest.raises(UserInputError) as error:
        save_video(FRAMES, tmp_path / "clip.avi")
    assert str(error.value) == "Cannot write clip.avi: use one of .webp, .gif, .mp4."


def test_numbered_paths(tmp_path):
    assert numbered_paths(tmp_path / "v.webp", 1) == [tmp_path / "v.webp"]
    assert numbered_paths(tmp_path / "v.webp", 2) == [tmp_path / "v_0.webp", tmp_path / "v_1.webp"]
