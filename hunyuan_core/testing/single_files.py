"""Writing the single files ComfyUI users have, from random models: transformers in Tencent's naming (bf16, fp8,
ComfyUI's scaled fp8, city96-style GGUF, ComfyUI-internal names, prefixed), the VAEs (diffusers or LDM-style
names), and the encoders as ComfyUI stores them (CLIP-L, the Llama and Llava's vision tower; 1.5's Qwen2.5-VL,
ByT5 and SigLIP). Tests and benchmarks load these instead of real weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..loading.single_file import transformer_keys as keys
from ..loading.single_file import vae as vae_keys
from ..loading.single_file.transformer import V1, V15, module_maps

FP8_STORAGE = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
FLOAT_STORAGE = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def original_state_dict(transformer: torch.nn.Module, fused_qkv: bool = True) -> dict[str, torch.Tensor]:
    """A diffusers HunyuanVideo (1 or 1.5) transformer's weights in Tencent's original naming."""
    generation = V15 if type(transformer).__name__ == "HunyuanVideo15Transformer3DModel" else V1
    state = {k: v.detach() for k, v in transformer.state_dict().items()}
    out = keys.to_original(state, module_maps(generation, dict(transformer.config), fused_qkv))
    return out


def _fp8_matrix(key: str, tensor: torch.Tensor) -> bool:
    return key.endswith(".weight") and tensor.ndim >= 2


def storage_state_dict(original: dict, storage: str) -> dict[str, torch.Tensor]:
    """`original` as a file of that storage: bf16/fp16/fp32; fp8_e4m3fn/fp8_e5m2 (matrices in fp8, the rest
    bf16, as kijai's files); scaled_fp8 (ComfyUI's layout: every Linear weight fp8 with a per-tensor scale)."""
    if storage in FLOAT_STORAGE:
        return {k: v.to(FLOAT_STORAGE[storage]).contiguous() for k, v in original.items()}
    if storage in FP8_STORAGE:
        return {k: (v.to(FP8_STORAGE[storage]) if _fp8_matrix(k, v) else v.to(torch.bfloat16)).contiguous()
                for k, v in original.items()}
    if storage == "scaled_fp8":
        fp8 = torch.float8_e4m3fn
        out = {"scaled_fp8": torch.empty(0, dtype=fp8)}
        for key, value in original.items():
            if key.endswith(".weight") and value.ndim == 2:
                scale = (value.float().abs().max() / torch.finfo(fp8).max).clamp(min=1e-12)
                out[key] = (value.float() / scale).to(fp8)
                out[key[: -len("weight")] + "scale_weight"] = scale.reshape(())
            else:
                out[key] = value.to(torch.bfloat16).contiguous()
        return out
    raise ValueError(f"unknown storage {storage!r}")


def dequantized(file_tensors: dict, compute_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """What a loader should compute with: each tensor of a written file in `compute_dtype`, scales applied."""
    out = {}
    for key, value in file_tensors.items():
        if key == "scaled_fp8" or key.endswith(".scale_weight"):
            continue
        scale = file_tensors.get(key[: -len("weight")] + "scale_weight") if key.endswith(".weight") else None
        out[key] = (value.float() * scale).to(compute_dtype) if scale is not None else value.to(compute_dtype)
    return out


_COMFY_INTERNAL = [("txt_in.t_embedder.mlp.0.", "txt_in.t_embedder.in_layer."),
                   ("txt_in.t_embedder.mlp.2.", "txt_in.t_embedder.out_layer."),
                   ("txt_in.c_embedder.linear_1.", "txt_in.c_embedder.in_layer."),
                   ("txt_in.c_embedder.linear_2.", "txt_in.c_embedder.out_layer."),
                   ("_mod.linear.", "_mod.lin."), ("_attn_qkv.", "_attn.qkv."), ("mlp.fc1.", "mlp.0."),
                   ("mlp.fc2.", "mlp.2."), ("_attn_q_norm.weight", "_attn.norm.query_norm.weight"),
                   ("_attn_k_norm.weight", "_attn.norm.key_norm.weight"), (".q_norm.weight", ".norm.query_norm.weight"),
                   (".k_norm.weight", ".norm.key_norm.weight"), ("_attn_proj.", "_attn.proj."),
                   (".modulation.linear.", ".modulation.lin."), ("_in.mlp.2.", "_in.out_layer."),
                   ("_in.mlp.0.", "_in.in_layer.")]


def comfy_internal_names(original: dict) -> dict:
    """Original names as ComfyUI's model object names them (comfy/supported_models.py, HunyuanVideo
    process_unet_state_dict), for files saved from inside ComfyUI."""
    out = {}
    for key, value in original.items():
        for old, new in _COMFY_INTERNAL:
            key = key.replace(old, new)
        out[key] = value
    return out


def write_transformer(transformer: torch.nn.Module, path: str | Path, storage: str = "bf16", prefix: str = "",
                      comfy_internal: bool = False, fused_qkv: bool = True) -> dict[str, torch.Tensor]:
    """Writes the transformer as a ComfyUI user's single file; returns the tensors written."""
    original = original_state_dict(transformer, fused_qkv)
    tensors = storage_state_dict(comfy_internal_names(original) if comfy_internal else original, storage)
    save_file({prefix + k: v for k, v in tensors.items()}, str(path))
    return tensors


