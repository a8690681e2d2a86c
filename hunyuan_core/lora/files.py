"""LoRA files as the user names them: a path and a strength, read from safetensors only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserInputError


@dataclass(frozen=True)
class LoraFile:
    path: Path
    strength: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).expanduser())
        if not math.isfinite(self.strength):
            raise UserInputError(f"The strength of LoRA {self.path.name} must be a finite number, got {self.strength}.")
        if not self.path.is_file():  # before any model is loaded
            raise UserInputError(f"LoRA file not found: {self.path}. Check the path (ComfyUI: models/loras).")

    @property
    def identity(self) -> tuple:
        """What makes two entries the same LoRA: the file, and its size and time of change (a file
        overwritten under the same name is read again)."""
        stat = self.path.stat()
        return str(self.path.resolve()), stat.st_size, stat.st_mtime_ns


def parse_lora(text: str) -> LoraFile:
    """`FILE[:STRENGTH]` as the CLI takes it (a Windows drive's colon is part of the file)."""
    path, sep, strength = text.rpartition(":")
    if not sep or not strength or "/" in strength or "\\" in strength:
        return LoraFile(Path(text))
    try:
        value = float(strength)
    except ValueError:
        raise UserInputError(f"--lora takes FILE[:STRENGTH], e.g. style.safetensors:0.8; got {text!r}.") from None
    return LoraFile(Path(path), value)


def read_lora_file(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors on the CPU. Only safetensors: pickled LoRAs (.pt, .ckpt, .bin) can run code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise UserInputError(
            f"LoRA {path.name}: only .safetensors files are read (pickled files can run code when loaded)."
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise UserInputError(f"Could not read the LoRA {path.name} ({error}); the file is incomplete or not a "
                             "safetensors file. Download it again.") from None
