"""Random HunyuanVideo 1 image-to-video pipelines (tiny), in both published variants.

- `token_replace` (hunyuanvideo-community/HunyuanVideo-I2V): 16 input channels, guidance embedding; the
  first latent frame is the clean image latent.
- `latent_concat` (HunyuanVideo-I2V-33ch): 33 input channels (noise, image latent, mask), no guidance embedding.

The text encoder is a Llava (a tiny Llama plus a CLIP vision tower of 28-pixel images in 14-pixel patches:
4 image tokens) that sees the start image; its prompt template keeps the real one's structure with a short
instruction, and its token positions are measured with the tiny tokenizer, not copied from the real one.
"""

from __future__ import annotations

import torch

from .building import build_module
from .hunyuan_video import (
    SCALES,
    build_clip,
    build_transformer,
    build_vae,
    llama_config,
)
from .tokenizers import LLAVA_ASSISTANT, clip_tokenizer, llava_llama_tokenizer

IMAGE_SIZE, PATCH_SIZE = 28, 14
VARIANTS = ("token_replace", "latent_concat")

TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def measure_prompt_template(tokenizer, image_tokens: int, template: str = TEMPLATE) -> dict:
    """diffusers' image-to-video template dict with its token positions measured with `tokenizer`: `crop_start`
    (tokens before the prompt), `image_emb_start` (where `<image>` is) and the image's token count."""
    prefix_ids = tokenizer(template.split("{}")[0]).input_ids
    start = prefix_ids.index(tokenizer.convert_tokens_to_ids("<image>"))
    return {"template": template, "crop_start": len(prefix_ids), "image_emb_start": start,
            "image_emb_end": start + image_tokens, "image_emb_len": image_tokens}


def build(scale: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32, variant: str = "token_replace"):
    """A random HunyuanVideo image-to-video pipeline and its prompt template."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoImageToVideoPipeline,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; use one of {', '.join(VARIANTS)}.")
    s = SCALES[scale]
    tokenizer, tokenizer_2 = llava_llama_tokenizer(), clip_tokenizer()
    assert len(tokenizer.tokenize(LLAVA_ASSISTANT)) == 1
    image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=8)
    llava = LlavaConfig(
        text_config=llama_config(s, tokenizer), vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=image_tokens,
        pad_token_id=tokenizer.pad_token_id,  # diffusers reads it; transformers 5 has no default
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    concat = variant == "latent_concat"
    torch.manual_seed(seed)
    transformer = build_transformer(s, dtype, in_channels=33 if concat else 16, guidance_embeds=not concat,
                                    image_condition_type=variant)
    vae = build_vae(s, dtype)
    text_encoder = build_module(lambda: LlavaForConditionalGeneration(llava), s.fast_init, dtype)
    text_encoder_2 = build_clip(s, tokenizer_2, dtype)
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, image_processor=CLIPImageProcessor(size=IMAGE_SIZE, crop_size=IMAGE_SIZE),
    )
    return pipe, measure_prompt_template(tokenizer, image_tokens)
