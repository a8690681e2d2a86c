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

Under context parallelism (`enable_parallelism` gives the processors a `_parallel_config`; the plan is in
`parallel/plans.py`) each rank holds `img_r` image tokens and `txt_r` text tokens, and every attention call
joins them as `[img_r, txt_r]`. Ulysses' all-to-all (diffusers 0.42.1, models/attention_dispatch.py:2566-2571)
then lays the keys out rank after rank: `[img_0, txt_0, img_1, txt_1, ...]`. The transformer builds the mask
once, inside `forward`, over the whole `[img, txt]` sequence (HunyuanVideo 1: a `[B, 1, 1, L + T]` key-padding
mask, transformer_hunyuan_video.py:1054-1062; 1.5: the text's `[B, T]` mask). Given unchanged, a mask of the
global length is used as given (attention_dispatch.py:2573) in the wrong order: no error, wrong numbers (0.15
max difference on a tiny model with diffusers' own processor). So the processors reorder it: the image part
and the text part are cut in as many equal pieces as there are ranks (the pieces diffusers' sharder cut the
tokens into, hooks/context_parallel.py:269-281) and interleaved. Every rank computes the same global mask
from what it holds: no communication per attention call.
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


def ulysses_degree(parallel_config) -> int:
    """How many pieces diffusers' sharder cuts each split sequence into: the Ulysses degree (its flattened
    ring x ulysses mesh, hooks/context_parallel.py:217, with ring 1: the pack refuses ring attention; the
    degree Ulysses' all-to-all reads, models/attention_dispatch.py:2557)."""
    return parallel_config.context_parallel_config.ulysses_degree


def key_order_mask(mask: torch.Tensor, local_image: int, local_text: int, world: int) -> torch.Tensor:
    """The whole sequence's key-padding mask `[B, 1, 1, L + T]` (`[img, txt]`) reordered as Ulysses lays out
    the keys: `[img_0, txt_0, img_1, txt_1, ...]`, each rank holding `local_image` and `local_text` tokens."""
    image, text = local_image * world, local_text * world
    if mask.ndim != 4 or mask.shape[-2] != 1 or mask.shape[-1] != image + text:
        raise RuntimeError(
            f"Context parallelism expected a key-padding mask [B, 1, 1, {image + text}] over the whole sequence "
            f"({world} x {local_image} image + {world} x {local_text} text tokens), got {tuple(mask.shape)}."
        )
    image_parts = mask[..., :image].split(local_image, dim=-1)
    text_parts = mask[..., image:].split(local_text, dim=-1)
    return torch.cat([part for pair in zip(image_parts, text_parts) for part in pair], dim=-1)


class BatchSafeHunyuanVideoAttnProcessor(HunyuanVideoAttnProcessor2_0):
    """diffusers' HunyuanVideo attention with the mask normalised to broadcast over heads first, and under
    context parallelism reordered into Ulysses' key order.

    Every HunyuanVideo 1 attention call passes the image and text streams separately (the single blocks too,
    transformer_hunyuan_video.py:567-572), so a rank's local sizes are those of the two arguments."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        attention_mask = normalize_key_padding_mask(attention_mask)
        if self._parallel_config is not None and attention_mask is not None:
            attention_mask = key_order_mask(attention_mask, hidden_states.shape[1], encoder_hidden_states.shape[1],
                                            ulysses_degree(self._parallel_config))
        return super().__call__(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
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
        padding. Under context parallelism the blocks get the text side's whole `[B, T]` mask (it is not split)
        while this call's keys are the local `[img_r, txt_r]` (`keys - T / world` image tokens): the mask is
        built over the whole sequence and reordered into Ulysses' key order."""
        text = key_padding(attention_mask)
        if self._parallel_config is None:
            return F.pad(text, (keys - text.shape[1], 0), value=True)[:, None, None, :]
        world = ulysses_degree(self._parallel_config)
        local_text = text.shape[1] // world
        local_image = keys - local_text
        whole = F.pad(text, (local_image * world, 0), value=True)[:, None, None, :]
        return key_order_mask(whole, local_image, local_text, world)


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
