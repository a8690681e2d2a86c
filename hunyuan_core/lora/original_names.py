"""LoRAs in Tencent's original module names (HunyuanVideo 1 and 1.5), converted to diffusers' names.

Both go through the pack's module table (loading/single_file/transformer_keys.py), which says which diffusers
layers each original layer became: a pair on a fused layer becomes one pair per part, lora_A shared and
lora_B's rows split (or their halves swapped) exactly as the layer's weight rows are.

HunyuanVideo 1.5: diffusers 0.42.1 has no converter for its original names, so every layer goes through the
table. The blocks' attention is read in both namings: fused `img_attn_qkv` (ComfyUI's repackaged files and
the trainers built on them) and separate `img_attn_q` / `_k` / `_v` (Tencent's checkpoints).

HunyuanVideo 1: diffusers' converter (`_convert_hunyuan_video_lora_to_diffusers`, diffusers 0.42.1) renames
most layers correctly and is used for them, one module at a time. The layers it gets wrong go through the
table instead:

- `single_blocks.N.linear1` (q, k, v and the MLP input fused): diffusers splits lora_B with a hard-coded
  width of 3072, so only the released width loads (other widths fail with negative split sizes); the table
  splits at the model's width.
- `txt_in.individual_token_refiner.blocks.N.self_attn_qkv`: diffusers chunks lora_A into three along the
  rank as well as lora_B ("not enough values to unpack", or a wrong delta when the rank divides by 3).
- `final_layer.adaLN_modulation.1`: diffusers swaps the halves of lora_A (the rank) as well as lora_B's
  (the output rows, shift and scale); the delta is silently wrong.

Alphas are folded into lora_B before this point (keys.py), which avoids diffusers' other failure: its qkv
handlers `chunk` the 0-d alpha tensors ("chunk expects at least a 1-dimensional tensor").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..loading.single_file.transformer_keys import ModuleMap, hunyuan_video15_modules, hunyuan_video_modules, split_rows

V1_TRANSFORMER = "HunyuanVideoTransformer3DModel"  # HunyuanVideo 1, text- and image-to-video
V15_TRANSFORMER = "HunyuanVideo15Transformer3DModel"

DOUBLE_BLOCK = ("img_mod.linear", "img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2",
                "txt_mod.linear", "txt_attn_qkv", "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2")
SINGLE_BLOCK = ("linear1", "linear2", "modulation.linear")
REFINER_BLOCK = ("self_attn_qkv", "self_attn_proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1")
OTHERS = ("img_in.proj", "txt_in.input_embedder", "txt_in.t_embedder.mlp.0", "txt_in.t_embedder.mlp.2",
          "txt_in.c_embedder.linear_1", "txt_in.c_embedder.linear_2", "time_in.mlp.0", "time_in.mlp.2",
          "vector_in.in_layer", "vector_in.out_layer", "guidance_in.mlp.0", "guidance_in.mlp.2",
          "final_layer.linear", "final_layer.adaLN_modulation.1")
# The HunyuanVideo 1 layers diffusers 0.42.1's LoRA converter gets wrong (see above).
DIFFUSERS_WRONG = re.compile(r"single_blocks\.\d+\.linear1|txt_in\.individual_token_refiner\.blocks\.\d+\.self_attn_qkv"
                             r"|final_layer\.adaLN_modulation\.1")


def original_module_names(config) -> list[str]:
    """The layers of Tencent's HunyuanVideo 1 checkpoint a LoRA can target, for a transformer `config`."""
    names = [f"double_blocks.{i}.{n}" for i in range(config.num_layers) for n in DOUBLE_BLOCK]
    names += [f"single_blocks.{i}.{n}" for i in range(config.num_single_layers) for n in SINGLE_BLOCK]
    names += [f"txt_in.individual_token_refiner.blocks.{i}.{n}"
              for i in range(config.num_refiner_layers) for n in REFINER_BLOCK]
    return names + list(OTHERS)


@dataclass(frozen=True)
class OriginalNames:
    """The original layer names a LoRA may use on one transformer, and their conversion to diffusers' names."""

    names: frozenset[str]
    table: dict[str, ModuleMap]  # original layer -> its diffusers layers
    hidden: int  # the model's width (where v1's linear1 splits)
    diffusers_converter: bool  # HunyuanVideo 1: diffusers' converter for the layers it gets right

    def convert(self, name: str, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One original layer's pair as diffusers LoRA keys (without the `transformer.` prefix)."""
        if self.diffusers_converter and not DIFFUSERS_WRONG.fullmatch(name):
            return _by_diffusers(name, a, b)
        entry = self.table[name]
        parts = split_rows(b, entry.split, len(entry.diffusers), self.hidden)
        if len(parts) == 1:
            return {f"{entry.diffusers[0]}.lora_A.weight": a, f"{entry.diffusers[0]}.lora_B.weight": parts[0]}
        # each part its own copies: block-level disk offloading refuses to save tensors that share memory, and
        # views at odd offsets compute differently on a CPU than the fresh allocations offloading gives them
        out = {}
        for target, part in zip(entry.diffusers, parts):
            out[f"{target}.lora_A.weight"] = a.clone()
            out[f"{target}.lora_B.weight"] = part.clone()
        return out


def original_names(transformer: torch.nn.Module) -> OriginalNames | None:
    """The original names `transformer` takes LoRAs in; None for a model that has none."""
    config = transformer.config
    kind = type(transformer).__name__
    if kind == V1_TRANSFORMER:
        maps = hunyuan_video_modules(config)
        names = original_module_names(config)
    elif kind == V15_TRANSFORMER:
        maps = hunyuan_video15_modules(config, fused_qkv=True) + hunyuan_video15_modules(config, fused_qkv=False)
        names = [m.original for m in maps]
    else:
        return None
    return OriginalNames(frozenset(names), {m.original: m for m in maps},
                         config.num_attention_heads * config.attention_head_dim, kind == V1_TRANSFORMER)


def _by_diffusers(name: str, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    converted = _convert_hunyuan_video_lora_to_diffusers({f"{name}.lora_A.weight": a, f"{name}.lora_B.weight": b})
    # each its own allocation: diffusers gives q, k and v one lora_A and views of lora_B
    return {key.removeprefix("transformer."): tensor.clone() for key, tensor in converted.items()}
