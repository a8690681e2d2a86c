"""fp8 storage: weights kept in float8 (e4m3fn), each layer cast to the compute dtype as it runs.

diffusers' layerwise casting does it, on Linear/Conv/Embedding layers. Its default skip patterns keep every
layer whose name contains "norm" in the compute dtype, which in HunyuanVideo's blocks means the AdaLN
modulation linears (`norm1.linear`): a third of each block, so an onload would move 67% of the bf16 bytes.
The pack stores those in fp8 too, as ComfyUI's fp8 weights do, and keeps only the embedders, the final norm
and the projections in and out in the compute dtype: block groups move about half the bytes. It must be
enabled before group offloading: offloading with streams snapshots the
weights it moves when it is applied, and leaf-level hooks would upcast on the host before copying; in that
order every onload moves fp8 (the pack only ever re-hooks offloading on top of casting, so the order holds).
The casting hooks cannot be removed (diffusers 0.42.1): turning fp8 off loads the model again.
"""

from __future__ import annotations

import torch

from ..errors import UserInputError
from ..spec import PipelineSpec, Role

STORAGE_DTYPE = torch.float8_e4m3fn
KEEP = ("pos_embed", "patch_embed", "x_embedder", "context_embedder", "image_embedder", "norm_out", "^proj_in$",
        "^proj_out$")
"""Layers (by name) that stay in the compute dtype: embedders, the output norm and projections; norm layers
themselves are never cast (they are not Linear/Conv/Embedding)."""


def fp8_components(spec: PipelineSpec, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The component names `requested` names, by component or by role ("transformer", "text_encoder", ...); a
    role this family has no component of (an image encoder in text-to-video) names none."""
    chosen = []
    for component in spec.components:
        if component.is_module and (component.name in requested or component.role.value in requested):
            chosen.append(component.name)
    unknown = set(requested) - {*spec.module_names, *(role.value for role in Role)}
    if unknown:
        raise UserInputError(
            f"fp8 storage: no component or role named {', '.join(sorted(unknown))}; use "
            f"{', '.join(sorted({*spec.module_names, *(r.value for r in Role)}))}."
        )
    return tuple(chosen)


def store_in_fp8(module: torch.nn.Module) -> None:
    """Casts `module`'s eligible layers to fp8 storage; they compute in the module's current dtype."""
    from diffusers.hooks import apply_layerwise_casting

    compute = next(p.dtype for p in module.parameters() if p.is_floating_point())
    if compute not in (torch.bfloat16, torch.float16, torch.float32):
        raise UserInputError(f"fp8 storage needs weights in bf16, fp16 or fp32; these are {compute}.")
    apply_layerwise_casting(module, STORAGE_DTYPE, compute, skip_modules_pattern=KEEP)
