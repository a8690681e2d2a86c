"""A HunyuanVideo transformer from one file: Tencent's original names (Comfy-Org's repackaged files, kijai's fp8
files, city96's GGUFs), with or without a `model.diffusion_model.`-style prefix, or ComfyUI's internal names.

The file is inspected from its header first (which model, which storage, which shapes), so a file of another
model, an unsupported quantization or fp8 on a device without it is refused before its weights are read. The
config is derived from the shapes; what shapes cannot tell (rope axes, and for HunyuanVideo 1.5 the task and
resolution) comes from the model folder or from the config shipped for the released model. Nothing is fetched.

Loading: safetensors weights are assigned into an empty model in their own dtype (fp8 stays fp8;
`from_single_file` would cast every tensor to one dtype, diffusers 0.42.1 models/model_loading_utils.py:235-247);
GGUF files go through diffusers' `from_single_file` with `GGUFQuantizationConfig`, which replaces the Linear
layers by dequantizing ones.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import UserInputError
from . import transformer_keys as keys
from .files import (FP8_DTYPES, FileHeader, count_indices, own_aligned_storage, read_header, read_tensors,
                    strip_prefix, without_prefix)
from .fp8 import apply_file_dtype_casting, check_header_quantization, split_scales

V1 = "HunyuanVideo 1"
V15 = "HunyuanVideo 1.5"
CLASSES = {V1: "HunyuanVideoTransformer3DModel", V15: "HunyuanVideo15Transformer3DModel"}
ANCHORS = ("txt_in.individual_token_refiner.blocks.0.",)  # every HunyuanVideo transformer has it, in both namings
GGUF_ARCHITECTURES = ("hyvid",)  # city96's name for HunyuanVideo (tools/convert.py, ModelHyVid)


@dataclass
class TransformerFile:
    """What the header says about a transformer file."""

    header: FileHeader
    generation: str  # V1 or V15
    prefix: str
    comfy_internal: bool
    shapes: dict[str, tuple[int, ...]]  # original names, logical shapes

    @property
    def storage(self) -> str:
        return self.header.storage

    @property
    def fp8_dtypes(self) -> set[torch.dtype]:
        return self.header.fp8_dtypes

    @property
    def fused_qkv(self) -> bool:
        return "double_blocks.0.img_attn_qkv.weight" in self.shapes


def inspect_transformer(path: str | Path) -> TransformerFile:
    """Reads the header and refuses what cannot load: another model, an unsupported quantization."""
    header = read_header(path, "transformer")
    name = header.path.name
    if header.format == "gguf":
        if header.architecture not in GGUF_ARCHITECTURES:
            raise UserInputError(
                f"{name} is a GGUF of a {header.architecture or 'unknown'} model, not a HunyuanVideo transformer "
                f"(architecture {' or '.join(GGUF_ARCHITECTURES)}). Pick a HunyuanVideo GGUF (e.g. city96's)."
            )
        _check_gguf_types(header)
    check_header_quantization(header)
    prefix = strip_prefix(header.tensors, ANCHORS)
    names = list(without_prefix(header.tensors, prefix))
    if not any(n.startswith(ANCHORS) for n in names):
        raise UserInputError(
            f"{name} is not a HunyuanVideo transformer: it has none of its layers (its first keys: "
            f"{header.first_keys()}). Pick a HunyuanVideo file from models/diffusion_models (e.g. "
            "hunyuan_video_t2v_720p_bf16.safetensors)."
        )
    if any(n.startswith(("transformer_blocks.", "context_embedder.")) for n in names):
        raise UserInputError(
            f"{name} holds a transformer in diffusers' own naming; load the diffusers folder it belongs to instead."
        )
    comfy = keys.is_comfy_internal(names)
    shapes = {}
    for original, info in zip(names, (header.tensors[prefix + n] for n in names)):
        shapes[keys.comfy_internal_to_original(original) if comfy else original] = info.shape
    generation = V15 if "byt5_in.fc1.weight" in shapes or "cond_type_embedding.weight" in shapes else V1
    return TransformerFile(header, generation, prefix, comfy, shapes)


def _check_gguf_types(header: FileHeader) -> None:
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES
    from gguf import GGMLQuantizationType

    supported = {GGMLQuantizationType(t).name for t in SUPPORTED_GGUF_QUANT_TYPES} | {"F32", "F16"}
    unsupported = {info.gguf_type for info in header.tensors.values()} - supported
    if unsupported:
        raise UserInputError(
            f"{header.path.name} uses the GGUF quantization type(s) {', '.join(sorted(unsupported))}, which diffusers "
            f"cannot dequantize. Pick a file quantized as one of {', '.join(sorted(supported))} (e.g. Q8_0, Q5_K_M, "
            "Q4_K_M)."
        )


# Config --------------------------------------------------------------------------------------------------------

def derived_config(file: TransformerFile) -> dict:
    """The config values the shapes tell."""
    shape = file.shapes
    try:
        hidden, in_channels, patch_t, patch = shape["img_in.proj.weight"][:4]
        head_dim = shape["double_blocks.0.img_attn_q_norm.weight"][0]
        config = {
            "in_channels": in_channels,
            "out_channels": shape["final_layer.linear.weight"][0] // (patch_t * patch * patch),
            "num_attention_heads": hidden // head_dim,
            "attention_head_dim": head_dim,
            "num_layers": count_indices(shape, r"double_blocks\.(\d+)\."),
            "num_refiner_layers": count_indices(shape, r"txt_in\.individual_token_refiner\.blocks\.(\d+)\."),
            "mlp_ratio": shape["double_blocks.0.img_mlp.fc1.weight"][0] / hidden,
            "patch_size": patch,
            "patch_size_t": patch_t,
            "text_embed_dim": shape["txt_in.input_embedder.weight"][1],
        }
        if file.generation == V1:
            config.update(num_single_layers=count_indices(shape, r"single_blocks\.(\d+)\."),
                          pooled_projection_dim=shape["vector_in.in_layer.weight"][1],
                          guidance_embeds="guidance_in.mlp.0.weight" in shape)
        else:
            config.update(text_embed_2_dim=shape["byt5_in.fc1.weight"][1],
                          image_embed_dim=shape["vision_in.proj.1.weight"][1],
                          use_meanflow="time_r_in.mlp.0.weight" in shape)
    except (KeyError, IndexError) as error:
        raise UserInputError(
            f"{file.header.path.name} lacks the HunyuanVideo transformer layer {error}: the file is incomplete or of "
            "another model."
        ) from None
    return config


def transformer_config(file: TransformerFile, base: dict, base_name: str, family_name: str) -> dict:
    """`base` (the model folder's or the shipped transformer config) with the file's shapes; refuses a file that
    the folder's model family cannot run."""
    derived = derived_config(file)
    found, expected = derived["in_channels"], base.get("in_channels")
    if file.generation != (V15 if "text_embed_2_dim" in base else V1) or found != expected:
        raise UserInputError(
            f"{file.header.path.name} is a {file.generation} transformer with {found} input channels, but "
            f"{base_name} is a {family_name} model ({expected} input channels). Use a model folder of the file's "
            "model, or a transformer file of the folder's."
        )
    config = {**{k: v for k, v in base.items() if not k.startswith("_")}, **derived}
    if sum(config["rope_axes_dim"]) != config["attention_head_dim"]:
        raise UserInputError(
            f"{file.header.path.name} has attention heads of {config['attention_head_dim']} dims, but the rope axes "
            f"{list(config['rope_axes_dim'])} of {base_name} sum to {sum(config['rope_axes_dim'])}. It is not the "
            "released model: give a model folder whose transformer config describes it."
        )
    return config


# Loading -------------------------------------------------------------------------------------------------------

def module_maps(generation: str, config: dict, fused_qkv: bool = True) -> list[keys.ModuleMap]:
    if generation == V1:
        return keys.hunyuan_video_modules(config)
    return keys.hunyuan_video15_modules(config, fused_qkv)


def _original_tensors(file: TransformerFile) -> dict:
    tensors = without_prefix(read_tensors(file.header), file.prefix)
    if file.comfy_internal:
        tensors = {keys.comfy_internal_to_original(k): v for k, v in tensors.items()}
    return tensors


def convert(file: TransformerFile, tensors: dict, config: dict) -> dict:
    """Original-named tensors -> diffusers names.

    HunyuanVideo 1 goes through diffusers' own converter, whose `remap_single_transformer_blocks_` hard-codes
    the released width (`hidden_size = 3072`, diffusers 0.42.1 loaders/single_file_utils.py:2854): every other
    width fails to split `single_blocks.N.linear1`. The narrow fix splits those tensors first, with the real
    width, into diffusers' final names (which none of its substring rules touch), and leaves the rest to it.
    """
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    if file.generation == V15:
        return keys.to_diffusers(tensors, module_maps(V15, config, file.fused_qkv), hidden)
    from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers

    linear1 = [m for m in keys.hunyuan_video_modules(config) if m.split == keys.LINEAR1]
    fused = {k: tensors.pop(k) for k in list(tensors) if k.rsplit(".", 1)[0].endswith(".linear1")}
    pre_split = keys.to_diffusers(fused, linear1, hidden)
    converted = convert_hunyuan_video_transformer_to_diffusers(tensors)
    converted.update(pre_split)
    return converted


def _check_keys(converted: dict, model: torch.nn.Module, name: str) -> None:
    expected, found = set(model.state_dict()), set(converted)
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise UserInputError(
            f"{name} does not match a HunyuanVideo transformer of its own shapes: {len(missing)} layers missing "
            f"(e.g. {', '.join(missing[:3]) or 'none'}), {len(unexpected)} unexpected (e.g. "
            f"{', '.join(unexpected[:3]) or 'none'}). The file is incomplete or of another model."
        )


def load_transformer(file: TransformerFile, config: dict, compute_dtype: torch.dtype) -> torch.nn.Module:
    """The transformer on the CPU: fp8 weights stored in fp8 and cast per layer (scales applied), GGUF weights
    quantized and dequantized per layer, anything else in `compute_dtype`."""
    import diffusers
    from accelerate import init_empty_weights

    cls = getattr(diffusers, CLASSES[file.generation])
    name = file.header.path.name
    tensors = _original_tensors(file)
    tensors, scales = split_scales(tensors)
    converted = convert(file, tensors, config)
    with init_empty_weights():
        model = cls.from_config(config)
    _check_keys(converted, model, name)
    if file.header.format == "gguf":
        model = _load_gguf(cls, converted, config, compute_dtype)
    else:
        fp8_names = {k for k, v in converted.items() if v.dtype in FP8_DTYPES}
        converted = {k: v if k in fp8_names else v.to(compute_dtype) for k, v in converted.items()}
        model.load_state_dict(converted, strict=True, assign=True)
        if fp8_names:
            maps = module_maps(file.generation, config, file.fused_qkv)
            apply_file_dtype_casting(model, fp8_names, _module_scales(scales, maps), compute_dtype)
    own_aligned_storage(model)
    return model.eval().requires_grad_(False)


def _module_scales(scales: dict[str, torch.Tensor], maps: list[keys.ModuleMap]) -> dict[str, torch.Tensor]:
    """Per-tensor scales of original layers, for the diffusers layers they become (a fused layer's parts share its
    scale)."""
    by_original = {m.original: m.diffusers for m in maps}
    return {target: scale for layer, scale in scales.items() for target in by_original.get(layer, (layer,))}


def _load_gguf(cls, converted: dict, config: dict, compute_dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import GGUFQuantizationConfig

    _register_single_file_class(cls)
    with tempfile.TemporaryDirectory() as folder:
        # from_single_file takes its config from a folder (a dict is refused: loaders/single_file_model.py:456-466)
        (Path(folder) / "config.json").write_text(json.dumps({**config, "_class_name": cls.__name__}))
        return cls.from_single_file(converted, config=folder, local_files_only=True, torch_dtype=compute_dtype,
                                    quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype))


def _register_single_file_class(cls) -> None:
    """diffusers 0.42.1 registers only the v1 transformer for single files (loaders/single_file_model.py:144); the
    1.5 one is added with a mapping that accepts weights this module has already converted (diffusers calls it
    only for state dicts whose keys differ from the model's, which `_check_keys` has ruled out)."""
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    def already_converted(checkpoint, **kwargs):
        raise ValueError(f"{cls.__name__} single files must be converted by the pack before loading")

    SINGLE_FILE_LOADABLE_CLASSES.setdefault(cls.__name__, {"checkpoint_mapping_fn": already_converted,
                                                           "default_subfolder": "transformer"})
