"""Start images: one per prompt or one for all, any size (fitted to the video), clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from hunyuan_core.errors import UserInputError
from hunyuan_core.runtime.encode import encode_prompts

IMAGE = torch.rand(1, 40, 56, 3)


@pytest.mark.parametrize(
    ("name", "images", "message"),
    [
        ("hunyuan-video-1.5-i2v", None,
         "HunyuanVideo 1.5 image-to-video needs a start image: connect an IMAGE to the text encode node's image "
         "input (on the command line: --image PATH)."),
        ("hunyuan-video-i2v", torch.rand(3, 40, 56, 3),
         "Give one start image for every prompt or one per prompt (2), not 3."),
        ("hunyuan-video-i2v", torch.rand(1, 8, 56, 3),
         "A start image is 56x8 pixels; use one at least 16 on each side."),
        ("hunyuan-video-1.5-i2v", torch.rand(1, 40, 56),
         "Expected start images shaped [images, height, width, 3] or [height, width, 3], got (1, 40, 56)."),
        ("hunyuan-video-1.5", IMAGE,
         "HunyuanVideo 1.5 text-to-video makes videos from text only; disconnect the image, or load an "
         "image-to-video model."),
    ],
)
def test_bad_start_images_are_explained(shared_family_model, name, images, message):
    with pytest.raises(UserInputError) as error:
        encode_prompts(shared_family_model(name), ["a cat", "a dog"], images=images)
    assert str(error.value) == message


def test_images_of_different_sizes_and_an_alpha_channel(shared_family_model):
    model = shared_family_model("hunyuan-video-1.5-i2v")
    images = [torch.rand(40, 56, 4), torch.rand(64, 32, 3)]
    conditioning = encode_prompts(model, ["a cat", "a dog"], images=images)
    assert [tuple(image.shape) for image in conditioning.images] == [(40, 56, 3), (64, 32, 3)]


def test_prompts_may_not_hold_the_template_tokens(shared_family_model):
    with pytest.raises(UserInputError) as error:
        encode_prompts(shared_family_model("hunyuan-video-i2v"), "a cat <image>", images=IMAGE)
    assert str(error.value) == (
        "A prompt contains <image>, which the image-to-video text encoder reserves for its template. "
        "Remove it from the prompt."
    )


def test_a_negative_prompt_sees_a_black_image(shared_family_model):
    """As diffusers and Tencent encode it: the negative rows do not depend on the start image."""
    model = shared_family_model("hunyuan-video-i2v")
    first = encode_prompts(model, "a cat", negative_prompts="ugly", images=IMAGE).negative
    second = encode_prompts(model, "a cat", negative_prompts="ugly", images=torch.rand(1, 40, 56, 3)).negative
    assert all(torch.equal(first[name], second[name]) for name in first.tensors)