def write_transformer_gguf(transformer: torch.nn.Module, path: str | Path, quant_type: str = "Q8_0",
                           architecture: str = "hyvid") -> dict[str, str]:
    """Writes a GGUF the way city96's tools do (tools/convert.py ModelHyVid + llama.cpp's patch): original names;
    1-D and small tensors F32; the embedders and the final layer at the base type (BF16); block weights quantized,
    or BF16 where a row does not divide into the quantization's blocks (32 weights for Q8_0/Q5_1/Q4_0). Returns the
    type of each tensor."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    original = original_state_dict(transformer)
    writer = gguf.GGUFWriter(path=None, arch=architecture)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    written = {}
    for key, tensor in original.items():
        if tensor.ndim == 1 or tensor.numel() <= 1024 or tensor.ndim > 4:
            qtype = types.F32
        elif (key.startswith(("txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."))
              or tensor.shape[-1] % gguf.GGML_QUANT_SIZES[types[quant_type]][0]):
            qtype = types.BF16
        else:
            qtype = types[quant_type]
        data = tensor.float().numpy()
        writer.add_tensor(key, data.astype(np.float32) if qtype == types.F32 else gguf.quants.quantize(data, qtype),
                          raw_dtype=qtype)
        written[key] = qtype.name
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def gguf_dequantized(path: str | Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A GGUF's tensors dequantized (by diffusers' own kernels) to `dtype`, in original naming."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    out = {}
    for key, tensor in load_gguf_checkpoint(str(path)).items():
        out[key] = (dequantize_gguf_tensor(tensor) if isinstance(tensor, GGUFParameter) else tensor).to(dtype)
    return out


# VAE and text encoders ------------------------------------------------------------------------------------------

def write_vae(vae: torch.nn.Module, path: str | Path, naming: str = "ldm", prefix: str = "",
              dtype: torch.dtype = torch.bfloat16) -> None:
    """A HunyuanVideo (1 or 1.5) VAE as a single file: diffusers names, or the LDM-style names of ComfyUI's v1
    file and Tencent's 1.5 checkpoint (v1's mid attention as 1x1x1 convolutions)."""
    rules = vae_keys.NAMINGS[type(vae).__name__]
    state = {k: v.detach().to(dtype) for k, v in vae.state_dict().items()}
    if naming == "ldm":
        up_blocks = len(vae.config.block_out_channels)
        state = {rules.rename(k, up_blocks, vae_keys.DIFFUSERS, vae_keys.LDM):
                 (v.reshape(*v.shape, 1, 1, 1) if rules.attention_as_conv and ".attentions.0.to_" in k
                  and k.endswith(".weight") else v)
                 for k, v in state.items()}
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(path))


def write_clip(clip: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """CLIP-L as clip_l.safetensors: `text_model.` names plus the text projection CLIPTextModel does not use."""
    state = {f"text_model.{k}": v.detach().to(dtype).contiguous() for k, v in clip.state_dict().items()}
    hidden = clip.config.hidden_size
    state["text_projection.weight"] = torch.eye(hidden, dtype=dtype)
    save_file(state, str(path))


def write_language_model(model: torch.nn.Module, path: str | Path, storage: str = "fp16") -> dict[str, torch.Tensor]:
    """The Llama (llava_llama3_fp16 / _fp8_scaled) or Qwen2.5-VL (qwen_2.5_vl_7b / _fp8_scaled) as ComfyUI stores
    them: `model.` names, Linear weights fp8 with per-tensor scales and the `scaled_fp8` marker when scaled, and
    for Qwen a stand-in for the vision tower (`visual.`) the text model does not use. Returns the tensors written,
    without the `model.` prefix."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    tensors = storage_state_dict(state, "scaled_fp8" if storage == "scaled_fp8" else storage)
    if storage == "scaled_fp8":  # the embedding stays unscaled, as in ComfyUI's file
        tensors["embed_tokens.weight"] = state["embed_tokens.weight"].to(torch.bfloat16)
        tensors.pop("embed_tokens.scale_weight", None)
    written = {(k if k == "scaled_fp8" else f"model.{k}"): v for k, v in tensors.items()}
    if type(model).__name__ == "Qwen2_5_VLTextModel":
        written["visual.patch_embed.proj.weight"] = torch.zeros(4, 3, 2, 2, 2, dtype=torch.bfloat16)
    save_file(written, str(path))
    return tensors


def write_byt5(encoder: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """The Glyph-ByT5 encoder as byt5_small_glyphxl_fp16: T5 names, the input embedding once (`shared.weight`)."""
    state = {k: v.detach().to(dtype).contiguous() for k, v in encoder.state_dict().items()
             if k != "encoder.embed_tokens.weight"}
    save_file(state, str(path))


def write_siglip(encoder: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """SigLIP's vision tower as clip_vision/sigclip_vision_patch14_384: Hugging Face names under `vision_model.`,
    without the pooling head (which HunyuanVideo 1.5 does not use)."""
    state = {f"vision_model.{k}": v.detach().to(dtype).contiguous() for k, v in encoder.state_dict().items()
             if not k.startswith("head.")}
    save_file(state, str(path))


def write_llava_vision(llava: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """A `LlavaModel`'s vision tower and projector as ComfyUI's clip_vision/llava_llama3_vision: CLIP names under
    `vision_model.`, the projector under `multi_modal_projector.`."""
    state = {k: v.detach().to(dtype).contiguous() for k, v in llava.state_dict().items()
             if k.startswith(("vision_tower.", "multi_modal_projector."))}
    save_file({k.replace("vision_tower.", "vision_model.", 1): v for k, v in state.items()}, str(path))


def quantizable_transformer(like: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A random transformer of `like`'s class that fits the same model folder (text encoders, VAE, rope axes),
    but with 16 heads (160 wide for HunyuanVideo 1, 128 for 1.5): GGUF's Q8_0/Q5_1/Q4_0 blocks need rows that are
    multiples of 32 (the tiny models are 20 and 16 wide)."""
    config = {k: v for k, v in like.config.items() if not k.startswith("_")}
    config.update(num_attention_heads=16)
    torch.manual_seed(seed)
    return type(like)(**config).eval().requires_grad_(False)
