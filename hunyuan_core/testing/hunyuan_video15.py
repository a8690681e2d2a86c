"""Random HunyuanVideo 1.5 pipelines: text-to-video and image-to-video, with the distilled variants.

They have the real latent layout (32 channels, 16x spatial and 4x temporal VAE compression, patch 1, a
65-channel transformer input), Qwen2.5-VL + ByT5 text encoders with tiny offline tokenizers (a byte-level
Qwen2 BPE with the chat template and specials; `ByT5Tokenizer()` needs no files) and, for image-to-video, a
SigLIP image encoder. Variants are what the folders' configs say: `cfg_distilled` is a guider scale of 1,
`step_distilled` a MeanFlow transformer (`use_meanflow`) with a guider scale of 1.

- `tiny`: seconds on a CPU, short text (the prompt template file says so).
- `mid`: the real widths with few blocks and the real text lengths; `full`: the released 8.3B transformer,
  Qwen2.5-VL-7B's text model, ByT5-small and the VAE (text-to-video only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .building import build_module
from .tokenizers import qwen_tokenizer

VARIANTS = ("t2v", "t2v_cfg_distilled", "i2v", "i2v_step_distilled")

# The diffusers pipeline's instruction, for the scales that use the real text lengths.
REAL_TEXT = {"max_length": 1000, "byt5_max_length": 256, "image_tokens": 729}
TINY_TEXT = {"system_message": "Describe the video.", "max_length": 48, "byt5_max_length": 31, "image_tokens": 16}


@dataclass(frozen=True)
class ModelScale:
    heads: int
    head_dim: int
    rope_axes: tuple[int, int, int]
    layers: int
    refiner_layers: int
    mlp_ratio: float
    qwen_hidden: int
    qwen_intermediate: int
    qwen_layers: int
    qwen_heads: int
    qwen_kv_heads: int
    qwen_vocab: int | None  # None: the tokenizer's own size
    mrope_section: tuple[int, int, int]
    byt5_hidden: int
    byt5_ff: int
    byt5_layers: int
    byt5_heads: int
    byt5_kv: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    siglip_hidden: int
    fast_init: bool
    real_text: bool


_REAL_TRANSFORMER = dict(heads=16, head_dim=128, rope_axes=(16, 56, 56), refiner_layers=2, mlp_ratio=4.0)
_REAL_QWEN = dict(qwen_hidden=3584, qwen_intermediate=18944, qwen_heads=28, qwen_kv_heads=4, qwen_vocab=152064,
                  mrope_section=(16, 24, 24))
_REAL_BYT5 = dict(byt5_hidden=1472, byt5_ff=3584, byt5_layers=12, byt5_heads=6, byt5_kv=64)
_REAL_VAE = dict(vae_channels=(128, 256, 512, 1024, 1024), vae_layers=2)

SCALES = {
    "tiny": ModelScale(
        heads=2, head_dim=8, rope_axes=(2, 2, 4), layers=2, refiner_layers=1, mlp_ratio=2.0,
        qwen_hidden=16, qwen_intermediate=32, qwen_layers=3, qwen_heads=2, qwen_kv_heads=2, qwen_vocab=None,
        mrope_section=(1, 1, 2), byt5_hidden=32, byt5_ff=48, byt5_layers=1, byt5_heads=4, byt5_kv=8,
        vae_channels=(8, 8, 8, 16, 64), vae_layers=1, siglip_hidden=16, fast_init=False, real_text=False,
    ),
    "mid": ModelScale(**_REAL_TRANSFORMER, layers=4, **_REAL_QWEN, qwen_layers=2, **_REAL_BYT5, **_REAL_VAE,
                      siglip_hidden=1152, fast_init=True, real_text=True),
    "full": ModelScale(**_REAL_TRANSFORMER, layers=54, **_REAL_QWEN, qwen_layers=28, **_REAL_BYT5, **_REAL_VAE,
                       siglip_hidden=1152, fast_init=True, real_text=True),
}


def crop_start(tokenizer, system_message: str) -> int:
    """Tokens before the prompt in the chat-formatted text: the crop for this tokenizer (diffusers' 108 is
    right for the released Qwen2.5-VL tokenizer and its own system message only)."""
    conversation = [{"role": "system", "content": system_message}, {"role": "user", "content": "X"}]
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(text[: text.rindex("X<|im_end|>")], add_special_tokens=False).input_ids)


def prompt_template(tokenizer, s: ModelScale, system_message: str) -> dict:
    text = REAL_TEXT if s.real_text else TINY_TEXT
    message = system_message if s.real_text else text["system_message"]
    return {**text, "system_message": message, "crop_start": crop_start(tokenizer, message)}


def build(scale: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32, variant: str = "t2v"):
    """A random HunyuanVideo 1.5 pipeline and its prompt template."""
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
        T5Config,
        T5EncoderModel,
    )

    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; use one of {', '.join(VARIANTS)}.")
    s = SCALES[scale]
    image_to_video = variant.startswith("i2v")
    tokenizer, tokenizer_2 = qwen_tokenizer(), ByT5Tokenizer()
    torch.manual_seed(seed)
    transformer = build_module(
        lambda: HunyuanVideo15Transformer3DModel(
            in_channels=65, out_channels=32, num_attention_heads=s.heads, attention_head_dim=s.head_dim,
            num_layers=s.layers, num_refiner_layers=s.refiner_layers, mlp_ratio=s.mlp_ratio, patch_size=1,
            patch_size_t=1, text_embed_dim=s.qwen_hidden, text_embed_2_dim=s.byt5_hidden,
            image_embed_dim=s.siglip_hidden, rope_axes_dim=s.rope_axes, target_size=640,
            task_type="i2v" if image_to_video else "t2v", use_meanflow=variant == "i2v_step_distilled",
        ),
        s.fast_init, dtype,
    )
    vae = build_module(
        lambda: AutoencoderKLHunyuanVideo15(latent_channels=32, block_out_channels=s.vae_channels,
                                            layers_per_block=s.vae_layers, spatial_compression_ratio=16,
                                            temporal_compression_ratio=4),
        s.fast_init, dtype,
    )
    qwen = Qwen2_5_VLTextConfig(
        vocab_size=s.qwen_vocab or len(tokenizer), hidden_size=s.qwen_hidden, intermediate_size=s.qwen_intermediate,
        num_hidden_layers=s.qwen_layers, num_attention_heads=s.qwen_heads, num_key_value_heads=s.qwen_kv_heads,
        rope_parameters={"mrope_section": list(s.mrope_section), "rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = build_module(lambda: Qwen2_5_VLTextModel(qwen), s.fast_init, dtype)
    byt5 = T5Config(vocab_size=len(tokenizer_2), d_model=s.byt5_hidden, d_kv=s.byt5_kv, d_ff=s.byt5_ff,
                    num_layers=s.byt5_layers, num_heads=s.byt5_heads, feed_forward_proj="gated-gelu",
                    is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0)
    text_encoder_2 = build_module(lambda: T5EncoderModel(byt5), s.fast_init, dtype)
    distilled = variant in ("t2v_cfg_distilled", "i2v_step_distilled")
    components = dict(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0 if variant == "i2v_step_distilled" else 5.0),
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        guider=ClassifierFreeGuidance(guidance_scale=1.0 if distilled else 6.0),
    )
    if image_to_video:
        size = 32 if scale == "tiny" else 384
        patch = 8 if scale == "tiny" else 14
        vision = SiglipVisionConfig(hidden_size=s.siglip_hidden, intermediate_size=2 * s.siglip_hidden,
                                    num_hidden_layers=1 if scale == "tiny" else 27, num_attention_heads=2,
                                    image_size=size, patch_size=patch, vision_use_head=True)
        components["image_encoder"] = build_module(lambda: SiglipVisionModel(vision), s.fast_init, dtype)
        components["feature_extractor"] = SiglipImageProcessor(size={"height": size, "width": size},
                                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
        pipe = HunyuanVideo15ImageToVideoPipeline(**components)
    else:
        pipe = HunyuanVideo15Pipeline(**components)
    return pipe, prompt_template(tokenizer, s, pipe.system_message)
