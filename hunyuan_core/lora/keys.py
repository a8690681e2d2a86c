"""The key formats LoRA files are shared in, reduced to one form: a low-rank pair per module.

People share HunyuanVideo LoRAs with four kinds of keys:

- original Tencent names, peft style: `diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight` / `lora_B`
  (optionally `.alpha`);
- ComfyUI style: the same names with `lora_down` / `lora_up` and `.alpha`;
- kohya / musubi-tuner: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` / `lora_up` / `.alpha`,
  the module path with its dots replaced by underscores;
- diffusers / peft: `transformer.transformer_blocks.0.attn.to_q.lora_A.weight` / `lora_B`.

Each becomes `{module: (A, B)}` with the file's `alpha / rank` folded into B: diffusers' HunyuanVideo loader
passes no alphas to peft (`lora_pipeline.py`, diffusers 0.42.1), so an unfolded alpha would be ignored. The
alpha is a module's `.alpha` key, or else the one of the adapter config diffusers saves in the
file's metadata (files.py), scaled as peft does.
Keys of other kinds (DoRA scales, LoKr or LoHa factors, bias and full-weight diffs) are kept as unmatched,
so that nothing is dropped without the user hearing of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from peft import LoraConfig

PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.")
KOHYA_PREFIX = "lora_unet_"
_PEFT_KEY = re.compile(r"(.+?)\.(lora_A|lora_B|lora_down|lora_up)\.weight$")
_ALPHA_KEY = re.compile(r"(.+)\.alpha$")


@dataclass
class LoraPairs:
    """A LoRA file as `{module name: (A [rank, in], B [out, rank] with alpha/rank folded in)}`."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    file_keys: dict[str, str] = field(default_factory=dict)  # module name -> its key stem in the file, for messages
    unmatched: list[str] = field(default_factory=list)  # file keys that are not part of a LoRA pair
    format: str = "empty"


def _module_name(key: str, kohya_names: dict[str, str]) -> tuple[str, str, str] | None:
    """(module, part, format) for a LoRA key; part is A, B or alpha; None for any other key."""
    if key.startswith(KOHYA_PREFIX):
        stem, _, rest = key.partition(".")
        module = kohya_names.get(stem)
        part = {"lora_down.weight": "A", "lora_up.weight": "B", "alpha": "alpha"}.get(rest)
        if module is None or part is None:
            return None
        return module, part, "kohya / musubi-tuner (lora_unet_…)"
    stripped = next((key[len(p):] for p in PREFIXES if key.startswith(p)), key)
    if match := _PEFT_KEY.match(stripped):
        comfy = match[2] in ("lora_down", "lora_up")
        part = "A" if match[2] in ("lora_A", "lora_down") else "B"
        return match[1], part, "ComfyUI (lora_down / lora_up)" if comfy else "peft (lora_A / lora_B)"
    if match := _ALPHA_KEY.match(stripped):
        return match[1], "alpha", "ComfyUI (lora_down / lora_up)"
    return None


def read_pairs(state_dict: dict[str, torch.Tensor], kohya_names: dict[str, str],
               adapter_config: LoraConfig | None = None) -> LoraPairs:
    """Pairs up a LoRA file's tensors by module (`kohya_names`: underscored module path -> dotted one;
    `adapter_config`: the file's peft config, for modules without an `.alpha` key)."""
    parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    result = LoraPairs()
    formats = []
    for key, tensor in state_dict.items():
        found = _module_name(key, kohya_names)
        if found is None:
            result.unmatched.append(key)
            continue
        module, part, kind = found
        parts.setdefault(module, {})[part] = (key, tensor)
        if part != "alpha":
            formats.append(kind)
    for module, found in parts.items():
        if "A" not in found or "B" not in found or found["A"][1].ndim != 2 or found["B"][1].ndim != 2:
            result.unmatched.extend(key for key, _ in found.values())
            continue
        # own fp32 copies: a file's tensors are slices of its buffer, at addresses on which CPU kernels round
        # differently than on the fresh allocations offloading gives them
        a, b = (found[part][1].to(torch.float32, copy=True) for part in "AB")
        if "alpha" in found:
            scale = float(found["alpha"][1]) / a.shape[0]
        else:
            scale = peft_scale(adapter_config, module, a.shape[0]) if adapter_config else 1.0
        result.pairs[module] = (a, b * scale if scale != 1.0 else b)
        result.file_keys[module] = found["A"][0].rsplit(".lora_", 1)[0]
    if formats:
        result.format = max(set(formats), key=formats.count)
    return result


def peft_scale(config: LoraConfig, module: str, rank: int) -> float:
    """The scale peft gives `module` under `config` (peft 0.21 `LoraModel._create_and_replace`, `update_layer`):
    its alpha by peft's own pattern matching over `alpha_pattern`, over its rank (the pair's own: peft's `r` and
    `rank_pattern` give the same for every file peft can load), or over the rank's root with rsLoRA."""
    from peft.utils.other import get_pattern_key

    alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), module), config.lora_alpha)
    return alpha / math.sqrt(rank) if config.use_rslora else alpha / rank


def kohya_names(module_names) -> dict[str, str]:
    """kohya's flattened names (`lora_unet_` + the path with underscores) for these dotted module paths."""
    return {KOHYA_PREFIX + name.replace(".", "_"): name for name in module_names}
