"""Key-padding masks that broadcast over attention heads, whatever diffusers builds.

diffusers 0.32.0/0.32.1 handed HunyuanVideo's attention a `[B, N, N]` mask; against `[B, heads, N, N]`
scores that lines the batch up with the heads and fails for B > 1 (diffusers #10453) or, worse, runs
wrongly when B equals the head count. The fix lives at one point: an attention processor that reshapes
the mask before diffusers' own processor sees it.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoAttnProcessor2_0,
)


def normalize_key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Returns `mask` shaped to broadcast as `[B, heads, Lq, Lk]`.

    `[B, Lk]` -> `[B, 1, 1, Lk]`; `[B, Lq, Lk]` -> `[B, 1, Lq, Lk]`; 4-D masks pass unchanged.
    """
    if mask is None or mask.ndim == 4:
        return mask
    if mask.ndim == 2:
        return mask[:, None, None, :]
    if mask.ndim == 3:
        return mask.unsqueeze(1)
    raise ValueError(f"An attention mask must have 2, 3 or 4 dimensions, got shape {tuple(mask.shape)}.")


class BatchSafeHunyuanVideoAttnProcessor(HunyuanVideoAttnProcessor2_0):
    """diffusers' HunyuanVideo attention with the mask normalised to broadcast over heads first."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        return super().__call__(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=normalize_key_padding_mask(attention_mask),
            image_rotary_emb=image_rotary_emb,
        )


def install_batch_safe_attention(transformer: torch.nn.Module) -> int:
    """Swaps every HunyuanVideo attention processor of `transformer` for the batch-safe one.

    Returns how many were swapped; processors of other kinds (the token refiner's) are left alone.
    """
    processors = dict(transformer.attn_processors)
    swapped = 0
    for name, processor in processors.items():
        if type(processor) is HunyuanVideoAttnProcessor2_0:
            processors[name] = BatchSafeHunyuanVideoAttnProcessor()
            swapped += 1
    if swapped:
        transformer.set_attn_processor(processors)
    return swapped
