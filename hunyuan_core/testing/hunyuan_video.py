"""Random HunyuanVideo 1 text-to-video pipelines at several scales.

They have the real model's structure and latent layout (16 latent channels, 8x spatial and 4x temporal
VAE compression, patch size 2, guidance embedding, Llama + CLIP text encoders with their tokenizers).

- `tiny`: a whole generation in about a second on a CPU: the tests and `--model tiny`.
- `small`: weights large enough to dominate GPU memory at small sizes: the GPU tests.
- `mid`: the real widths with few blocks: per-block speed and memory on CPU or GPU.
- `full`: the released 13B transformer, 8B Llama, CLIP-L and VAE configurations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .building import build_module
from .tokenizers import CLIP_MAX_LENGTH, clip_tokenizer, llama_tokenizer

# The real template wraps the prompt in ~95 tokens of instructions. The random models' tokenizer works
# per character, so a short template keeps the text sequence short while still exercising cropping.
PROMPT_TEMPLATE = {"template": "> {}", "crop_start": 2}


@dataclass(frozen=True)
class ModelScale:
    heads: int
    head_dim: int
    rope_axes: tuple[int, int, int]
    double_blocks: int
    single_blocks: int
    refiner_blocks: int
    llama_hidden: int
    llama_intermediate: int
    llama_layers: int
    llama_heads: int
    llama_kv_heads: int
    llama_vocab: int | None  # None: the tokenizer's own size
    clip_hidden: int
    clip_intermediate: int
    clip_layers: int
    clip_heads: int
    vae_channels: tuple[int, int, int, int]
    vae_layers: int
    vae_groups: int
    fast_init: bool


_REAL_LLAMA = dict(llama_hidden=4096, llama_intermediate=14336, llama_heads=32, llama_kv_heads=8, llama_vocab=128320)
_REAL_CLIP = dict(clip_hidden=768, clip_intermediate=3072, clip_layers=12, clip_heads=12)
_REAL_VAE = dict(vae_channels=(128, 256, 512, 512), vae_layers=2, vae_groups=32)
_REAL_TRANSFORMER = dict(heads=24, head_dim=128, rope_axes=(16, 56, 56), refiner_blocks=2)

SCALES = {
    "tiny": ModelScale(
        heads=2, head_dim=10, rope_axes=(2, 4, 4), double_blocks=2, single_blocks=2, refiner_blocks=1,
        llama_hidden=16, llama_intermediate=32, llama_layers=3, llama_heads=2, llama_kv_heads=2, llama_vocab=None,
        clip_hidden=8, clip_intermediate=16, clip_layers=2, clip_heads=2,
        vae_channels=(8, 8, 8, 8), vae_layers=1, vae_groups=4, fast_init=False,
    ),
    "small": ModelScale(
        heads=8, head_dim=64, rope_axes=(16, 24, 24), double_blocks=4, single_blocks=4, refiner_blocks=1,
        llama_hidden=512, llama_intermediate=1536, llama_layers=4, llama_heads=8, llama_kv_heads=8, llama_vocab=None,
        clip_hidden=256, clip_intermediate=512, clip_layers=2, clip_heads=4,
        vae_channels=(32, 64, 64, 64), vae_layers=1, vae_groups=16, fast_init=True,
    ),
    "mid": ModelScale(
        **_REAL_TRANSFORMER, double_blocks=2, single_blocks=4, **_REAL_LLAMA, llama_layers=2, **_REAL_CLIP,
        **_REAL_VAE, fast_init=True,
    ),
    "full": ModelScale(
        **_REAL_TRANSFORMER, double_blocks=20, single_blocks=40, **_REAL_LLAMA, llama_layers=32, **_REAL_CLIP,
        **_REAL_VAE, fast_init=True,
    ),
}


def build_transformer(s: ModelScale, dtype: torch.dtype, **config):
    """The HunyuanVideo 1 transformer at scale `s` (`config` changes the image-to-video variants)."""
    from diffusers import HunyuanVideoTransformer3DModel

    config = {
        **dict(
            in_channels=16, out_channels=16, num_attention_heads=s.heads, attention_head_dim=s.head_dim,
            num_layers=s.double_blocks, num_single_layers=s.single_blocks, num_refiner_layers=s.refiner_blocks,
            patch_size=2, patch_size_t=1, text_embed_dim=s.llama_hidden, pooled_projection_dim=s.clip_hidden,
            rope_axes_dim=s.rope_axes,
        ),
        **config,
    }
    return build_module(lambda: HunyuanVideoTransformer3DModel(**config), s.fast_init, dtype)


def build_vae(s: ModelScale, dtype: torch.dtype):
    from diffusers import AutoencoderKLHunyuanVideo

    return build_module(
        lambda: AutoencoderKLHunyuanVideo(
            latent_channels=16, block_out_channels=s.vae_channels, layers_per_block=s.vae_layers,
            norm_num_groups=s.vae_groups, spatial_compression_ratio=8, temporal_compression_ratio=4,
            scaling_factor=0.476986,
        ),
        s.fast_init, dtype,
    )


def llama_config(s: ModelScale, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=s.llama_vocab or len(tokenizer), hidden_size=s.llama_hidden,
        intermediate_size=s.llama_intermediate, num_hidden_layers=s.llama_layers,
        num_attention_heads=s.llama_heads, num_key_value_heads=s.llama_kv_heads, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def build_clip(s: ModelScale, tokenizer_2, dtype: torch.dtype):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=s.clip_hidden, intermediate_size=s.clip_intermediate,
        num_hidden_layers=s.clip_layers, num_attention_heads=s.clip_heads, max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id,
        pad_token_id=tokenizer_2.pad_token_id,
    )
    return build_module(lambda: CLIPTextModel(config), s.fast_init, dtype)


def build(scale: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random HunyuanVideo pipeline in memory (on the CPU) at the named scale, and its prompt template."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from transformers import LlamaModel

    s = SCALES[scale]
    tokenizer, tokenizer_2 = llama_tokenizer(), clip_tokenizer()
    torch.manual_seed(seed)
    transformer = build_transformer(s, dtype)
    vae = build_vae(s, dtype)
    text_encoder = build_module(lambda: LlamaModel(llama_config(s, tokenizer)), s.fast_init, dtype)
    text_encoder_2 = build_clip(s, tokenizer_2, dtype)
    pipe = HunyuanVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
    )
    return pipe, PROMPT_TEMPLATE
