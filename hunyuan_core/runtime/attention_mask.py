"""Key-padding masks that broadcast over attention heads, whatever diffusers builds: a guard at one point.

diffusers 0.32.0/0.32.1 handed HunyuanVideo's attention a `[B, N, N]` mask; against `[B, heads, N, N]`
scores that lines the batch up with the heads and fails for B > 1 (diffusers #10453) or, worse, runs
wrongly when B equals the head count. diffusers >= 0.36 no longer builds such masks for HunyuanVideo 1, but
the guard stays: it is the pack's promise that any mask shape works with batches, for every family.
The fix lives in attention processors that reshape the mask before diffusers' attention sees it.

HunyuanVideo 1.5's processor (diffusers 0.42.1) turns the text's key-padding mask into a `[B, 1, N, N]`
pair mask on every call: 2.4 GB at 480p and 121 frames, 12 GB at 720p, per video, in each of 54 blocks.
The pack's processor passes the key-padding mask `[B, 1, 1, N]` instead. Results are identical: a padded
text token is never a key, so the valid tokens never read what padded queries computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoAttnProcessor2_0,
)
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15AttnProcessor2_0,
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


def key_padding(mask: torch.Tensor) -> torch.Tensor:
    """The `[B, Lk]` key validity of a text mask given as `[B, Lk]`, `[B, Lq, Lk]` or `[B, 1, Lq, Lk]`."""
    mask = mask.bool()
    if mask.ndim == 4:
        mask = mask.any(dim=1)
    if mask.ndim == 3:
        mask = mask.any(dim=1)
    if mask.ndim != 2:
        raise ValueError(f"An attention mask must have 2, 3 or 4 dimensions, got shape {tuple(mask.shape)}.")
    return mask


class BatchSafeHunyuanVideo15AttnProcessor(HunyuanVideo15AttnProcessor2_0):
    """diffusers' HunyuanVideo 1.5 attention (0.42.1, `HunyuanVideo15AttnProcessor2_0.__call__`) with a
    `[B, 1, 1, N]` key-padding mask in place of the `[B, 1, N, N]` pair mask; everything else as diffusers'."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(2, (attn.heads, -1)))
        key = attn.norm_k(attn.to_k(hidden_states).unflatten(2, (attn.heads, -1)))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        if encoder_hidden_states is not None:
            encoder_query = attn.add_q_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            encoder_key = attn.add_k_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            encoder_value = attn.add_v_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            if attn.norm_added_q is not None:
                encoder_query = attn.norm_added_q(encoder_query)
            if attn.norm_added_k is not None:
                encoder_key = attn.norm_added_k(encoder_key)
            query = torch.cat([query, encoder_query], dim=1)
            key = torch.cat([key, encoder_key], dim=1)
            value = torch.cat([value, encoder_value], dim=1)

        if attention_mask is not None:
            attention_mask = self.key_padding_mask(attention_mask, query.shape[1])
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is not None:
            text_length = encoder_hidden_states.shape[1]
            hidden_states, encoder_hidden_states = hidden_states[:, :-text_length], hidden_states[:, -text_length:]
            if getattr(attn, "to_out", None) is not None:
                hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return hidden_states, encoder_hidden_states

    def key_padding_mask(self, attention_mask: torch.Tensor, keys: int) -> torch.Tensor:
        """The `[B, 1, 1, keys]` mask of this call's keys: the image tokens (all valid), then the text's key
        padding. (Context parallelism overrides it: its keys arrive in another order.)"""
        text = key_padding(attention_mask)
        return F.pad(text, (keys - text.shape[1], 0), value=True)[:, None, None, :]


BATCH_SAFE_PROCESSORS = {
    HunyuanVideoAttnProcessor2_0: BatchSafeHunyuanVideoAttnProcessor,
    HunyuanVideo15AttnProcessor2_0: BatchSafeHunyuanVideo15AttnProcessor,
}


def swap_processors(transformer: torch.nn.Module, replacements: dict[type, type]) -> int:
    """Gives every attention processor of `transformer` whose type is a key of `replacements` a new processor
    of the value's type; returns how many were swapped."""
    processors = dict(transformer.attn_processors)
    swapped = 0
    for name, processor in processors.items():
        replacement = replacements.get(type(processor))
        if replacement is not None:
            processors[name] = replacement()
            swapped += 1
    if swapped:
        transformer.set_attn_processor(processors)
    return swapped


def install_batch_safe_attention(transformer: torch.nn.Module) -> int:
    """Swaps every HunyuanVideo (1 or 1.5) attention processor of `transformer` for its batch-safe one.

    Returns how many were swapped; processors of other kinds (the token refiner's) are left alone.
    """
    return swap_processors(transformer, BATCH_SAFE_PROCESSORS)
