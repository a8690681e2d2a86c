"""Prompt encoding: batches equal single prompts, CLIP gets its own prompt, negatives broadcast."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPTS

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.encode import encode_prompts

EMBEDS, MASK, POOLED = "encoder_hidden_states", "encoder_attention_mask", "pooled_projections"


def test_shapes_and_masks(shared_model, conditioning):
    positive = conditioning.positive
    assert positive[EMBEDS].shape[:2] == positive[MASK].shape == (2, 256)
    assert positive[POOLED].shape == (2, 8)
    lengths = positive[MASK].sum(dim=1)
    assert lengths[0] < lengths[1], "the longer prompt keeps more tokens"
    assert positive[EMBEDS].device.type == "cpu"


def test_batch_equals_each_prompt_alone(shared_model, conditioning):
    for row, prompt in enumerate(PROMPTS):
        alone = encode_prompts(shared_model, prompt).positive
        assert torch.equal(alone[MASK][0], conditioning.positive[MASK][row])
        valid = int(alone[MASK][0].sum())
        torch.testing.assert_close(alone[EMBEDS][0, :valid], conditioning.positive[EMBEDS][row, :valid])
        torch.testing.assert_close(alone[POOLED][0], conditioning.positive[POOLED][row])


def test_clip_prompt_reaches_clip_only(shared_model):
    plain = encode_prompts(shared_model, "a cat walks").positive
    separate = encode_prompts(shared_model, "a cat walks", clip_prompts="oil painting").positive
    clip_as_prompt = encode_prompts(shared_model, "oil painting").positive
    assert torch.equal(separate[EMBEDS], plain[EMBEDS])
    assert not torch.allclose(separate[POOLED], plain[POOLED])
    assert torch.equal(separate[POOLED], clip_as_prompt[POOLED])


def test_one_negative_prompt_serves_every_prompt(shared_model, conditioning):
    assert conditioning.negative is not None and len(conditioning.negative) == 2
    assert torch.equal(conditioning.negative[EMBEDS][0], conditioning.negative[EMBEDS][1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": []}, "The prompt list is empty; give at least one prompt."),
        ({"prompts": ["a", "b"], "clip_prompts": ["x", "y", "z"]}, "Give one CLIP prompt or one per prompt (2), not 3."),
        ({"prompts": ["a"], "negative_prompts": ["x", "y"]}, "Give one negative prompt or one per prompt (1), not 2."),
        ({"prompts": ["a", 3]}, "Every prompt must be text."),
    ],
)
def test_bad_prompt_lists(shared_model, kwargs, message):
    with pytest.raises(UserInputError) as error:
        encode_prompts(shared_model, **kwargs)
    assert str(error.value) == message


def test_concat_pads_the_shorter_text(conditioning):
    positive = conditioning.positive
    short = type(positive)({EMBEDS: positive[EMBEDS][:, :100], MASK: positive[MASK][:, :100], POOLED: positive[POOLED]},
                           positive.masks)
    both = positive.concat(short)
    assert both[EMBEDS].shape == (4, 256, positive[EMBEDS].shape[2]) and both[MASK].shape == (4, 256)
    assert torch.equal(both[MASK][2:, 100:], torch.zeros(2, 156, dtype=both[MASK].dtype))
    assert torch.equal(both[EMBEDS][2:, :100], positive[EMBEDS][:, :100])
    assert torch.equal(both[EMBEDS][:2], positive[EMBEDS]) and torch.equal(both[POOLED][2:], positive[POOLED])
