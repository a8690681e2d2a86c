"""Randomly initialised HunyuanVideo pipelines at several scales, saved in diffusers format.

They have the real model's structure and latent layout (16 latent channels, 8x spatial and 4x temporal
VAE compression, patch size 2, guidance embedding, Llama + CLIP text encoders with their tokenizers),
so every code path runs without downloading weights; their videos are noise.

- `tiny`: a whole generation in about a second on a CPU: the tests and `--model tiny`.
- `small`: weights large enough to dominate GPU memory at small sizes: the GPU tests.
- `mid`: the real widths with few blocks: per-block speed and memory on CPU or GPU.
- `full`: the released 13B transformer, 8B Llama, CLIP-L and VAE configurations.

Speed and memory do not depend on weight values, so the large scales are filled quickly with plain
random numbers instead of each layer's own initialisation.
"""

from __future__ import annotations

import json
import os
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights

from ..loading.prompt_template import PROMPT_TEMPLATE_FILE

# The real template wraps the prompt in ~95 tokens of instructions. The random models' tokenizer works
# per character, so a short template keeps the text sequence short while still exercising cropping.
RANDOM_MODEL_PROMPT_TEMPLATE = {"template": "> {}", "crop_start": 2}
CLIP_MAX_LENGTH = 77


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


def _llama_tokenizer():
    from transformers import LlamaTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "\u2581": 4}
    for char in string.printable.strip():
        vocab.setdefault(char, len(vocab))
    return LlamaTokenizerFast(vocab=vocab, merges=[], pad_token="<pad>", padding_side="right")


def _clip_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


@torch.no_grad()
def _fill_fast(module: torch.nn.Module) -> torch.nn.Module:
    """Gives meta-device parameters random values, far faster than per-layer init at 13B: on all cores,
    each parameter from its own generator (seeded from the global one, so a seed still fixes the model)."""
    slots = [(submodule, name, parameter) for submodule in module.modules()
             for name, parameter in submodule._parameters.items() if parameter is not None]
    seeds = torch.randint(0, 2**62, (len(slots),)).tolist()

    def fill(slot, seed):
        submodule, name, parameter = slot
        data = torch.empty(parameter.shape, dtype=parameter.dtype)
        if data.ndim >= 2:
            data.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(seed))
        else:
            data.fill_(1.0 if name == "weight" else 0.0)
        submodule._parameters[name] = torch.nn.Parameter(data, requires_grad=False)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # normal_ releases the GIL
        list(pool.map(fill, slots, seeds))
    return module


def _build(factory, fast: bool, dtype: torch.dtype):
    """Creates the module with `dtype` as the default dtype, so no cast (and no cast warning) is needed."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if not fast:
            return factory()
        with init_empty_weights(include_buffers=False):  # parameters on meta, buffers computed as usual
            module = factory()
        return _fill_fast(module)
    finally:
        torch.set_default_dtype(previous)


def build_random_pipeline(scale: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """Builds a random HunyuanVideo pipeline in memory (on the CPU) at the named scale."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    s = SCALES[scale]
    tokenizer, tokenizer_2 = _llama_tokenizer(), _clip_tokenizer()
    torch.manual_seed(seed)
    transformer = _build(
        lambda: HunyuanVideoTransformer3DModel(
            in_channels=16, out_channels=16, num_attention_heads=s.heads, attention_head_dim=s.head_dim,
            num_layers=s.double_blocks, num_single_layers=s.single_blocks, num_refiner_layers=s.refiner_blocks,
            patch_size=2, patch_size_t=1, text_embed_dim=s.llama_hidden, pooled_projection_dim=s.clip_hidden,
            rope_axes_dim=s.rope_axes,
        ),
        s.fast_init, dtype,
    )
    vae = _build(
        lambda: AutoencoderKLHunyuanVideo(
            latent_channels=16, block_out_channels=s.vae_channels, layers_per_block=s.vae_layers,
            norm_num_groups=s.vae_groups, spatial_compression_ratio=8, temporal_compression_ratio=4,
            scaling_factor=0.476986,
        ),
        s.fast_init, dtype,
    )
    llama_config = LlamaConfig(
        vocab_size=s.llama_vocab or len(tokenizer), hidden_size=s.llama_hidden,
        intermediate_size=s.llama_intermediate, num_hidden_layers=s.llama_layers,
        num_attention_heads=s.llama_heads, num_key_value_heads=s.llama_kv_heads, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    clip_config = CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=s.clip_hidden, intermediate_size=s.clip_intermediate,
        num_hidden_layers=s.clip_layers, num_attention_heads=s.clip_heads, max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=tokenizer_2.bos_token_id, eos_token_id=tokenizer_2.eos_token_id,
        pad_token_id=tokenizer_2.pad_token_id,
    )
    text_encoder = _build(lambda: LlamaModel(llama_config), s.fast_init, dtype)
    text_encoder_2 = _build(lambda: CLIPTextModel(clip_config), s.fast_init, dtype)
    for module in (transformer, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    return HunyuanVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
    )


def save_random_model(folder: str | Path, scale: str = "tiny", seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Saves a random model as a diffusers folder (safetensors) with its short prompt template."""
    folder = Path(folder)
    build_random_pipeline(scale, seed, dtype).save_pretrained(folder, safe_serialization=True)
    (folder / PROMPT_TEMPLATE_FILE).write_text(json.dumps(RANDOM_MODEL_PROMPT_TEMPLATE, indent=2))
    return folder
