"""Tiny tokenizers with the real ones' special tokens, built offline (nothing is downloaded).

Each survives `save_pretrained`/`from_pretrained` as part of a pipeline folder with identical tokenisation
(the tests check it). They work per character (per byte for Qwen), so sequences stay short.
"""

from __future__ import annotations

import string

CLIP_MAX_LENGTH = 77

# The Llava-Llama-3 chat tokens HunyuanVideo image-to-video's template uses. "assistant" is one token as in
# Llama 3: diffusers' crop removes exactly <|eot_id|><|start_header_id|>assistant<|end_header_id|>.
LLAVA_SPECIAL_TOKENS = ("<image>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
LLAVA_ASSISTANT = "assistant"


def _llama_vocab(newline: bool) -> dict[str, int]:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "\u2581": 4}
    for char in string.printable.strip():
        vocab.setdefault(char, len(vocab))
    if newline:  # without it a template's line breaks vanish silently (no byte fallback)
        vocab.setdefault("\n", len(vocab))
    return vocab


def llama_tokenizer():
    """HunyuanVideo 1's Llama tokenizer, per character."""
    from transformers import LlamaTokenizerFast

    return LlamaTokenizerFast(vocab=_llama_vocab(newline=False), merges=[], pad_token="<pad>", padding_side="right")


def llava_llama_tokenizer():
    """HunyuanVideo 1 image-to-video's Llava-Llama-3 tokenizer, per character, with its chat tokens."""
    from tokenizers import AddedToken
    from transformers import LlamaTokenizerFast

    tokenizer = LlamaTokenizerFast(vocab=_llama_vocab(newline=True), merges=[], pad_token="<pad>",
                                   padding_side="right")
    tokenizer.add_special_tokens({"additional_special_tokens": list(LLAVA_SPECIAL_TOKENS)})
    tokenizer.add_tokens([AddedToken(LLAVA_ASSISTANT, special=False, normalized=False)])
    return tokenizer


def clip_tokenizer():
    """CLIP-L's tokenizer over the byte-level alphabet, per character."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)
