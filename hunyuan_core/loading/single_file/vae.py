"""The HunyuanVideo VAEs from one file: `models/vae/hunyuan_video_vae_bf16.safetensors` (HunyuanVideo 1) and
`hunyuanvideo15_vae_fp16.safetensors` (1.5).

diffusers 0.42.1 has no single-file loader for either (`AutoencoderKLHunyuanVideo` and `...15` lack
`FromOriginalModelMixin`). Each VAE has two namings. HunyuanVideo 1: Tencent's `vae/pytorch_model.pt` already uses
diffusers' names (diffusers' scripts/convert_hunyuan_video_to_diffusers.py renames nothing), and files saved by
ComfyUI use its LDM names (comfy/ldm/modules/diffusionmodules/model.py with conv3d: `encoder.down.N.block.M`, the
causal convs wrapped as `.conv`, the mid attention as 1x1x1 Conv3d, decoder `up` blocks numbered in reverse).
HunyuanVideo 1.5: Tencent's checkpoint (and Comfy-Org's repackaged file, which ComfyUI reads with
comfy/ldm/hunyuan_video/vae_refiner.py) uses LDM-like names with the `up` blocks in diffusers' order; diffusers'
scripts/convert_hunyuan_video1_5_to_diffusers.py renames them one to one. Every form loads, with or without a
`first_stage_model.`/`vae.` prefix. Widths, depths and channels come from the shapes; the rest of the config
from the model folder or the shipped config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ...errors import UserInputError
from .files import (FileHeader, count_indices, own_aligned_storage, read_header, read_tensors, strip_prefix,
                    without_prefix)

ANCHORS = ("decoder.conv_in.", "encoder.conv_in.")
LDM, DIFFUSERS = 0, 1  # the two sides of a naming rule


@dataclass(frozen=True)
class VaeNaming:
    """One VAE's two namings. `blocks`: (LDM, diffusers) name prefixes, where {s} is encoder or decoder, {i} and
    {j} a block and a layer, {u} the same up block numbered from the other end and {k1} = {k} + 1; `layers`:
    (LDM, diffusers) names of layers inside a block."""

    model: str  # diffusers class
    label: str
    file: str  # the file to use, for messages
    blocks: tuple[tuple[str, str], ...]
    layers: tuple[tuple[str, str], ...]
    attention_as_conv: bool  # LDM stores Linear attention weights as 1x1x1 convolutions
    marker: str  # a diffusers-side key only this VAE has

    @cached_property
    def _patterns(self) -> list[tuple[re.Pattern, re.Pattern]]:
        return [(_pattern(ldm), _pattern(diffusers)) for ldm, diffusers in self.blocks]

    def rename(self, key: str, up_blocks: int, source: int = LDM, target: int = DIFFUSERS) -> str | None:
        """A key in the other naming (LDM -> diffusers by default), or None for a key this VAE has not."""
        for rule, patterns in zip(self.blocks, self._patterns, strict=True):
            if match := patterns[source].match(key):
                rest = key[match.end():]
                layer = next((names for names in self.layers if rest.startswith(names[source])), None)
                if layer is not None:
                    rest = layer[target] + rest[len(layer[source]):]
                return rule[target].format(**_fields(match.groupdict(), up_blocks)) + rest
        return None

    def is_ldm(self, keys) -> bool:
        return any(key.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for key in keys)

    def to_diffusers(self, tensors: dict) -> dict:
        """LDM-named tensors -> diffusers names (HunyuanVideo 1's mid attention convs become Linear weights)."""
        up_blocks = count_indices(tensors, r"decoder\.up\.(\d+)\.")
        out = {}
        for key, tensor in tensors.items():
            name = self.rename(key, up_blocks)
            if name is None:
                raise UserInputError(f"Unknown {self.label} layer {key!r}: the file is of another VAE.")
            if self.attention_as_conv and ".attentions.0.to_" in name and name.endswith(".weight") and tensor.ndim > 2:
                tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])
            out[name] = tensor
        return out


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{(\w+)\\\}",
                             lambda m: f"(?P<{m[1]}>encoder|decoder)" if m[1] == "s" else rf"(?P<{m[1]}>\d+)",
                             re.escape(template)))


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


_COMMON = (("{s}.conv_in.", "{s}.conv_in."), ("{s}.conv_out.", "{s}.conv_out."),
           ("encoder.down.{i}.block.{j}.", "encoder.down_blocks.{i}.resnets.{j}."),
           ("encoder.down.{i}.downsample.", "encoder.down_blocks.{i}.downsamplers.0."),
           ("{s}.mid.block_{k1}.", "{s}.mid_block.resnets.{k}."), ("{s}.mid.attn_1.", "{s}.mid_block.attentions.0."))
