"""A rough upper estimate of the accelerator memory a sampling run needs.

Used to ask a host application (ComfyUI) to make room before sampling. It counts the transformer weights
the offload plan keeps on the device plus an activation allowance proportional to the tokens the
transformer attends over. Weights: all of them for `none`; otherwise the groups hooked on the model itself
(with `block_level`, everything that is not a block: embedders, token refiner, output layers; on the
device for the whole forward) plus the largest other group times the groups in flight (the one computing
and the one being prefetched; one more with `record_stream`, whose freed blocks are reused only once the
compute stream has caught up). The activation allowance is a deliberately generous rule of thumb.
"""

from __future__ import annotations

import torch

from ..loading.model import LoadedPipeline
from ..offload.config import OffloadMode
from ..offload.hooks import offload_hooks
from ..offload.probe import group_bytes
from .sampling import SamplingSettings, guides_some_step, sized_like

ACTIVATION_COPIES = 16  # hidden-state-sized tensors alive at once in a block (MLP expansion, QKV, residuals)


def transformer_device_bytes(model: LoadedPipeline) -> int:
    transformer = model.modules["transformer"]
    config = model.offload_configs["transformer"]
    if config.mode == OffloadMode.NONE:
        return sum(t.numel() * t.element_size() for t in (*transformer.parameters(), *transformer.buffers()))
    groups = {id(hook.group): hook.group for hook in offload_hooks(transformer)}
    resident = {id(hook.group) for hook in offload_hooks(transformer, recurse=False)}
    in_flight = 3 if config.record_stream else 2
    largest_moving = max((group_bytes(group) for key, group in groups.items() if key not in resident), default=0)
    return sum(group_bytes(groups[key]) for key in resident) + in_flight * largest_moving


def sampling_device_bytes(model: LoadedPipeline, settings: SamplingSettings, videos: int,
                          init_latents: torch.Tensor | None = None) -> int:
    """The estimate for sampling `videos` videos (at the size of `init_latents`, when given)."""
    config = model.pipe.transformer.config
    if init_latents is not None:
        settings = sized_like(model, settings, init_latents)
    _, frames, height, width = model.latent.shape(settings.width, settings.height, settings.frames)
    patch = model.latent.patch
    tokens = frames * (height // patch) * (width // patch) + model.family.max_text_tokens
    settings = model.family.resolve(model, settings)
    guided = guides_some_step(model.family.guider(model, settings), settings.steps)
    rows = videos * (2 if guided and settings.batched_cfg else 1)
    hidden = config.num_attention_heads * config.attention_head_dim
    element = torch.finfo(model.dtypes["transformer"]).bits // 8
    return transformer_device_bytes(model) + rows * tokens * hidden * element * ACTIVATION_COPIES
