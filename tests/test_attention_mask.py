"""The HunyuanVideo attention gets a mask that broadcasts over heads, whatever shape it is handed."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoAttnProcessor2_0,
    HunyuanVideoTransformerBlock,
)

from hunyuan_core.runtime.attention_mask import (
    BatchSafeHunyuanVideoAttnProcessor,
    install_batch_safe_attention,
    normalize_key_padding_mask,
)

LATENT_TOKENS, TEXT_TOKENS = 6, 5
VALID_TEXT = [2, 5]  # the two rows of the batch have different prompt lengths
N = LATENT_TOKENS + TEXT_TOKENS


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((2, N), (2, 1, 1, N)), ((2, N, N), (2, 1, N, N)), ((2, 1, N, N), (2, 1, N, N)), ((2, 1, 1, N), (2, 1, 1, N))],
)
def test_shapes_are_normalised_to_broadcast_over_heads(shape, expected):
    assert normalize_key_padding_mask(torch.ones(shape, dtype=torch.bool)).shape == expected


def test_key_padding_semantics_are_kept():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert torch.equal(normalize_key_padding_mask(mask)[:, 0, 0], mask)
    square = mask[:, None, :] & mask[:, :, None]
    assert torch.equal(normalize_key_padding_mask(square)[:, 0], square)


def test_other_ranks_are_refused():
    with pytest.raises(ValueError, match=r"must have 2, 3 or 4 dimensions, got shape \(11,\)"):
        normalize_key_padding_mask(torch.ones(N, dtype=torch.bool))


def key_padding(batch_valid):
    valid = torch.tensor([LATENT_TOKENS + v for v in batch_valid])
    return torch.arange(N)[None, :] < valid[:, None]  # [B, N]


def square_mask_of_diffusers_0_32(batch_valid):
    """The [B, N, N] mask diffusers 0.32.0/0.32.1 built (diffusers #10453)."""
    keys = key_padding(batch_valid)
    return keys[:, None, :] & keys[:, :, None]


@pytest.fixture
def attention_inputs():
    torch.manual_seed(0)
    block = HunyuanVideoTransformerBlock(num_attention_heads=3, attention_head_dim=4, mlp_ratio=2.0).eval()
    hidden = torch.randn(2, LATENT_TOKENS, 12)
    text = torch.randn(2, TEXT_TOKENS, 12)
    return block.attn, hidden, text


def run(processor, attention_inputs, mask):
    attn, hidden, text = attention_inputs
    with torch.no_grad():
        return processor(attn, hidden, encoder_hidden_states=text, attention_mask=mask)


def test_stock_processor_breaks_on_the_batched_square_mask(attention_inputs):
    with pytest.raises(RuntimeError, match=r"must match the (existing size|size of tensor b)"):
        run(HunyuanVideoAttnProcessor2_0(), attention_inputs, square_mask_of_diffusers_0_32(VALID_TEXT))


def test_batch_safe_processor_handles_every_mask_shape(attention_inputs):
    reference = run(HunyuanVideoAttnProcessor2_0(), attention_inputs, key_padding(VALID_TEXT)[:, None, None, :])
    processor = BatchSafeHunyuanVideoAttnProcessor()
    for mask in (key_padding(VALID_TEXT), key_padding(VALID_TEXT)[:, None, None, :]):
        out = run(processor, attention_inputs, mask)
        assert all(torch.equal(a, b) for a, b in zip(out, reference))
    # The square mask also masks padded queries; the latent rows and valid text rows must agree.
    latents, text = run(processor, attention_inputs, square_mask_of_diffusers_0_32(VALID_TEXT))
    torch.testing.assert_close(latents, reference[0], rtol=0, atol=1e-6)
    for row, valid in enumerate(VALID_TEXT):
        torch.testing.assert_close(text[row, :valid], reference[1][row, :valid], rtol=0, atol=1e-6)


def test_batched_rows_match_rows_run_alone(attention_inputs):
    attn, hidden, text = attention_inputs
    processor = BatchSafeHunyuanVideoAttnProcessor()
    batched = run(processor, attention_inputs, square_mask_of_diffusers_0_32(VALID_TEXT))
    for row, valid in enumerate(VALID_TEXT):
        alone_inputs = (attn, hidden[row : row + 1], text[row : row + 1])
        alone = run(processor, alone_inputs, square_mask_of_diffusers_0_32([valid]))
        torch.testing.assert_close(batched[0][row], alone[0][0], rtol=0, atol=1e-6)


def test_loader_installs_the_processor_on_every_hunyuan_attention(shared_model):
    processors = shared_model.modules["transformer"].attn_processors
    hunyuan = [p for p in processors.values() if isinstance(p, HunyuanVideoAttnProcessor2_0)]
    assert hunyuan and all(isinstance(p, BatchSafeHunyuanVideoAttnProcessor) for p in hunyuan)
    assert install_batch_safe_attention(shared_model.modules["transformer"]) == 0


@pytest.fixture
def attention_inputs_15():
    from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15TransformerBlock

    torch.manual_seed(0)
    block = HunyuanVideo15TransformerBlock(num_attention_heads=3, attention_head_dim=4, mlp_ratio=2.0).eval()
    return block.attn, torch.randn(2, LATENT_TOKENS, 12), torch.randn(2, TEXT_TOKENS, 12)


def text_key_padding(batch_valid):
    return torch.arange(TEXT_TOKENS)[None, :] < torch.tensor(batch_valid)[:, None]  # [B, text], as 1.5 passes it


def test_hunyuan_video15_key_padding_mask_matches_diffusers_pair_mask(attention_inputs_15):
    """diffusers builds a [B, 1, N, N] pair mask per call (GBs at real sizes); the pack passes [B, 1, 1, N]:
    the video tokens and the valid text tokens come out the same, for a batch of different text lengths and
    for any mask shape it is handed ([B, L], [B, L, L], [B, 1, L, L])."""
    from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15AttnProcessor2_0

    from hunyuan_core.runtime.attention_mask import BatchSafeHunyuanVideo15AttnProcessor

    keys = text_key_padding(VALID_TEXT)
    reference = run(HunyuanVideo15AttnProcessor2_0(), attention_inputs_15, keys)
    pair = keys[:, None, :] & keys[:, :, None]
    for mask in (keys, pair, pair[:, None]):
        latents, text = run(BatchSafeHunyuanVideo15AttnProcessor(), attention_inputs_15, mask)
        torch.testing.assert_close(latents, reference[0], rtol=0, atol=1e-6)
        for row, valid in enumerate(VALID_TEXT):
            torch.testing.assert_close(text[row, :valid], reference[1][row, :valid], rtol=0, atol=1e-6)


def test_loader_installs_the_15_processor(shared_family_model):
    from hunyuan_core.runtime.attention_mask import BatchSafeHunyuanVideo15AttnProcessor

    processors = shared_family_model("hunyuan-video-1.5").modules["transformer"].attn_processors
    blocks = [p for name, p in processors.items() if name.startswith("transformer_blocks")]
    assert blocks and all(isinstance(p, BatchSafeHunyuanVideo15AttnProcessor) for p in blocks)
