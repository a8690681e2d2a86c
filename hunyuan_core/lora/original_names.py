"""HunyuanVideo 1 LoRAs in Tencent's original module names, converted to diffusers' names.

diffusers' converter (`_convert_hunyuan_video_lora_to_diffusers`, diffusers 0.42.1) renames most modules
correctly and is used for them, one module at a time. Where it is wrong, the module is converted here:

- `single_blocks.N.linear1` (q, k, v and the MLP input fused): diffusers splits lora_B with a hard-coded
  width of 3072, so only the released width loads (other widths fail with negative split sizes); the width
  here is lora_A's input width, which is the model's.
- `txt_in.individual_token_refiner.blocks.N.self_attn_qkv`: diffusers chunks lora_A into three along the
  rank as well as lora_B ("not enough values to unpack", or a wrong delta when the rank divides by 3).
- `final_layer.adaLN_modulation.1`: diffusers swaps the halves of lora_A (the rank) as well as lora_B's
  (the output rows, shift and scale); the delta is silently wrong.

Alphas are folded into lora_B before this point (keys.py), which avoids diffusers' other failure: its qkv
handlers `chunk` the 0-d alpha tensors ("chunk expects at least a 1-dimensional tensor").
"""

from __future__ import annotations

import torch

DOUBLE_BLOCK = ("img_mod.linear", "img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2",
                "txt_mod.linear", "txt_attn_qkv", "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2")
SINGLE_BLOCK = ("linear1", "linear2", "modulation.linear")
REFINER_BLOCK = ("self_attn_qkv", "self_attn_proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1")
OTHERS = ("img_in.proj", "txt_in.input_embedder", "txt_in.t_embedder.mlp.0", "txt_in.t_embedder.mlp.2",
          "txt_in.c_embedder.linear_1", "txt_in.c_embedder.linear_2", "time_in.mlp.0", "time_in.mlp.2",
          "vector_in.in_layer", "vector_in.out_layer", "guidance_in.mlp.0", "guidance_in.mlp.2",
          "final_layer.linear", "final_layer.adaLN_modulation.1")


def original_module_names(config) -> list[str]:
    """The layers of Tencent's HunyuanVideo checkpoint a LoRA can target, for a transformer `config`."""
    names = [f"double_blocks.{i}.{n}" for i in range(config.num_layers) for n in DOUBLE_BLOCK]
    names += [f"single_blocks.{i}.{n}" for i in range(config.num_single_layers) for n in SINGLE_BLOCK]
    names += [f"txt_in.individual_token_refiner.blocks.{i}.{n}"
              for i in range(config.num_refiner_layers) for n in REFINER_BLOCK]
    return names + list(OTHERS)


def _split(base: str, names: tuple[str, ...], a: torch.Tensor, b: torch.Tensor, sizes: list[int]) -> dict:
    """A fused layer's pair as one pair per part: lora_A is shared, lora_B split like the fused weight. Each
    part gets its own copies: block-level disk offloading refuses to save tensors that share memory, and views
    at odd offsets compute differently on a CPU than the fresh allocations offloading gives them."""
    out = {}
    for name, part in zip(names, torch.split(b, sizes, dim=0)):
        out[f"{base}.{name}.lora_A.weight"] = a.clone()
        out[f"{base}.{name}.lora_B.weight"] = part.clone()
    return out


def convert_module(name: str, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """One original-name module's pair as diffusers LoRA keys (without the `transformer.` prefix)."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    parts = name.split(".")
    if parts[0] == "single_blocks" and parts[2:] == ["linear1"]:
        width = a.shape[1]
        return _split(f"single_transformer_blocks.{parts[1]}", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
                      a, b, [width, width, width, b.shape[0] - 3 * width])
    if parts[:3] == ["txt_in", "individual_token_refiner", "blocks"] and parts[4:] == ["self_attn_qkv"]:
        return _split(f"context_embedder.token_refiner.refiner_blocks.{parts[3]}",
                      ("attn.to_q", "attn.to_k", "attn.to_v"), a, b, [b.shape[0] // 3] * 3)
    if name == "final_layer.adaLN_modulation.1":
        shift, scale = b.chunk(2, dim=0)
        return {"norm_out.linear.lora_A.weight": a, "norm_out.linear.lora_B.weight": torch.cat([scale, shift])}
    converted = _convert_hunyuan_video_lora_to_diffusers({f"{name}.lora_A.weight": a, f"{name}.lora_B.weight": b})
    # each its own allocation: diffusers gives q, k and v one lora_A and views of lora_B
    return {key.removeprefix("transformer."): tensor.clone() for key, tensor in converted.items()}
