"""The pack's batch-safe attention processors, made to hand Ulysses the key-padding mask in its key order.

Under the plan (`plans.py`) each rank holds `img_r` image tokens and `txt_r` text tokens, and every attention
call joins them as `[img_r, txt_r]`. Ulysses' all-to-all (diffusers 0.42.1, models/attention_dispatch.py:
2566-2571) then lays the keys out rank after rank: `[img_0, txt_0, img_1, txt_1, ...]`. The transformer builds
the mask once, inside `forward`, over the whole `[img, txt]` sequence (HunyuanVideo 1: a `[B, 1, 1, L + T]`
key-padding mask, transformer_hunyuan_video.py:1054-1062; 1.5: the text's `[B, T]` mask, turned into key
padding by the pack's processor). Given unchanged, a mask of the global length is used as given
(attention_dispatch.py:2573) in the wrong order: no error, wrong numbers (0.15 max difference on a tiny model
with diffusers' own processor). So the processors here reorder it: the image part and the text part are cut
in as many equal pieces as there are ranks (the pieces diffusers' sharder cut the tokens into,
hooks/context_parallel.py:269-281) and interleaved. Every rank computes the same global mask from what it
holds: no communication per attention call. Without `_parallel_config` the processors are the batch-safe ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..runtime.attention_mask import (
    BatchSafeHunyuanVideo15AttnProcessor,
    BatchSafeHunyuanVideoAttnProcessor,
    key_padding,
    normalize_key_padding_mask,
    swap_processors,
)


def shards(parallel_config) -> int:
    """How many pieces diffusers' sharder cuts each split sequence into: the Ulysses degree (its flattened
    ring x ulysses mesh, hooks/context_parallel.py:217, with ring 1; the degree Ulysses' all-to-all reads,
    models/attention_dispatch.py:2557)."""
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


class ContextParallelHunyuanVideoAttnProcessor(BatchSafeHunyuanVideoAttnProcessor):
    """HunyuanVideo 1: the transformer's whole-sequence mask, reordered into Ulysses' key order.

    Every HunyuanVideo 1 attention call passes the image and text streams separately (the single blocks too,
    transformer_hunyuan_video.py:567-572), so the local sizes are those of the two arguments."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        attention_mask = normalize_key_padding_mask(attention_mask)
        if self._parallel_config is not None and attention_mask is not None:
            attention_mask = key_order_mask(attention_mask, hidden_states.shape[1], encoder_hidden_states.shape[1],
                                            shards(self._parallel_config))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)


class ContextParallelHunyuanVideo15AttnProcessor(BatchSafeHunyuanVideo15AttnProcessor):
    """HunyuanVideo 1.5: the batch-safe key-padding mask, built over the whole sequence and reordered.

    The blocks get the text side's whole `[B, T]` mask (it is not split), while this call's keys are the
    local `[img_r, txt_r]`: `keys - T / world` image tokens are local."""

    def key_padding_mask(self, attention_mask: torch.Tensor, keys: int) -> torch.Tensor:
        if self._parallel_config is None:
            return super().key_padding_mask(attention_mask, keys)
        world = shards(self._parallel_config)
        text = key_padding(attention_mask)
        local_text = text.shape[1] // world
        local_image = keys - local_text
        whole = F.pad(text, (local_image * world, 0), value=True)[:, None, None, :]
        return key_order_mask(whole, local_image, local_text, world)


CONTEXT_PARALLEL_PROCESSORS = {
    BatchSafeHunyuanVideoAttnProcessor: ContextParallelHunyuanVideoAttnProcessor,
    BatchSafeHunyuanVideo15AttnProcessor: ContextParallelHunyuanVideo15AttnProcessor,
}


def install_context_parallel_attention(transformer: torch.nn.Module) -> int:
    """Swaps the pack's batch-safe processors (installed by every family when it loads) for the
    context-parallel ones, before `enable_parallelism` hands them its config. Returns how many the transformer
    has; a transformer with none would run Ulysses with the wrong mask, so that is refused."""
    swap_processors(transformer, CONTEXT_PARALLEL_PROCESSORS)
    kinds = tuple(CONTEXT_PARALLEL_PROCESSORS.values())
    installed = sum(isinstance(processor, kinds) for processor in transformer.attn_processors.values())
    if not installed:
        raise RuntimeError(
            f"{type(transformer).__name__} has none of the pack's batch-safe attention processors to make "
            "context-parallel (the family's prepare_pipeline installs them)."
        )
    return installed
