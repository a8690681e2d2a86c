"""Writes decoded frames to an animated WebP or GIF (Pillow) or an MP4 (diffusers' exporter + ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..errors import UserInputError

FORMATS = (".webp", ".gif", ".mp4")


def _to_images(frames: torch.Tensor) -> list[Image.Image]:
    array = (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [Image.fromarray(frame) for frame in array]


def save_video(frames: torch.Tensor, path: str | Path, fps: float = 24.0) -> Path:
    """Saves one video, `frames` shaped `[T, H, W, 3]` in 0..1, to `path` (format from the extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserInputError(f"Cannot write {path.name}: use one of {', '.join(FORMATS)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        _save_mp4(frames, path, fps)
        return path
    images = _to_images(frames)
    options = {"lossless": False, "quality": 90} if suffix == ".webp" else {}
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, **options
    )
    return path


def _save_mp4(frames: torch.Tensor, path: Path, fps: float) -> None:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise UserInputError(
            "Writing .mp4 needs ffmpeg: pip install imageio imageio-ffmpeg (or write .webp instead)."
        ) from None
    from diffusers.utils import export_to_video

    export_to_video(_to_images(frames), str(path), fps=fps)


def numbered_paths(path: str | Path, count: int) -> list[Path]:
    """`out.webp` for one video; `out_0.webp`, `out_1.webp`, ... for several."""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{index}{path.suffix}") for index in range(count)]
