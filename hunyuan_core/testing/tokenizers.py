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


# The chat template shipped with Qwen2.5-VL-7B-Instruct (the Qwen2-VL family's), which HunyuanVideo 1.5's
# text encoding applies to every prompt.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                       "<|video_pad|>")


def qwen_tokenizer():
    """HunyuanVideo 1.5's Qwen2 tokenizer: byte-level BPE over the 256 byte symbols (a few merges, so BPE
    does merge), Qwen's specials and chat template, padding on the right as the released folders have it."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("o", "n"), ("e", "r"), ("Ġ", "c")]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.add_tokens(["<|endoftext|>"], special_tokens=True)
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer
