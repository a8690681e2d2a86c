"""Start images from files, as ComfyUI hands them over: float RGB in 0..1, `[height, width, 3]` each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import UserInputError


def load_images(paths: list[str | Path]) -> list[torch.Tensor]:
    """One `[H, W, 3]` float tensor per file (sizes may differ; each is fitted to the video later)."""
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise UserInputError(f"Image not found: {path}.") from None
        except (UnidentifiedImageError, OSError) as error:
            raise UserInputError(
                f"Could not read {path} as an image ({error}). Use a PNG, JPEG or WebP file."
            ) from error
        images.append(torch.from_numpy(pixels))
    return images
