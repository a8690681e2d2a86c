"""A tiny, randomly initialised HunyuanVideo saved in diffusers format.

It has the real model's structure and latent layout (16 latent channels, 8x spatial and 4x temporal VAE
compression, patch size 2, guidance embedding, Llama + CLIP text encoders with their tokenizers) at a size
that runs a whole generation on a CPU in about a second. It lets a fresh machine, the tests and the
CLI (`--model tiny`) exercise every code path without downloading weights. Its videos are noise.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from .prompt_template import PROMPT_TEMPLATE_FILE

LLAMA_HIDDEN = 16
CLIP_HIDDEN = 8
CLIP_MAX_LENGTH = 77

# The real template wraps the prompt in ~95 tokens of instructions. The tiny tokenizer works per character,
# so a short template keeps the text sequence short while still exercising cropping.
TINY_PROMPT_TEMPLATE = {"template": "> {}", "crop_start": 2}


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


def build_tiny_pipeline(seed: int = 0):
    """Builds the tiny pipeline in memory (float32, CPU)."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer = _llama_tokenizer()
    tokenizer_2 = _clip_tokenizer()

    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        text_embed_dim=LLAMA_HIDDEN,
        pooled_projection_dim=CLIP_HIDDEN,
        rope_axes_dim=(2, 4, 4),
    )
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        scaling_factor=0.476986,
    )
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=LLAMA_HIDDEN,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer_2),
            hidden_size=CLIP_HIDDEN,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            bos_token_id=tokenizer_2.bos_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            pad_token_id=tokenizer_2.pad_token_id,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    pipe = HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    for component in (transformer, vae, text_encoder, text_encoder_2):
        component.eval()
    return pipe


def save_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Saves the tiny model as a diffusers folder (safetensors) with its short prompt template."""
    folder = Path(folder)
    build_tiny_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    (folder / PROMPT_TEMPLATE_FILE).write_text(json.dumps(TINY_PROMPT_TEMPLATE, indent=2))
    return folder
