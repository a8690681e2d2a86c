"""The text and image encoders from ComfyUI's `models/text_encoders` and `models/clip_vision` files, one kind
per model class.

- `clip_l.safetensors` (HunyuanVideo 1): Hugging Face CLIP names under `text_model.` (transformers 5
  `CLIPTextModel` has them without it), often with the unused `text_projection.weight` and old
  `position_ids`/`logit_scale` entries.
- `llava_llama3_fp16.safetensors` / `llava_llama3_fp8_scaled.safetensors` (HunyuanVideo 1): the Llama under
  `model.`, without the language-model head and the vision tower (diffusers' `LlamaModel` needs neither).
- `qwen_2.5_vl_7b.safetensors` / `qwen_2.5_vl_7b_fp8_scaled.safetensors` (1.5): the Qwen2.5-VL language model
  under `model.` (comfy/text_encoders/llama.py Qwen25_7BVLI) beside its vision tower `visual.`, which 1.5's
  `Qwen2_5_VLTextModel` does not use.
- `byt5_small_glyphxl_fp16.safetensors` (1.5): the Glyph-ByT5 encoder in Hugging Face T5 names
  (`encoder.block.N...`, `shared.weight`), as `T5EncoderModel` has them.
- `clip_vision/sigclip_vision_patch14_384.safetensors` (1.5 image-to-video): SigLIP's vision tower in Hugging
  Face names under `vision_model.` (transformers 5's `SiglipVisionModel` has them without it), with or without
  its pooling head, which 1.5 does not use.

The fp8-scaled files hold each Linear weight in float8 with a per-tensor scale: it stays fp8 and is cast,
scaled, per layer (see fp8.py). Widths, depths and vocabulary come from the shapes; head counts and the rest
from the model folder or the shipped config of the released models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...errors import UserInputError
from .files import FP8_DTYPES, FileHeader, count_indices, own_aligned_storage, read_header, read_tensors
from .fp8 import apply_file_dtype_casting, check_header_quantization, split_scales

_SCALES = (".scale_weight", ".weight_scale", ".scale_input", ".input_scale", ".comfy_quant")


def strip_prefixes(prefixes: tuple[str, ...], repeat: bool) -> Callable[[str], str]:
    """A renamer dropping the first of `prefixes` a key starts with (each in turn, when `repeat`)."""
    def rename(key: str) -> str:
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                if not repeat:
                    break
        return key
    return rename


def _decoder_config(shapes: dict, base: dict) -> tuple[dict, bool]:
    """Llama and Qwen2.5: decoder-only transformers with the same names."""
    vocab, hidden = shapes["embed_tokens.weight"]
    head_dim = base.get("head_dim") or base["hidden_size"] // base["num_attention_heads"]
    derived = {"vocab_size": vocab, "hidden_size": hidden,
               "intermediate_size": shapes["layers.0.mlp.gate_proj.weight"][0],
               "num_hidden_layers": count_indices(shapes, r"layers\.(\d+)\."),
               "num_key_value_heads": shapes["layers.0.self_attn.k_proj.weight"][0] // head_dim}
    return derived, hidden == base["num_attention_heads"] * head_dim


def _clip_config(shapes: dict, base: dict) -> tuple[dict, bool]:
    vocab, hidden = shapes["embeddings.token_embedding.weight"]
    derived = {"vocab_size": vocab, "hidden_size": hidden,
               "intermediate_size": shapes["encoder.layers.0.mlp.fc1.weight"][0],
               "num_hidden_layers": count_indices(shapes, r"encoder\.layers\.(\d+)\."),
               "max_position_embeddings": shapes["embeddings.position_embedding.weight"][0]}
    return derived, hidden % base["num_attention_heads"] == 0


def _t5_config(shapes: dict, base: dict) -> tuple[dict, bool]:
    vocab, width = shapes.get("shared.weight") or shapes["encoder.embed_tokens.weight"]
    derived = {"vocab_size": vocab, "d_model": width,
               "d_ff": shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
               "num_layers": count_indices(shapes, r"encoder\.block\.(\d+)\.")}
    fits = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0] == base["num_heads"] * base["d_kv"]
    return derived, fits


def vision_transformer_config(shapes: dict, base: dict, prefix: str = "",
                              class_token: bool = False) -> tuple[dict, bool]:
    """A ViT's widths from its weights under `prefix` (SigLIP; CLIP's, whose positions include a class token)."""
    hidden, channels, patch = shapes[f"{prefix}embeddings.patch_embedding.weight"][:3]
    side = round((shapes[f"{prefix}embeddings.position_embedding.weight"][0] - class_token) ** 0.5)
    derived = {"hidden_size": hidden, "num_channels": channels, "patch_size": patch, "image_size": side * patch,
               "intermediate_size": shapes[f"{prefix}encoder.layers.0.mlp.fc1.weight"][0],
               "num_hidden_layers": count_indices(shapes, rf"{re.escape(prefix)}encoder\.layers\.(\d+)\.")}
    return derived, hidden % base["num_attention_heads"] == 0


def _siglip_config(shapes: dict, base: dict) -> tuple[dict, bool]:
    derived, fits = vision_transformer_config(shapes, base)
    return {**derived, "vision_use_head": "head.probe" in shapes}, fits


@dataclass(frozen=True)
class EncoderKind:
    """How one encoder class is read from a single file."""

    model: str  # transformers class
    label: str
    file: str  # the file to use, for messages
    rename: Callable[[str], str]  # file key -> the model's name
    anchor: str  # a model name every such file has
    unused: tuple[str, ...]  # names (prefixes or endings) of file tensors the model does not use
    derive: Callable[[dict, dict], tuple[dict, bool]]  # (shapes, base config) -> (config values, fits the heads)
    width: str = "hidden_size"  # the config entry of the output width
    folder: str = "models/text_encoders"  # where ComfyUI keeps such files, for messages


_DECODER_NAMES = strip_prefixes(("language_model.model.", "model.language_model.", "model."), repeat=False)
KINDS = {kind.model: kind for kind in (
    EncoderKind("CLIPTextModel", "CLIP-L text encoder", "clip_l.safetensors",
                strip_prefixes(("clip_l.transformer.", "cond_stage_model.transformer.", "transformer.", "text_model."),
                               repeat=True),
                "encoder.layers.0.mlp.fc1.weight", ("text_projection.weight", "logit_scale", "embeddings.position_ids"),
                _clip_config),
    EncoderKind("LlamaModel", "Llama text encoder", "llava_llama3_fp16.safetensors", _DECODER_NAMES,
                "layers.0.post_attention_layernorm.weight", ("lm_head.", "vision_tower.", "multi_modal_projector."),
                _decoder_config),
    EncoderKind("Qwen2_5_VLTextModel", "Qwen2.5-VL text encoder", "qwen_2.5_vl_7b.safetensors", _DECODER_NAMES,
                "layers.0.self_attn.q_proj.bias", ("lm_head.", "visual."), _decoder_config),
    EncoderKind("T5EncoderModel", "ByT5 text encoder", "byt5_small_glyphxl_fp16.safetensors",
                strip_prefixes(("text_encoders.byt5_small.transformer.", "byt5_small.transformer."), repeat=False),
                "encoder.block.0.layer.0.SelfAttention.q.weight", ("decoder.", "lm_head."), _t5_config,
                width="d_model"),
    # the patch embedding's bias: SigLIP has one, CLIP's vision towers have none
    EncoderKind("SiglipVisionModel", "SigLIP image encoder", "sigclip_vision_patch14_384.safetensors",
                strip_prefixes(("clip_vision.", "vision_model."), repeat=True), "embeddings.patch_embedding.bias",
                ("text_model.", "logit_scale", "logit_bias"), _siglip_config, folder="models/clip_vision"),
)}


def inspect_encoder(path: str | Path, kind: EncoderKind) -> tuple[FileHeader, dict[str, tuple]]:
    """(header, shapes under the model's names); refuses a file that is not `kind`'s model."""
    header = read_header(path, kind.label)
    if header.format != "safetensors":
        raise UserInputError(f"{header.path.name}: the {kind.label} must be a .safetensors file.")
    check_header_quantization(header)
    shapes = {kind.rename(k): v.shape for k, v in header.tensors.items()
              if not k.endswith(_SCALES) and k != "scaled_fp8"}
    if kind.anchor not in shapes:
        raise UserInputError(
            f"{header.path.name} is not a {kind.label} (its first keys: {header.first_keys()}). Use {kind.file} "
            f"from {kind.folder}."
        )
    return header, shapes


def encoder_config(kind: EncoderKind, shapes: dict, base: dict, base_name: str) -> dict:
    derived, fits = kind.derive(shapes, base)
    if not fits:
        raise UserInputError(
            f"This {kind.label} ({derived[kind.width]} wide) does not fit the attention heads of {base_name}: it is "
            "not the released model. Give a model folder whose config describes it."
        )
    return {**{k: v for k, v in base.items() if not k.startswith("_") and k != "architectures"}, **derived}


def load_encoder(kind: EncoderKind, header: FileHeader, config: dict, dtype: torch.dtype) -> torch.nn.Module:
    model = empty_model(kind.model, config)
    tensors, scales = read_renamed(header, kind.rename)
    return assign_weights(model, tensors, scales, kind.unused, dtype, f"{header.path.name} does not match its "
                          f"{kind.label}")


def empty_model(class_name: str, config: dict) -> torch.nn.Module:
    """A transformers model of `config` with its parameters on the meta device; buffers (rotary frequencies)
    computed as usual."""
    import transformers
    from accelerate import init_empty_weights

    cls = getattr(transformers, class_name)
    with init_empty_weights(include_buffers=False):
        return cls(cls.config_class(**config))


def read_renamed(header: FileHeader, rename: Callable[[str], str]) -> tuple[dict, dict]:
    """A file's (tensors, per-tensor fp8 scales) under the model's names."""
    tensors, scales = split_scales(read_tensors(header))
    return {rename(k): v for k, v in tensors.items()}, {rename(k): v for k, v in scales.items()}


def assign_weights(model: torch.nn.Module, tensors: dict, scales: dict, unused: tuple[str, ...], dtype: torch.dtype,
                   mismatch: str) -> torch.nn.Module:
    """Fills `model` with `tensors` exactly (fp8 ones stay fp8 and are cast per layer), dropping the `unused`
    ones and refusing any other difference with `mismatch` and what is missing or unexpected."""
    expected = set(model.state_dict())
    tensors = {k: v for k, v in tensors.items() if k in expected or not _unused(k, unused)}
    tied = (getattr(model, "_tied_weights_keys", None) or {}).items()  # T5's input embedding is `shared`
    for names in tied:
        present = [name for name in names if name in tensors]
        for name in names:
            if present and name not in tensors:
                tensors[name] = tensors[present[0]]
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise UserInputError(
            f"{mismatch}: {len(missing)} weights missing (e.g. {', '.join(missing[:3]) or 'none'}), {len(unexpected)} "
            f"unexpected (e.g. {', '.join(unexpected[:3]) or 'none'}). The file is incomplete or of another model."
        )
    fp8 = {k for k, v in tensors.items() if v.dtype in FP8_DTYPES}
    model.load_state_dict({k: v if k in fp8 else v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    if tied:
        model.tie_weights()  # one parameter again, as from_pretrained leaves it (assigning gave each name its own)
    if fp8:
        apply_file_dtype_casting(model, fp8, scales, dtype)
    own_aligned_storage(model)
    return model.eval().requires_grad_(False)


def _unused(key: str, unused: tuple[str, ...]) -> bool:
    return key.startswith(unused) or key.endswith(unused)
