"""Step caches through diffusers' own hooks, enabled for one sampling run at a time.

A cache is enabled at the start of a run and taken off at its end, after the offload hooks exist: the cache
hook is then the outermost, so a block it skips is never onloaded (first-block cache at one block per group:
29 onloads instead of 50 on the tiny model; MagCache 26). Enabling per run also means offload re-hooking (a
preset change, LoRA) never happens under a cache, and each run starts from fresh cache state.

Narrow fixes for diffusers 0.42.1, each in the function that needs it: HunyuanVideo 1.5's block is not in
diffusers' block registry; FasterCache fails on its first call for a guidance-distilled model; and removing a
hook from under one with its own forward (the streamed offloading's trace cleanup after its first forward,
or recovery after a failure) unhooks the outer cache (`offload/diffusers_fixes.py`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from ..errors import UserInputError
from ..offload.diffusers_fixes import splice_hooks_correctly
from .settings import SpeedSettings

FASTER_CACHE_BLOCK_HOOK = "faster_cache_block"  # diffusers/hooks/faster_cache.py:32


def register_hunyuan_video15_blocks() -> None:
    """diffusers 0.42.1 registers HunyuanVideo 1's blocks for the block-skipping caches but not 1.5's
    (`hooks/_helpers.py`); they return `(hidden_states, encoder_hidden_states)` like 1's. Idempotent."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
    from diffusers.models.transformers.transformer_hunyuan_video15 import HunyuanVideo15TransformerBlock

    TransformerBlockRegistry.register(
        model_class=HunyuanVideo15TransformerBlock,
        metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=1),
    )


def _noisy_latents(module, args, kwargs) -> list[torch.Tensor]:
    """SeaCache's view of the video being generated: the noisy latents, without condition channels."""
    hidden = kwargs["hidden_states"]
    return list(hidden[:, : module.config.out_channels].unbind(0))


def cache_config(settings: SpeedSettings, steps: int, timestep: Callable[[], float]):
    """The diffusers cache config for `settings` (one run of `steps` steps; `timestep()` gives the current
    timestep to the caches that follow a timestep schedule instead of a cache context)."""
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        SeaCacheConfig,
        TaylorSeerCacheConfig,
    )

    value = settings.value
    if settings.cache == "first_block":
        return FirstBlockCacheConfig(threshold=value)
    if settings.cache == "mag":
        if settings.mag_ratios is None:
            return MagCacheConfig(calibrate=True, num_inference_steps=steps)
        return MagCacheConfig(threshold=value, mag_ratios=list(settings.mag_ratios), num_inference_steps=steps)
    if settings.cache == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=int(value))
    if settings.cache == "sea":
        return SeaCacheConfig(threshold=value, raw_vision_callback=_noisy_latents)
    if settings.cache == "faster":
        # Guidance-distilled mode: the pack batches classifier-free guidance itself, in an order FasterCache's
        # own unconditional-branch reuse does not know.
        return FasterCacheConfig(spatial_attention_block_skip_range=int(value), current_timestep_callback=timestep,
                                 is_guidance_distilled=True, tensor_format="BCFHW")
    if settings.cache == "pyramid":
        return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=int(value),
                                               current_timestep_callback=timestep)
    raise UserInputError(f"Unknown step cache {settings.cache!r}.")


def _guard_faster_cache(transformer: torch.nn.Module) -> None:
    """diffusers 0.42.1 (`hooks/faster_cache.py:428-435`): with `is_guidance_distilled`, a FasterCache block
    decides to reuse its cache on its very first call, when a run starts inside the skip range (video-to-video),
    and fails on the empty cache. Until a block has cached an output its timestep is reported out of range, so
    it computes."""
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(FASTER_CACHE_BLOCK_HOOK) if registry is not None else None
        if hook is not None:
            timestep = hook.current_timestep_callback
            hook.current_timestep_callback = (
                lambda hook=hook, timestep=timestep: timestep() if hook.state.cache is not None else float("inf"))


@contextmanager
def cached_run(transformer: torch.nn.Module, settings: SpeedSettings, steps: int,
               timestep: Callable[[], float]) -> Iterator[list[float] | None]:
    """Enables the cache for one run and takes it off afterwards (also after a failure or a cancel). For a
    MagCache run without ratios, calibrates: yields a list filled with the measured ratios."""
    if settings.cache == "none":
        yield None
        return
    splice_hooks_correctly()
    if type(transformer).__name__ == "HunyuanVideo15Transformer3DModel":
        register_hunyuan_video15_blocks()
    config = cache_config(settings, steps, timestep)
    transformer.enable_cache(config)
    calibration = _capture_calibration(transformer) if getattr(config, "calibrate", False) else None
    if settings.cache == "faster":
        _guard_faster_cache(transformer)
    try:
        yield calibration
    finally:
        transformer.disable_cache()


def _capture_calibration(transformer: torch.nn.Module) -> list[float]:
    """MagCache prints its calibrated ratios and then clears them (`hooks/mag_cache.py:384-395`); this keeps
    them, from the tail block's per-step record, as they are computed."""
    ratios: list[float] = []
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook("mag_cache_block_hook") if registry is not None else None
        if hook is not None and getattr(hook, "is_tail", False):
            record = hook._perform_calibration_step

            def recording(state, current_residual, record=record):
                record(state, current_residual)
                if state.calibration_ratios:
                    ratios.append(float(state.calibration_ratios[-1]))

            hook._perform_calibration_step = recording
    return ratios
