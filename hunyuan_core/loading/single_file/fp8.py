"""fp8 weights from files, kept in fp8 and computed in the compute dtype, exactly as the file says.

diffusers' layerwise casting (`apply_layerwise_casting`, diffusers 0.42.1 hooks/layerwise_casting.py:54-72) casts
whole modules and skips layers by name: it would store a file's bf16 biases in fp8 (lossy) and keep the fp8
modulation layers (`norm1.linear`, skipped by its "norm" pattern) in bf16 (twice the bytes). `FileDtypeCasting`
instead casts exactly the parameters that are fp8 in the file, each on its own, and multiplies in the per-tensor
scale of ComfyUI's "scaled fp8" files (`weight = fp8 * scale_weight`, rounded once to the compute dtype).

It is registered under diffusers' own hook name, so `model.dtype` reports the compute dtype
(diffusers 0.42.1 models/modeling_utils.py:172-178). It must be in place before group offloading: then the
offload hooks are the outer ones and every onload moves fp8 bytes (the other order upcasts on the host, and
with disk offloading the files would hold the upcast copies).
"""

from __future__ import annotations

import json

import torch
from diffusers.hooks import HookRegistry, ModelHook

from ...errors import UserInputError
from .files import FP8_DTYPES, FileHeader

HOOK_NAME = "layerwise_casting"  # diffusers' name: ModelMixin.dtype reads the compute dtype from it
SCALE_BUFFER = "hyvd_weight_scale"  # per-tensor scale of a scaled-fp8 layer, moved with the layer by offloading

_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")  # ComfyUI's old and current names
_INPUT_SCALE_SUFFIXES = (".scale_input", ".input_scale")  # for fp8 x fp8 matmuls; unused in a bf16 compute path
_EXACT_FORMATS = ("float8_e4m3fn", "float8_e5m2")


class FileDtypeCastingHook(ModelHook):
    """Casts named fp8 parameters of one module to the compute dtype for its forward (times the layer's scale
    for scaled fp8) and puts the stored tensors back afterwards, also when the forward fails (an out-of-memory
    error, a cancel): nothing is rounded or scaled twice, and a model that stays loaded after a failure keeps
    its fp8 weights."""

    _is_stateful = False

    def __init__(self, names, storage_dtype: torch.dtype, compute_dtype: torch.dtype, scaled: bool):
        super().__init__()
        self.names, self.storage_dtype = tuple(names), storage_dtype
        self.compute_dtype, self.scaled = compute_dtype, scaled

    def new_forward(self, module, *args, **kwargs):
        stored = {}
        try:
            for name in self.names:
                parameter = getattr(module, name)
                stored[name] = parameter.data
                if self.scaled and name == "weight":
                    scale = getattr(module, SCALE_BUFFER)
                    parameter.data = (parameter.data.float() * scale.float()).to(self.compute_dtype)
                else:
                    parameter.data = parameter.data.to(self.compute_dtype)
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            for name, tensor in stored.items():
                getattr(module, name).data = tensor


def apply_file_dtype_casting(model: torch.nn.Module, fp8_names: set[str], scales: dict[str, torch.Tensor],
                             compute_dtype: torch.dtype) -> int:
    """Hooks every module holding a parameter named in `fp8_names` (its full name); `scales` maps module names
    to their per-tensor weight scale (scaled fp8). Returns how many modules were hooked."""
    hooked = 0
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        names = [n for n, _ in module.named_parameters(recurse=False) if prefix + n in fp8_names]
        if not names:
            continue
        scale = scales.get(module_name)
        if scale is not None:
            module.register_buffer(SCALE_BUFFER, scale.detach().float().reshape(()).clone(), persistent=False)
        registry = HookRegistry.check_if_exists_or_initialize(module)
        storage = next(p.dtype for n, p in module.named_parameters(recurse=False) if n in names)
        registry.register_hook(FileDtypeCastingHook(names, storage, compute_dtype, scale is not None), HOOK_NAME)
        hooked += 1
    return hooked


def split_scales(tensors: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """Separates ComfyUI's scaled-fp8 entries from the weights: (weights, {layer: per-tensor scale}).

    Old layout: a `scaled_fp8` marker and `<layer>.scale_weight`; current one: `<layer>.weight_scale` with
    `<layer>.comfy_quant` naming the format. Input scales only matter for fp8 matmuls and are dropped. Anything
    but a per-tensor float8 scale is refused: it cannot be applied exactly here.
    """
    weights, scales = {}, {}
    for key, tensor in tensors.items():
        if key == "scaled_fp8" or key.endswith(_INPUT_SCALE_SUFFIXES):
            continue
        if key.endswith(".comfy_quant"):
            _check_quant_format(key, bytes(tensor.tolist()).decode("utf-8", "replace"))
            continue
        suffix = next((s for s in _SCALE_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            weights[key] = tensor
            continue
        layer = key[: -len(suffix)]
        if tensor.numel() != 1:
            raise UserInputError(
                f"{layer} has a scale of shape {tuple(tensor.shape)} (per channel or per block); only per-tensor "
                "scaled fp8 can be applied exactly. Use the bf16/fp16 file or a GGUF instead."
            )
        scales[layer] = tensor.float().reshape(())
    for layer in scales:
        weight = weights.get(f"{layer}.weight")
        if weight is None or weight.dtype not in FP8_DTYPES:
            raise UserInputError(f"{layer} has a weight scale but no fp8 weight: the file is not a scaled fp8 file "
                                 "this pack understands. Use the bf16/fp16 file instead.")
    return weights, scales


def _check_quant_format(key: str, text: str) -> None:
    try:
        quant_format = json.loads(text).get("format")
    except (ValueError, AttributeError):
        quant_format = text
    if quant_format not in _EXACT_FORMATS:
        raise UserInputError(
            f"{key[: -len('.comfy_quant')]} is stored as {quant_format!r}; this pack applies only per-tensor "
            f"float8 ({', '.join(_EXACT_FORMATS)}) scaled files. Use the bf16/fp16 file or a GGUF instead."
        )


def check_header_quantization(header: FileHeader) -> None:
    """Refuses, from the header alone, ComfyUI quantization formats that cannot be applied exactly."""
    metadata = header.metadata.get("_quantization_metadata")
    if metadata:
        try:
            layers = json.loads(metadata).get("layers", {})
        except (ValueError, AttributeError):
            layers = {}
        for layer, info in layers.items():
            _check_quant_format(f"{layer}.comfy_quant", json.dumps(info))


def check_fp8_support(dtypes, compute_dtype: torch.dtype, device: torch.device) -> None:
    """Refuses fp8 storage where this torch or device cannot hold it, before any weight is read."""
    for dtype in dtypes:
        try:
            torch.zeros(2, dtype=dtype, device=device).to(compute_dtype)
        except (RuntimeError, TypeError, NotImplementedError) as error:
            raise UserInputError(
                f"This device ({device}) cannot hold {str(dtype).replace('torch.', '')} weights ({error}). Use the "
                "bf16/fp16 file, or a GGUF, of this model instead."
            ) from error
