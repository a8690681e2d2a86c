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
# (ComfyUI/LDM, diffusers) name prefixes. {s}: encoder or decoder; {i}, {j}: block and layer; {u}: the same up
# block numbered from the other end (LDM counts the decoder's up blocks in reverse); {k1} = {k} + 1.
_BLOCKS = [
    ("{s}.conv_in.", "{s}.conv_in."), ("{s}.conv_out.", "{s}.conv_out."),
    ("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv."),
    ("encoder.down.{i}.block.{j}.", "encoder.down_blocks.{i}.resnets.{j}."),
    ("encoder.down.{i}.downsample.", "encoder.down_blocks.{i}.downsamplers.0."),
    ("decoder.up.{u}.block.{j}.", "decoder.up_blocks.{i}.resnets.{j}."),
    ("decoder.up.{u}.upsample.", "decoder.up_blocks.{i}.upsamplers.0."),
    ("{s}.mid.block_{k1}.", "{s}.mid_block.resnets.{k}."),
    ("{s}.mid.attn_1.", "{s}.mid_block.attentions.0."),
    ("{s}.norm_out.", "{s}.conv_norm_out."),
]
# (LDM, diffusers) names of layers inside a block: the resnets' shortcut and the mid attention's layers.
_LAYERS = [("nin_shortcut.", "conv_shortcut."), ("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."),
           ("v.", "to_v."), ("proj_out.", "to_out.0.")]
LDM, DIFFUSERS = 0, 1


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{(\w+)\\\}",
                             lambda m: f"(?P<{m[1]}>encoder|decoder)" if m[1] == "s" else rf"(?P<{m[1]}>\d+)",
                             re.escape(template)))


_PATTERNS = [(_pattern(ldm), _pattern(diffusers)) for ldm, diffusers in _BLOCKS]


def _fields(found: dict, up_blocks: int) -> dict:
    """Every field of a rule from those one side of it names."""
    fields = dict(found)
    if "u" in found:
        fields["i"] = up_blocks - 1 - int(found["u"])
    elif "i" in found:
        fields["u"] = up_blocks - 1 - int(found["i"])
    if "k1" in found:
        fields["k"] = int(found["k1"]) - 1
    elif "k" in found:
        fields["k1"] = int(found["k"]) + 1
    return fields


def rename(key: str, up_blocks: int, source: int = LDM, target: int = DIFFUSERS) -> str | None:
    """A VAE key in the other naming (LDM -> diffusers by default), or None for a key no HunyuanVideo VAE has."""
    for rule, patterns in zip(_BLOCKS, _PATTERNS, strict=True):
        if match := patterns[source].match(key):
            rest = key[match.end():]
            layer = next((names for names in _LAYERS if rest.startswith(names[source])), None)
            if layer is not None:
                rest = layer[target] + rest[len(layer[source]):]
            return rule[target].format(**_fields(match.groupdict(), up_blocks)) + rest
    return None


def _count(keys, pattern: str) -> int:
    return len({m.group(1) for key in keys for m in [re.match(pattern, key)] if m})


def is_ldm_naming(keys) -> bool:
    return any(key.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for key in keys)


def to_diffusers_names(tensors: dict) -> dict:
    """ComfyUI/LDM-named tensors -> diffusers names (the mid attention's 1x1x1 convs become Linear weights)."""
    up_blocks = _count(tensors, r"decoder\.up\.(\d+)\.")
    out = {}
    for key, tensor in tensors.items():
        name = rename(key, up_blocks)
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
                  if (name := rename(key, _count(shapes, r"decoder\.up\.(\d+)\."))) is not None}
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
