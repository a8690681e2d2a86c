"""A rough upper estimate of the accelerator memory a sampling run needs.

Used to ask a host application (ComfyUI) to make room before sampling. It counts the transformer weights
the offload plan keeps on the device (all of them for `none`, two groups in flight otherwise: the one
computing and the one being prefetched) plus an activation allowance proportional to the tokens the
transformer attends over. The allowance is a deliberately generous rule of thumb, not a measurement.
"""

from __future__ import annotations

import torch

from .decode import check_latents
from .encode import MAX_SEQUENCE_LENGTH
from .loaded_pipeline import LoadedPipeline
from .offload import OffloadMode, offload_hooks
from .sampling import SamplingSettings, latent_shape

ACTIVATION_COPIES = 16  # hidden-state-sized tensors alive at once in a block (MLP expansion, QKV, residuals)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _group_bytes(group) -> int:
    tensors = [t for m in group.modules for t in (*m.parameters(), *m.buffers())]
    return _tensor_bytes([*tensors, *group.parameters, *group.buffers])


def transformer_device_bytes(model: LoadedPipeline) -> int:
    transformer = model.modules["transformer"]
    if model.offload_plan.configs["transformer"].mode == OffloadMode.NONE:
        return _tensor_bytes([*transformer.parameters(), *transformer.buffers()])
    groups = {id(hook.group): hook.group for hook in offload_hooks(transformer)}.values()
    return 2 * max((_group_bytes(group) for group in groups), default=0)


def sampling_device_bytes(model: LoadedPipeline, settings: SamplingSettings, videos: int,
                          init_latents: torch.Tensor | None = None) -> int:
    """The estimate for sampling `videos` videos (at the size of `init_latents`, when given)."""
    config = model.pipe.transformer.config
    if init_latents is not None:
        check_latents(init_latents, config.in_channels)
        settings = settings.sized_like(init_latents)
    _, frames, height, width = latent_shape(model, settings)
    tokens = frames * (height // config.patch_size) * (width // config.patch_size) + MAX_SEQUENCE_LENGTH
    rows = videos * (2 if settings.uses_true_cfg and settings.batched_cfg else 1)
    hidden = config.num_attention_heads * config.attention_head_dim
    element = torch.finfo(model.dtypes["transformer"]).bits // 8
    return transformer_device_bytes(model) + rows * tokens * hidden * element * ACTIVATION_COPIES
