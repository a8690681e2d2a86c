"""Context-parallel plans, as data: one per transformer class the pack runs.

A plan says where diffusers' context-parallel hooks (`ModelMixin.enable_parallelism(config, cp_plan=...)`,
diffusers 0.42.1) split the sequence and where they gather it, plus what the pack does around them: which
inputs make up the text side of the joint attention (padded with masked tokens to a length every rank can
share) and which blocks count leading image tokens by position (HunyuanVideo-I2V's start frame).

Both HunyuanVideo transformers are split at the same three points (diffusers has no plan for either):

- `rope` returns `(cos, sin)`, each `[L, head_dim]` for the L image tokens in patch order `(t, h, w)`, the
  order `x_embedder` flattens the latents in: split each along dim 0 as it leaves the module (Wan's pattern),
  so chunk i of the rotary embedding belongs to chunk i of the tokens.
- The first block's `hidden_states [B, L, C]` and `encoder_hidden_states [B, T, C]`: split both along the
  sequence where they enter the block (QwenImage's pattern), not at the model's entry. Everything before the
  first block needs whole sequences: the token refiner mean-pools the prompt and runs its own self-attention
  through a processor without `_parallel_config`, and HunyuanVideo 1.5 joins its Qwen, ByT5 and image tokens
  and reorders each row (valid tokens first). After the first block both streams flow from block to block
  already split (HunyuanVideo 1's single blocks join `[img_r, txt_r]` locally).
- `proj_out` returns image tokens only: gather them along dim 1 (the unpatchify reshape after it takes the
  full sizes from the input's shape).

The key-padding mask is not split here: the transformer builds it inside `forward` over the whole sequence
and hands the same tensor to every block, and a rank's keys are two separate slices of it. The pack's
batch-safe processors (`runtime/attention_mask.py`) reorder it into the order Ulysses leaves the keys in.
Not split (replicated on every rank): timestep, guidance, pooled projections, the text mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from ..errors import UserInputError

_ROPE = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)
_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
_SPLIT_PLAN = {
    "rope": {0: _ROPE, 1: _ROPE},
    "transformer_blocks.0": {"hidden_states": _TOKENS, "encoder_hidden_states": _TOKENS},
    "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
}


@dataclass(frozen=True)
class TransformerPlan:
    transformer_class: str
    cp_plan: Mapping  # diffusers' `_cp_plan` format
    text_inputs: tuple[str, ...]  # the transformer inputs whose tokens make up the text side, `[B, T_i, ...]`
    padded_text: tuple[str, str]  # the input (and its mask) padded with masked tokens to a shareable length
    # Under a config `(key, value)`: module path (`"blocks.*"` for every block) -> the forward parameter that
    # counts the leading image tokens a block treats apart; each rank gets the count of its own share of them.
    leading_tokens: Mapping[tuple[str, object], Mapping[str, str]] = field(default_factory=dict)

    def leading_token_counts(self, config: Mapping) -> Mapping[str, str]:
        """The modules (and their parameters) that count leading image tokens, for a transformer with `config`."""
        counts: dict[str, str] = {}
        for (key, value), modules in self.leading_tokens.items():
            if config.get(key) == value:
                counts.update(modules)
        return counts


HUNYUAN_VIDEO = TransformerPlan(
    transformer_class="HunyuanVideoTransformer3DModel",
    cp_plan=_SPLIT_PLAN,
    text_inputs=("encoder_hidden_states",),
    padded_text=("encoder_hidden_states", "encoder_attention_mask"),
    leading_tokens={
        # HunyuanVideo-I2V (token replace): `forward` computes `first_frame_num_tokens` from the latents' size
        # (transformer_hunyuan_video.py:1039) and every block modulates the first that many tokens of the
        # sequence it gets with the start frame's embedding (:228-235, :277-284, :713, :802). Split, a rank's
        # sequence starts elsewhere: rank r gets how many of its own tokens belong to the first frame.
        ("image_condition_type", "token_replace"): {
            "transformer_blocks.*": "num_tokens",
            "single_transformer_blocks.*": "num_tokens",
        },
    },
)

HUNYUAN_VIDEO_15 = TransformerPlan(
    transformer_class="HunyuanVideo15Transformer3DModel",
    cp_plan=_SPLIT_PLAN,
    # The text side is joined in forward from the Qwen text, the ByT5 glyph text and the image embedding
    # (transformer_hunyuan_video15.py:684-770): 1000 + 256 + 729 = 1985 tokens for the real models, odd.
    text_inputs=("encoder_hidden_states", "encoder_hidden_states_2", "image_embeds"),
    padded_text=("encoder_hidden_states", "encoder_attention_mask"),
)

PLANS = {plan.transformer_class: plan for plan in (HUNYUAN_VIDEO, HUNYUAN_VIDEO_15)}


def plan_for_class(transformer_class: str) -> TransformerPlan:
    try:
        return PLANS[transformer_class]
    except KeyError:
        raise UserInputError(
            f"Context parallelism has no plan for {transformer_class}; it runs "
            f"{', '.join(PLANS)}."
        ) from None


def plan_for(family) -> TransformerPlan:
    """The plan of a model family's transformer (from its spec: every family has one transformer)."""
    transformer = family.spec.component("transformer")
    return plan_for_class(transformer.class_names[0])
