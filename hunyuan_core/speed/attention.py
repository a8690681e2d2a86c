"""Attention backends through diffusers' dispatcher, chosen per run and undone after it.

`ModelMixin.set_attention_backend` (diffusers 0.42.1) also changes the process-wide default, which
`reset_attention_backend` does not undo, so another model in the same process (ComfyUI's) would silently
keep it. The pack instead sets the backend on the transformer's attention processors for the run, after
diffusers' own availability check (the error names the package to install), and restores each processor's
previous value. The token refiner's attention does not go through the dispatcher and is unaffected.

Backends that refuse an attention mask (flash, sage, `_native_flash`) cannot run HunyuanVideo, which always
passes one (the text's key padding), and xformers mishandles a boolean 4-D mask; the varlen variants,
`native`, `flex`, `_native_cudnn` and `_native_math` handle it. The pack refuses the others with a message.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import UserInputError
from .settings import ATTENTION_DEFAULT

MASKLESS = {"flash", "flash_hub", "_flash_3", "_flash_3_hub", "flash_4_hub", "aiter_fa2_hub", "_native_flash",
            "sage", "sage_hub", "sage_blackwell_hub", "_sage_qk_int8_pv_fp8_cuda", "_sage_qk_int8_pv_fp8_cuda_sm90",
            "_sage_qk_int8_pv_fp16_cuda", "_sage_qk_int8_pv_fp16_triton", "_native_xla", "xformers", "_native_npu"}
"""Backends that refuse the key-padding mask every HunyuanVideo attention passes, or (xformers) apply a
boolean 4-D mask as numbers added to the scores (diffusers 0.42.1, models/attention_dispatch.py)."""


def backend_names() -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [backend.value for backend in AttentionBackendName]


def usable_backends() -> list[str]:
    """The backends HunyuanVideo can use, installed or not (the choice list of the speed node)."""
    return [ATTENTION_DEFAULT] + [name for name in backend_names() if name not in MASKLESS]


def check_backend(name: str) -> None:
    """Raises `UserInputError` for an unknown backend, one that cannot take HunyuanVideo's mask, or one whose
    package is not installed (diffusers' own message, which names the package)."""
    if name == ATTENTION_DEFAULT:
        return
    if name not in backend_names():
        raise UserInputError(f"Unknown attention backend {name!r}; use one of {', '.join(usable_backends())}.")
    if name.endswith("_hub"):  # diffusers' own setters download the kernel; the pack runs no downloaded code
        raise UserInputError(
            f"The {name} attention backend downloads its kernel code from the Hugging Face Hub, which this pack "
            "does not run. Use one that runs an installed package (flash_varlen, _flash_varlen_3, sage_varlen) or "
            "native."
        )
    if name in MASKLESS:
        raise UserInputError(
            f"The {name} attention backend cannot take the text padding mask HunyuanVideo's attention always has. "
            "Use a varlen variant (flash_varlen, _flash_varlen_3, sage_varlen), native, flex or _native_cudnn."
        )
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ImportError) as error:
        raise UserInputError(str(error)) from error


def _processors(transformer: torch.nn.Module) -> list:
    return [p for p in transformer.attn_processors.values() if hasattr(p, "_attention_backend")]


@contextmanager
def attention_for_run(transformer: torch.nn.Module, name: str) -> Iterator[None]:
    """The transformer's attention runs on backend `name` while the body runs (per processor, never the
    process-wide default); each processor's previous backend comes back afterwards."""
    if name == ATTENTION_DEFAULT:
        yield
        return
    check_backend(name)
    from diffusers.models.attention_dispatch import AttentionBackendName

    processors = _processors(transformer)
    previous = [processor.__dict__.get("_attention_backend") for processor in processors]
    for processor in processors:
        processor._attention_backend = AttentionBackendName(name)
    try:
        yield
    finally:
        for processor, value in zip(processors, previous):
            if value is None:
                processor.__dict__.pop("_attention_backend", None)
            else:
                processor._attention_backend = value


@contextmanager
def count_backend_calls() -> Iterator[Counter]:
    """Counts the attention calls each backend of diffusers' dispatcher really ran while the body ran (it
    wraps the registry's functions, which diffusers 0.42.1 looks up on every call)."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    counts: Counter = Counter()
    backends = _AttentionBackendRegistry._backends
    originals = dict(backends)

    def counted(name, function):
        def call(*args, **kwargs):
            counts[name.value] += 1
            return function(*args, **kwargs)

        call.__wrapped__ = function  # the dispatcher reads the wrapped function's arguments
        return call

    for name, function in originals.items():
        backends[name] = counted(name, function)
    try:
        yield counts
    finally:
        backends.update(originals)