_QKV = (("nin_shortcut.", "conv_shortcut."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."))

HUNYUAN_VIDEO = VaeNaming(
    "AutoencoderKLHunyuanVideo", "HunyuanVideo VAE", "hunyuan_video_vae_bf16.safetensors",
    blocks=_COMMON + (("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv."),
                      ("decoder.up.{u}.block.{j}.", "decoder.up_blocks.{i}.resnets.{j}."),
                      ("decoder.up.{u}.upsample.", "decoder.up_blocks.{i}.upsamplers.0."),
                      ("{s}.norm_out.", "{s}.conv_norm_out.")),
    layers=_QKV + (("norm.", "group_norm."), ("proj_out.", "to_out.0.")),
    attention_as_conv=True, marker="post_quant_conv.weight",
)
HUNYUAN_VIDEO15 = VaeNaming(
    "AutoencoderKLHunyuanVideo15", "HunyuanVideo 1.5 VAE", "hunyuanvideo15_vae_fp16.safetensors",
    blocks=_COMMON + (("decoder.up.{i}.block.{j}.", "decoder.up_blocks.{i}.resnets.{j}."),
                      ("decoder.up.{i}.upsample.", "decoder.up_blocks.{i}.upsamplers.0."),
                      ("{s}.norm_out.", "{s}.norm_out.")),
    layers=_QKV, attention_as_conv=False, marker="decoder.norm_out.gamma",
)
NAMINGS = {naming.model: naming for naming in (HUNYUAN_VIDEO, HUNYUAN_VIDEO15)}


def _diffusers_shapes(naming: VaeNaming, shapes: dict) -> dict:
    if not naming.is_ldm(shapes):
        return shapes
    up_blocks = count_indices(shapes, r"decoder\.up\.(\d+)\.")
    return {name: shape for key, shape in shapes.items() if (name := naming.rename(key, up_blocks)) is not None}


def inspect_vae(path: str | Path, naming: VaeNaming) -> tuple[FileHeader, str, dict[str, tuple]]:
    """(header, prefix, diffusers-named shapes); refuses a file that is not `naming`'s VAE, naming the VAE it
    is when it is the other HunyuanVideo one."""
    header = read_header(path, "VAE")
    prefix = strip_prefix(header.tensors, ANCHORS)
    shapes = {k: v.shape for k, v in without_prefix(header.tensors, prefix).items()}
    found = _diffusers_shapes(naming, shapes)
    conv_in = found.get("decoder.conv_in.conv.weight")
    if header.format == "safetensors" and conv_in is not None and len(conv_in) == 5:
        if naming.marker in found:
            return header, prefix, found
        other = next(o for o in NAMINGS.values() if o is not naming)
        if other.marker in _diffusers_shapes(other, shapes):
            raise UserInputError(
                f"{header.path.name} is a {other.label}, but this model needs the {naming.label}: use "
                f"{naming.file} from models/vae."
            )
    raise UserInputError(
        f"{header.path.name} is not a {naming.label} (its first keys: {header.first_keys()}). Use {naming.file} "
        "from models/vae."
    )


def vae_config(naming: VaeNaming, shapes: dict, base: dict, base_name: str) -> dict:
    blocks = count_indices(shapes, r"encoder\.down_blocks\.(\d+)\.")
    derived = {
        "in_channels": shapes["encoder.conv_in.conv.weight"][1],
        "out_channels": shapes["decoder.conv_out.conv.weight"][0],
        "latent_channels": shapes["decoder.conv_in.conv.weight"][1],
        "block_out_channels": tuple(shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"][0]
                                    for i in range(blocks)),
        "layers_per_block": count_indices(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
    }
    if naming is HUNYUAN_VIDEO:
        derived.update(mid_block_add_attention="encoder.mid_block.attentions.0.to_q.weight" in shapes,
                       down_block_types=("HunyuanVideoDownBlock3D",) * blocks,
                       up_block_types=("HunyuanVideoUpBlock3D",) * blocks)
    config = {**{k: v for k, v in base.items() if not k.startswith("_")}, **derived}
    groups = config.get("norm_num_groups")
    if groups and any(channels % groups for channels in derived["block_out_channels"]):
        raise UserInputError(
            f"This VAE's widths {list(derived['block_out_channels'])} do not fit the {groups} norm groups of "
            f"{base_name}: it is not the released {naming.label}. Give a model folder whose VAE config describes it."
        )
    return config


def load_vae(naming: VaeNaming, header: FileHeader, prefix: str, config: dict, dtype: torch.dtype) -> torch.nn.Module:
    import diffusers
    from accelerate import init_empty_weights

    tensors = without_prefix(read_tensors(header), prefix)
    if naming.is_ldm(tensors):
        tensors = naming.to_diffusers(tensors)
    with init_empty_weights():
        vae = getattr(diffusers, naming.model).from_config(config)
    try:
        vae.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    except RuntimeError as error:
        raise UserInputError(f"{header.path.name} does not fit a {naming.label} ({error}).") from error
    own_aligned_storage(vae)
    return vae.eval().requires_grad_(False)
