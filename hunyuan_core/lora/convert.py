"""A LoRA file's tensors -> the diffusers/peft state dict for one transformer, and what did not fit it.

Every module a file names is checked against the model before anything is loaded: it must exist and the
pair's widths must be the layer's. A LoRA that fits nowhere is refused with a few of its keys named; one that
fits partly is applied with a warning naming what was left out (a silently unapplied LoRA is the most
reported LoRA failure). Both HunyuanVideo 1 and 1.5 also take Tencent's original names (original_names.py),
in every flattening keys.py reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserInputError
from .files import LoraTensors
from .keys import kohya_names, read_pairs
from .original_names import original_names

SHOWN = 5  # unmatched keys named in a message


@dataclass
class ConvertedLora:
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)  # diffusers names, no prefix
    format: str = ""
    modules: int = 0  # modules of the file that were matched
    unmatched: list[str] = field(default_factory=list)  # the file's keys (or key stems) that fit no layer

    def describe_unmatched(self) -> str:
        more = len(self.unmatched) - SHOWN
        return ", ".join(self.unmatched[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _fits(layer: torch.nn.Module | None, a: torch.Tensor, b: torch.Tensor) -> bool:
    layer = getattr(layer, "base_layer", layer)  # a layer holding other LoRAs already: peft's wrapper
    return (isinstance(layer, torch.nn.Linear) and a.shape[1] == layer.in_features
            and b.shape[0] == layer.out_features and a.shape[0] == b.shape[1])


def convert_lora(file: LoraTensors, transformer: torch.nn.Module) -> ConvertedLora:
    """The file's pairs in `transformer`'s names, those that fit its layers; the rest as unmatched keys."""
    layers = dict(transformer.named_modules())
    original = original_names(transformer)
    original_layers = original.names if original else frozenset()
    read = read_pairs(file.tensors, kohya_names([*layers, *original_layers]), file.adapter_config)
    result = ConvertedLora(format=read.format, unmatched=list(read.unmatched))
    for module, (a, b) in read.pairs.items():
        if module in layers:
            converted = {f"{module}.lora_A.weight": a, f"{module}.lora_B.weight": b}
        elif module in original_layers:
            converted = original.convert(module, a, b)
            result.format = f"{read.format}, Tencent's original names"
        else:
            converted = {}
        targets = {key.rsplit(".lora_", 1)[0] for key in converted}
        if converted and all(_fits(layers.get(t), converted[f"{t}.lora_A.weight"], converted[f"{t}.lora_B.weight"])
                             for t in targets):
            result.state_dict.update(converted)
            result.modules += 1
        else:
            result.unmatched.append(read.file_keys[module])
    return result


def check_fits(converted: ConvertedLora, label: str, model_name: str) -> None:
    """Refuses a LoRA none of whose keys fit the model."""
    if converted.modules:
        return
    hint = ""
    if any("double_blocks" in key for key in converted.unmatched):
        hint = (" HunyuanVideo 1 and 1.5 LoRAs share Tencent's layer names (double_blocks…) but not their widths "
                "(3072 and 2048 in the released models): a LoRA for one does not fit the other.")
    raise UserInputError(
        f"The LoRA {label} does not fit this {model_name} model: none of its layers match "
        f"(e.g. {converted.describe_unmatched() or 'the file holds no tensors'}). It is made for another model "
        f"(another HunyuanVideo version or another base model) or in an unsupported format (supported: Tencent's "
        f"original names, ComfyUI's lora_down/lora_up, kohya/musubi-tuner lora_unet_…, diffusers/peft).{hint}"
    )
