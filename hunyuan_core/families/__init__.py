"""The model families the core runs, found by the `_class_name` in a folder's model_index.json."""

from __future__ import annotations

from .base import FamilyDefaults, LatentFormat, ModelFamily
from .hunyuan_video import HUNYUAN_VIDEO
from .hunyuan_video15 import HUNYUAN_VIDEO_15, HUNYUAN_VIDEO_15_I2V
from .hunyuan_video_i2v import HUNYUAN_VIDEO_I2V

FAMILIES: dict[str, ModelFamily] = {
    family.spec.pipeline_class: family
    for family in (HUNYUAN_VIDEO, HUNYUAN_VIDEO_I2V, HUNYUAN_VIDEO_15, HUNYUAN_VIDEO_15_I2V)
}

__all__ = ["FAMILIES", "FamilyDefaults", "LatentFormat", "ModelFamily"]


def check_size_for_some_family(width: int, height: int, frames: int) -> None:
    """Raises the first family's `UserInputError` unless some family can generate this size: what a host can
    check before it knows which model a graph will load (the sampler checks the model's own rule)."""
    from ..errors import UserInputError

    errors = []
    for family in FAMILIES.values():
        try:
            family.check_video_size(width, height, frames)
            return
        except UserInputError as error:
            errors.append(error)
    raise errors[0]
