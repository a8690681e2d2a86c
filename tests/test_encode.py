"""Prompt encoding: batches equal single prompts, CLIP gets its own prompt, negatives broadcast."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPTS

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.encode import encode_prompts


def test_shapes_and_masks(shared_model, conditioning):
    positive = conditioning.positive
    assert positive.embeds.shape[:2] == positive.mask.shape == (2, 256)
    assert positive.pooled.shape == (2, 8)
    lengths = positive.mask.sum(dim=1)
    assert lengths[0] < lengths[1], "the longer prompt keeps more tokens"
    assert positive.embeds.device.type == "cpu"


def test_batch_equals_each_prompt_alone(shared_model, conditioning):
    for row, prompt in enumerate(PROMPTS):
        alone = encode_prompts(shared_model, prompt).positive
        assert torch.equal(alone.mask[0], conditioning.positive.mask[row])
        valid = int(alone.mask[0].sum())
        torch.testing.assert_close(alone.embeds[0, :valid], conditioning.positive.embeds[row, :valid])
        torch.testing.assert_close(alone.pooled[0], conditioning.positive.pooled[row])


def test_clip_prompt_reaches_clip_only(shared_model):
    plain = encode_prompts(shared_model, "a cat walks").positive
    separate = encode_prompts(shared_model, "a cat walks", clip_prompts="oil painting").positive
    clip_as_prompt = encode_prompts(shared_model, "oil painting").positive
    assert torch.equal(separate.embeds, plain.embeds)
    assert not torch.allclose(separate.pooled, plain.pooled)
    assert torch.equal(separate.pooled, clip_as_prompt.pooled)


def test_one_negative_prompt_serves_every_prompt(shared_model, conditioning):
    assert conditioning.negative is not None and len(conditioning.negative) == 2
    assert torch.equal(conditioning.negative.embeds[0], conditioning.negative.embeds[1])


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
    short = type(positive)(positive.embeds[:, :100], positive.mask[:, :100], positive.pooled)
    both = positive.concat(short)
    assert both.embeds.shape == (4, 256, positive.embeds.shape[2]) and both.mask.shape == (4, 256)
    assert torch.equal(both.mask[2:, 100:], torch.zeros(2, 156, dtype=both.mask.dtype))
    assert torch.equal(both.embeds[:2], positive.embeds) and torch.equal(both.pooled[2:], positive.pooled)
