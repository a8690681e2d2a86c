"""The HunyuanVideo 1 VAE from one file (`models/vae/hunyuan_video_vae_bf16.safetensors`).

diffusers 0.42.1 has no single-file loader for `AutoencoderKLHunyuanVideo` (no `FromOriginalModelMixin`). Two
namings exist: Tencent's original `vae/pytorch_model.pt` already uses diffusers' names (diffusers' own
scripts/convert_hunyuan_video_to_diffusers.py renames nothing), and files saved by ComfyUI use its LDM names
(comfy/ldm/modules/diffusionmodules/model.py with conv3d: `encoder.down.N.block.M`, the causal convs wrapped as
`.conv`, the mid attention as 1x1x1 Conv3d, decoder `up` blocks numbered in reverse). Both load, with or without a
`first_stage_model.`/`vae.` prefix. Block widths, depths and channels come from the shapes; the norm groups,
scaling factor and compression ratios from the model folder or the shipped config.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...errors import UserInputError
from .files import FileHeader, own_aligned_storage, read_header, read_tensors, strip_prefix, without_prefix

ANCHORS = ("decoder.conv_in.", "encoder.conv_in.")
_ATTENTION = {"norm.": "group_norm.", "q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "proj_out.": "to_out.0."}


def _resnet(rest: str) -> str:
    return "conv_shortcut." + rest[len("nin_shortcut."):] if rest.startswith("nin_shortcut.") else rest


def _count(keys, pattern: str) -> int:
    return len({m.group(1) for key in keys for m in [re.match(pattern, key)] if m})


def is_ldm_naming(keys) -> bool:
    return any(key.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for key in keys)


def ldm_name(key: str, up_blocks: int) -> str | None:
    """The diffusers name of a ComfyUI/LDM-named key, or None for a key no HunyuanVideo VAE has."""
    if re.match(r"(encoder|decoder)\.conv_(in|out)\.|(post_)?quant_conv\.", key):
        return key
    if m := re.match(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.*)", key):
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet(m[3])}"
    if m := re.match(r"encoder\.down\.(\d+)\.downsample\.(.*)", key):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.{m[2]}"
    if m := re.match(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.*)", key):
        return f"decoder.up_blocks.{up_blocks - 1 - int(m[1])}.resnets.{m[2]}.{_resnet(m[3])}"
    if m := re.match(r"decoder\.up\.(\d+)\.upsample\.(.*)", key):
        return f"decoder.up_blocks.{up_blocks - 1 - int(m[1])}.upsamplers.0.{m[2]}"
    if m := re.match(r"(encoder|decoder)\.mid\.block_(\d)\.(.*)", key):
        return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_resnet(m[3])}"
    if m := re.match(r"(encoder|decoder)\.mid\.attn_1\.(.*)", key):
        rest = next((new + m[2][len(old):] for old, new in _ATTENTION.items() if m[2].startswith(old)), None)
        return f"{m[1]}.mid_block.attentions.0.{rest}" if rest else None
    if m := re.match(r"(encoder|decoder)\.norm_out\.(.*)", key):
        return f"{m[1]}.conv_norm_out.{m[2]}"
    return None


def to_diffusers_names(tensors: dict) -> dict:
    """ComfyUI/LDM-named tensors -> diffusers names (the mid attention's 1x1x1 convs become Linear weights)."""
    up_blocks = _count(tensors, r"decoder\.up\.(\d+)\.")
    out = {}
    for key, tensor in tensors.items():
        name = ldm_name(key, up_blocks)
        if name is None:
            raise UserInputError(f"Unknown HunyuanVideo VAE layer {key!r}: the file is of another VAE.")
        if ".attentions.0.to_" in name and name.endswith(".weight") and tensor.ndim > 2:
            tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])
        out[name] = tensor
    return out


def inspect_vae(path: str | Path) -> tuple[FileHeader, str, dict[str, tuple]]:
    """(header, prefix, diffusers-named shapes); refuses a file that is no HunyuanVideo 1 VAE."""
    header = read_header(path, "VAE")
    prefix = strip_prefix(header.tensors, ANCHORS)
    shapes = {k: v.shape for k, v in without_prefix(header.tensors, prefix).items()}
    if is_ldm_naming(shapes):
        shapes = {name: shape for key, shape in shapes.items()
                  if (name := ldm_name(key, _count(shapes, r"decoder\.up\.(\d+)\."))) is not None}
    conv_in = shapes.get("decoder.conv_in.conv.weight")
    if header.format != "safetensors" or conv_in is None or len(conv_in) != 5 or "post_quant_conv.weight" not in shapes:
        raise UserInputError(
            f"{header.path.name} is not a HunyuanVideo VAE (its first keys: {header.first_keys()}). Use "
            "hunyuan_video_vae_bf16.safetensors from models/vae."
        )
    return header, prefix, shapes


def vae_config(shapes: dict, base: dict, base_name: str) -> dict:
    blocks = _count(shapes, r"encoder\.down_blocks\.(\d+)\.")
    derived = {
        "in_channels": shapes["encoder.conv_in.conv.weight"][1],
        "out_channels": shapes["decoder.conv_out.conv.weight"][0],
        "latent_channels": shapes["post_quant_conv.weight"][0],
        "block_out_channels": tuple(shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"][0]
                                    for i in range(blocks)),
        "layers_per_block": _count(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        "mid_block_add_attention": "encoder.mid_block.attentions.0.to_q.weight" in shapes,
        "down_block_types": ("HunyuanVideoDownBlock3D",) * blocks,
        "up_block_types": ("HunyuanVideoUpBlock3D",) * blocks,
    }
    config = {**{k: v for k, v in base.items() if not k.startswith("_")}, **derived}
    if any(channels % config["norm_num_groups"] for channels in derived["block_out_channels"]):
        raise UserInputError(
            f"This VAE's widths {list(derived['block_out_channels'])} do not fit the {config['norm_num_groups']} norm "
            f"groups of {base_name}: it is not the released HunyuanVideo VAE. Give a model folder whose VAE config "
            "describes it."
        )
    return config


def load_vae(header: FileHeader, prefix: str, config: dict, dtype: torch.dtype) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLHunyuanVideo

    tensors = without_prefix(read_tensors(header), prefix)
    if is_ldm_naming(tensors):
        tensors = to_diffusers_names(tensors)
    with init_empty_weights():
        vae = AutoencoderKLHunyuanVideo.from_config(config)
    try:
        vae.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    except RuntimeError as error:
        raise UserInputError(f"{header.path.name} does not fit a HunyuanVideo VAE ({error}).") from error
    own_aligned_storage(vae)
    return vae.eval().requires_grad_(False)
