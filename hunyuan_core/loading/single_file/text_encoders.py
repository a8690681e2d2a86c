"""HunyuanVideo 1's text encoders from ComfyUI's `models/text_encoders` files.

- `clip_l.safetensors`: Hugging Face CLIP names under `text_model.` (transformers 5 `CLIPTextModel` has them
  without it), often with the unused `text_projection.weight` and old `position_ids`/`logit_scale` entries.
- `llava_llama3_fp16.safetensors` / `llava_llama3_fp8_scaled.safetensors`: the Llama under `model.`, without the
  language-model head and the vision tower (diffusers' `LlamaModel` needs neither). The fp8-scaled file holds each
  Linear weight in float8 with a per-tensor scale: it stays fp8 and is cast, scaled, per layer (see fp8.py).

Widths, depths and vocabulary come from the shapes; head counts and the rest from the model folder or the shipped
config of the released models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import UserInputError
from .files import FileHeader, own_aligned_storage, read_header, read_tensors
from .fp8 import apply_file_dtype_casting, check_header_quantization, split_scales

CLIP_PREFIXES = ("clip_l.transformer.", "cond_stage_model.transformer.", "transformer.", "text_model.")
CLIP_UNUSED = ("text_projection.weight", "logit_scale", "embeddings.position_ids")
LLAMA_UNUSED = ("lm_head.", "vision_tower.", "multi_modal_projector.")
_SCALES = (".scale_weight", ".weight_scale", ".scale_input", ".input_scale", ".comfy_quant")


def _clip_name(key: str) -> str:
    for prefix in CLIP_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _llama_name(key: str) -> str:
    for prefix in ("language_model.model.", "model.language_model.", "model."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def inspect_text_encoder(path: str | Path, kind: str) -> tuple[FileHeader, dict[str, tuple]]:
    """(header, shapes under the model's names) of a CLIP-L (`kind` "clip") or Llama ("llama") file."""
    label = "CLIP-L text encoder" if kind == "clip" else "Llama text encoder"
    header = read_header(path, label)
    if header.format != "safetensors":
        raise UserInputError(f"{header.path.name}: the {label} must be a .safetensors file.")
    check_header_quantization(header)
    rename = _clip_name if kind == "clip" else _llama_name
    shapes = {rename(k): v.shape for k, v in header.tensors.items() if not k.endswith(_SCALES) and k != "scaled_fp8"}
    anchor = "encoder.layers.0.mlp.fc1.weight" if kind == "clip" else "layers.0.post_attention_layernorm.weight"
    if anchor not in shapes:
        wanted = "clip_l.safetensors" if kind == "clip" else "llava_llama3_fp16.safetensors"
        raise UserInputError(
            f"{header.path.name} is not a {label} (its first keys: {header.first_keys()}). Use {wanted} from "
            "models/text_encoders."
        )
    return header, shapes


def _layers(shapes, marker: str) -> int:
    return len({key[len(marker):].split(".")[0] for key in shapes if key.startswith(marker)})


def clip_config(shapes: dict, base: dict, base_name: str) -> dict:
    vocab, hidden = shapes["embeddings.token_embedding.weight"]
    derived = {"vocab_size": vocab, "hidden_size": hidden,
               "intermediate_size": shapes["encoder.layers.0.mlp.fc1.weight"][0],
               "num_hidden_layers": _layers(shapes, "encoder.layers."),
               "max_position_embeddings": shapes["embeddings.position_embedding.weight"][0]}
    return _merge(derived, base, base_name, "CLIP-L", hidden % base["num_attention_heads"] == 0)


def llama_config(shapes: dict, base: dict, base_name: str) -> dict:
    vocab, hidden = shapes["embed_tokens.weight"]
    head_dim = base.get("head_dim") or base["hidden_size"] // base["num_attention_heads"]
    derived = {"vocab_size": vocab, "hidden_size": hidden,
               "intermediate_size": shapes["layers.0.mlp.gate_proj.weight"][0],
               "num_hidden_layers": _layers(shapes, "layers."),
               "num_key_value_heads": shapes["layers.0.self_attn.k_proj.weight"][0] // head_dim}
    fits = hidden == base["num_attention_heads"] * head_dim
    return _merge(derived, base, base_name, "Llama", fits)


def _merge(derived: dict, base: dict, base_name: str, label: str, fits: bool) -> dict:
    if not fits:
        raise UserInputError(
            f"This {label} text encoder ({derived['hidden_size']} wide) does not fit the attention heads of "
            f"{base_name}: it is not the released model. Give a model folder whose config describes it."
        )
    return {**{k: v for k, v in base.items() if not k.startswith("_") and k != "architectures"}, **derived}


def load_clip(header: FileHeader, config: dict, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    tensors = {_clip_name(k): v for k, v in read_tensors(header).items()}
    return _assign(_empty(CLIPTextModel, CLIPTextConfig(**config)), tensors, {}, CLIP_UNUSED, dtype, header)


def load_llama(header: FileHeader, config: dict, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaModel

    tensors, scales = split_scales(read_tensors(header))
    tensors = {_llama_name(k): v for k, v in tensors.items() if not k.startswith(LLAMA_UNUSED)}
    scales = {_llama_name(k): v for k, v in scales.items()}
    return _assign(_empty(LlamaModel, LlamaConfig(**config)), tensors, scales, (), dtype, header)


def _empty(cls, config):
    """The model with its parameters on the meta device; buffers (the rotary frequencies) computed as usual."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return cls(config)


def _assign(model, tensors: dict, scales: dict, unused: tuple[str, ...], dtype: torch.dtype, header: FileHeader):
    expected = set(model.state_dict())
    tensors = {k: v for k, v in tensors.items() if k in expected or not k.endswith(unused)}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise UserInputError(
            f"{header.path.name} does not match its text encoder: {len(missing)} weights missing (e.g. "
            f"{', '.join(missing[:3]) or 'none'}), {len(unexpected)} unexpected (e.g. "
            f"{', '.join(unexpected[:3]) or 'none'})."
            " The file is incomplete or of another model."
        )
    fp8 = {k for k, v in tensors.items() if v.dtype in (torch.float8_e4m3fn, torch.float8_e5m2)}
    model.load_state_dict({k: v if k in fp8 else v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    if fp8:
        apply_file_dtype_casting(model, fp8, scales, dtype)
    own_aligned_storage(model)
    return model.eval().requires_grad_(False)
