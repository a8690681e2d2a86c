"""The HunyuanVideo transformers' two namings, module by module: Tencent's original one (what ComfyUI's files,
city96's GGUFs and most LoRAs use) and diffusers'.

One table serves every direction: converting HunyuanVideo 1.5 weights (diffusers 0.42.1 has no converter for
it in the library), mapping LoRA layers (a LoRA on a fused original layer becomes one per diffusers layer) and
writing test files. HunyuanVideo 1 weights are converted by diffusers' own converter (see transformer.py); a
test checks that this table agrees with it.

Fused layers: the original `img_attn_qkv` is diffusers' `to_q`, `to_k`, `to_v` stacked along the output rows
(three equal parts); v1's `single_blocks.N.linear1` stacks q, k, v (each `hidden` rows) and the MLP input (the
rest); the final layer's modulation holds [shift, scale] where diffusers has [scale, shift].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

EQUAL = "equal"  # rows split into len(parts) equal parts
LINEAR1 = "linear1"  # q, k, v of `hidden` rows each, then the MLP's rows
SWAP = "swap"  # one part, its two row halves swapped
NONE = "none"


@dataclass(frozen=True)
class ModuleMap:
    original: str
    diffusers: tuple[str, ...]
    split: str = NONE


def _simple(pairs) -> list[ModuleMap]:
    return [ModuleMap(original, (diffusers,)) for original, diffusers in pairs]


def _refiner(count: int) -> list[ModuleMap]:
    maps = []
    for i in range(count):
        o, d = f"txt_in.individual_token_refiner.blocks.{i}.", f"context_embedder.token_refiner.refiner_blocks.{i}."
        maps.append(ModuleMap(o + "self_attn_qkv", tuple(d + f"attn.to_{x}" for x in "qkv"), EQUAL))
        maps += _simple([(o + "norm1", d + "norm1"), (o + "norm2", d + "norm2"),
                         (o + "self_attn_proj", d + "attn.to_out.0"), (o + "mlp.fc1", d + "ff.net.0.proj"),
                         (o + "mlp.fc2", d + "ff.net.2"), (o + "adaLN_modulation.1", d + "norm_out.linear")])
    return maps


_TEXT_IN = [("txt_in.input_embedder", "context_embedder.proj_in"),
            ("txt_in.t_embedder.mlp.0", "context_embedder.time_text_embed.timestep_embedder.linear_1"),
            ("txt_in.t_embedder.mlp.2", "context_embedder.time_text_embed.timestep_embedder.linear_2"),
            ("txt_in.c_embedder.linear_1", "context_embedder.time_text_embed.text_embedder.linear_1"),
            ("txt_in.c_embedder.linear_2", "context_embedder.time_text_embed.text_embedder.linear_2")]
_DOUBLE = [("img_mod.linear", "norm1.linear"), ("txt_mod.linear", "norm1_context.linear"),
           ("img_attn_q_norm", "attn.norm_q"), ("img_attn_k_norm", "attn.norm_k"),
           ("txt_attn_q_norm", "attn.norm_added_q"), ("txt_attn_k_norm", "attn.norm_added_k"),
           ("img_attn_proj", "attn.to_out.0"), ("txt_attn_proj", "attn.to_add_out"),
           ("img_mlp.fc1", "ff.net.0.proj"), ("img_mlp.fc2", "ff.net.2"),
           ("txt_mlp.fc1", "ff_context.net.0.proj"), ("txt_mlp.fc2", "ff_context.net.2")]
_FINAL = [ModuleMap("final_layer.linear", ("proj_out",)),
          ModuleMap("final_layer.adaLN_modulation.1", ("norm_out.linear",), SWAP)]


def _double(count: int, fused_qkv: bool) -> list[ModuleMap]:
    maps = []
    for i in range(count):
        o, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        img, txt = tuple(d + f"attn.to_{x}" for x in "qkv"), tuple(d + f"attn.add_{x}_proj" for x in "qkv")
        if fused_qkv:
            maps += [ModuleMap(o + "img_attn_qkv", img, EQUAL), ModuleMap(o + "txt_attn_qkv", txt, EQUAL)]
        else:  # Tencent's HunyuanVideo 1.5 checkpoints keep q, k and v apart
            maps += _simple([(o + f"img_attn_{x}", part) for x, part in zip("qkv", img)])
            maps += _simple([(o + f"txt_attn_{x}", part) for x, part in zip("qkv", txt)])
        maps += _simple([(o + a, d + b) for a, b in _DOUBLE])
    return maps


def hunyuan_video_modules(config) -> list[ModuleMap]:
    """HunyuanVideo 1 (text- and image-to-video), for a diffusers transformer config."""
    maps = _simple([("img_in.proj", "x_embedder.proj"),
                    ("time_in.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
                    ("time_in.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
                    ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                    ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")])
    if config["guidance_embeds"]:
        maps += _simple([("guidance_in.mlp.0", "time_text_embed.guidance_embedder.linear_1"),
                         ("guidance_in.mlp.2", "time_text_embed.guidance_embedder.linear_2")])
    maps += _simple(_TEXT_IN) + _refiner(config["num_refiner_layers"]) + _double(config["num_layers"], True)
    for i in range(config["num_single_layers"]):
        o, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        maps.append(ModuleMap(o + "linear1", (d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"),
                              LINEAR1))
        maps += _simple([(o + "linear2", d + "proj_out"), (o + "q_norm", d + "attn.norm_q"),
                         (o + "k_norm", d + "attn.norm_k"), (o + "modulation.linear", d + "norm.linear")])
    return maps + _FINAL


def hunyuan_video15_modules(config, fused_qkv: bool = False) -> list[ModuleMap]:
    """HunyuanVideo 1.5 (following diffusers' scripts/convert_hunyuan_video1_5_to_diffusers.py); ComfyUI's
    repackaged files fuse each block's q, k and v as v1 does (`fused_qkv`)."""
    maps = _simple([("img_in.proj", "x_embedder.proj"),
                    ("time_in.mlp.0", "time_embed.timestep_embedder.linear_1"),
                    ("time_in.mlp.2", "time_embed.timestep_embedder.linear_2"),
                    ("byt5_in.layernorm", "context_embedder_2.norm"), ("byt5_in.fc1", "context_embedder_2.linear_1"),
                    ("byt5_in.fc2", "context_embedder_2.linear_2"), ("byt5_in.fc3", "context_embedder_2.linear_3"),
                    ("vision_in.proj.0", "image_embedder.norm_in"), ("vision_in.proj.1", "image_embedder.linear_1"),
                    ("vision_in.proj.3", "image_embedder.linear_2"), ("vision_in.proj.4", "image_embedder.norm_out"),
                    ("cond_type_embedding", "cond_type_embed")])
    if config.get("use_meanflow"):
        maps += _simple([("time_r_in.mlp.0", "time_embed.timestep_embedder_r.linear_1"),
                         ("time_r_in.mlp.2", "time_embed.timestep_embedder_r.linear_2")])
    maps += _simple(_TEXT_IN) + _refiner(config["num_refiner_layers"]) + _double(config["num_layers"], fused_qkv)
    return maps + _FINAL


def split_rows(tensor: torch.Tensor, kind: str, parts: int, hidden: int) -> tuple[torch.Tensor, ...]:
    """The diffusers parts of a fused original tensor (weight, bias, or a LoRA's up matrix), as views."""
    if kind == EQUAL:
        return tensor.chunk(parts, dim=0)
    if kind == LINEAR1:
        return torch.split(tensor, (hidden, hidden, hidden, tensor.shape[0] - 3 * hidden), dim=0)
    if kind == SWAP:
        first, second = tensor.chunk(2, dim=0)
        return (torch.cat([second, first], dim=0),)
    return (tensor,)


def join_rows(parts, kind: str) -> torch.Tensor:
    """The inverse of `split_rows`."""
    if kind == SWAP:
        scale, shift = parts[0].chunk(2, dim=0)
        return torch.cat([shift, scale], dim=0)
    return torch.cat(list(parts), dim=0) if len(parts) > 1 else parts[0]


def to_diffusers(tensors: dict, maps: list[ModuleMap], hidden: int) -> dict:
    """Original-named tensors (`<module>.weight`, `.bias`, ...) -> diffusers-named ones; keys of no module in
    `maps` are kept as they are (the caller checks the result against the model)."""
    by_module = {m.original: m for m in maps}
    out = {}
    for key, tensor in tensors.items():
        module, _, name = key.rpartition(".")
        entry = by_module.get(module)
        if entry is None:
            out[key] = tensor
            continue
        for target, part in zip(entry.diffusers, split_rows(tensor, entry.split, len(entry.diffusers), hidden)):
            out[f"{target}.{name}"] = part
    return out


def to_original(tensors: dict, maps: list[ModuleMap]) -> dict:
    """Diffusers-named tensors -> original names (fused layers joined): how the test files are written."""
    out = {}
    for entry in maps:
        for name in ("weight", "bias"):
            parts = [tensors.get(f"{target}.{name}") for target in entry.diffusers]
            if all(p is not None for p in parts):
                out[f"{entry.original}.{name}"] = join_rows(parts, entry.split)
    return out


# ComfyUI's internal naming (comfy/supported_models.py HunyuanVideo.process_unet_state_dict maps the original
# names to it); files saved from ComfyUI's model object use it. Undone here, longest patterns first.
_COMFY_INTERNAL = [
    ("txt_in.t_embedder.in_layer.", "txt_in.t_embedder.mlp.0."),
    ("txt_in.t_embedder.out_layer.", "txt_in.t_embedder.mlp.2."),
    ("txt_in.c_embedder.in_layer.", "txt_in.c_embedder.linear_1."),
    ("txt_in.c_embedder.out_layer.", "txt_in.c_embedder.linear_2."),
    ("_mod.lin.", "_mod.linear."), ("_attn.qkv.", "_attn_qkv."),
    ("_attn.norm.query_norm.", "_attn_q_norm."), ("_attn.norm.key_norm.", "_attn_k_norm."),
    (".norm.query_norm.", ".q_norm."), (".norm.key_norm.", ".k_norm."),
    ("_attn.proj.", "_attn_proj."), (".modulation.lin.", ".modulation.linear."),
    ("time_in.in_layer.", "time_in.mlp.0."), ("time_in.out_layer.", "time_in.mlp.2."),
    ("time_r_in.in_layer.", "time_r_in.mlp.0."), ("time_r_in.out_layer.", "time_r_in.mlp.2."),
    ("guidance_in.in_layer.", "guidance_in.mlp.0."), ("guidance_in.out_layer.", "guidance_in.mlp.2."),
]
_COMFY_MLP = re.compile(r"(img_mlp|txt_mlp|individual_token_refiner\.blocks\.\d+\.mlp)\.([02])\.")
COMFY_INTERNAL_MARKERS = ("_attn.qkv.", "_mod.lin.", ".norm.query_norm.")


def is_comfy_internal(keys) -> bool:
    return any(marker in key for key in keys for marker in COMFY_INTERNAL_MARKERS)


def comfy_internal_to_original(key: str) -> str:
    """One ComfyUI-internal name in original naming (RMSNorm `.scale` becomes `.weight`)."""
    key = _COMFY_MLP.sub(lambda m: f"{m.group(1)}.fc{1 if m.group(2) == '0' else 2}.", key)
    for internal, original in _COMFY_INTERNAL:
        key = key.replace(internal, original)
    if key.endswith("_norm.scale"):
        key = key[: -len("scale")] + "weight"
    return key
