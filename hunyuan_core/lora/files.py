"""LoRA files as the user names them: a path and a strength, read from safetensors only."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UserInputError

if TYPE_CHECKING:
    from peft import LoraConfig


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
        try:
            stat = self.path.stat()
        except OSError:
            raise UserInputError(f"LoRA file not found: {self.path}. It was moved or deleted after it was chosen.") \
                from None
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


@dataclass
class LoraTensors:
    tensors: dict[str, torch.Tensor]
    adapter_config: LoraConfig | None = None  # the peft config diffusers saved in the file's metadata, if any


def read_lora_file(path: Path) -> LoraTensors:
    """The file's tensors on the CPU, and its adapter config. Only safetensors: pickled LoRAs (.pt, .ckpt, .bin)
    can run code."""
    from safetensors import SafetensorError, safe_open

    if path.suffix != ".safetensors":
        raise UserInputError(
            f"LoRA {path.name}: only .safetensors files are read (pickled files can run code when loaded)."
        )
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise UserInputError(f"Could not read the LoRA {path.name} ({error}); the file is incomplete or not a "
                             "safetensors file. Download it again.") from None
    return LoraTensors(tensors, _adapter_config(metadata, path.name))


def _adapter_config(metadata: dict[str, str], label: str) -> LoraConfig | None:
    """The adapter config diffusers writes into the file's metadata (since 0.35; a pipeline's `save_lora_weights`
    and a model's `save_lora_adapter`): peft's `LoraConfig.to_dict()` as JSON, its keys prefixed by the component
    (`transformer.lora_alpha`) when a pipeline saved it. Its alphas are the file's scale (peft's `lora_alpha / r`,
    per module through `alpha_pattern`); diffusers itself builds the adapter from it when it loads the file, and
    fills what it lacks with LoraConfig's defaults, as here."""
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY

    text = metadata.get(LORA_ADAPTER_METADATA_KEY)
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise UserInputError(f"LoRA {label}: its adapter settings ({LORA_ADAPTER_METADATA_KEY} in the file's "
                             "metadata) are not a JSON object. Save the LoRA again.")
    if any("." in key for key in config):  # a pipeline's: one config per component
        config = {key.removeprefix("transformer."): value for key, value in config.items()
                  if key.startswith("transformer.")}
    from peft import LoraConfig

    fields = ("lora_alpha", "alpha_pattern", "use_rslora")  # what the scale takes besides the pair's own rank
    return LoraConfig(**{key: config[key] for key in fields if key in config}) if config else None
