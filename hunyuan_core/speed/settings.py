"""The speed levers, as data: a step cache, an attention backend, fp8 storage and regional compilation.

One `SpeedSettings` travels with a loaded model (the loader node's `speed` input, the CLI's flags). fp8
storage and compilation change the modules, so they are applied when the model is loaded (a change loads it
again); the cache and the attention backend apply to each sampling run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserInputError


@dataclass(frozen=True)
class CacheKind:
    name: str
    parameter: str  # what the one number of the setting means
    default: float
    off: float  # the value at which the cache computes every step: bitwise the uncached output
    skips: str  # what a skip saves
    decides: str  # per batch or by schedule
    skips_blocks: bool  # a skip saves whole blocks (and their weight transfers), not only attention

    @property
    def counts_steps(self) -> bool:
        """Whether the number is a step interval (a whole number; 1 computes every step) rather than a
        threshold (0 computes every step)."""
        return self.off == 1


CACHES = {
    kind.name: kind
    for kind in (
        CacheKind("first_block", "threshold (relative change of the first block's output)", 0.05, 0.0,
                  "whole blocks, and their weight transfers", "per batch, from the data", True),
        CacheKind("mag", "threshold (accumulated error of the calibrated magnitude ratios)", 0.06, 0.0,
                  "whole blocks, and their weight transfers", "by schedule: the same for every row", True),
        CacheKind("taylorseer", "cache interval in steps (1 computes every step)", 5, 1,
                  "attention (whole blocks in lite mode)", "by schedule", False),
        CacheKind("sea", "threshold (spectral distance of the latents)", 0.25, 0.0,
                  "whole blocks, and their weight transfers", "per batch, from the data", True),
        CacheKind("faster", "attention skip range in steps (1 computes every step)", 2, 1,
                  "attention only", "by schedule", False),
        CacheKind("pyramid", "attention skip range in steps (1 computes every step)", 2, 1,
                  "attention only", "by schedule", False),
    )
}
ATTENTION_DEFAULT = "default"  # whatever diffusers' dispatcher uses (native SDPA unless configured)


@dataclass(frozen=True)
class SpeedSettings:
    cache: str = "none"
    cache_value: float | None = None  # the cache's one number (see CACHES); None: its default
    mag_ratios: tuple[float, ...] | None = None  # MagCache's calibrated ratios; None with "mag": calibrate
    attention: str = ATTENTION_DEFAULT
    fp8: tuple[str, ...] = ()  # components or roles stored in fp8 (e4m3fn), computing in bf16
    compile: bool = False

    def validate(self) -> None:
        if self.cache != "none" and self.cache not in CACHES:
            raise UserInputError(f"Unknown step cache {self.cache!r}; use none or one of {', '.join(CACHES)}.")
        if self.cache_value is not None and (not math.isfinite(self.cache_value) or self.cache_value < 0):
            raise UserInputError(f"The cache's value must be a non-negative number, got {self.cache_value}.")
        if self.cache in CACHES and CACHES[self.cache].counts_steps and self.cache_value is not None and (
                self.cache_value < 1 or self.cache_value != int(self.cache_value)):
            raise UserInputError(
                f"The {self.cache} cache takes {CACHES[self.cache].parameter}: a whole number from 1, got "
                f"{self.cache_value}."
            )

    @property
    def value(self) -> float:
        """The cache's number, its default when unset."""
        return CACHES[self.cache].default if self.cache_value is None else self.cache_value

    @property
    def loads_differently(self) -> tuple:
        """What changes the loaded modules (a model with other values must be loaded again)."""
        return tuple(sorted(self.fp8)), self.compile


def parse_cache(text: str) -> tuple[str, float | None]:
    """`NAME[:VALUE]` as the CLI takes it: `first_block:0.1`, `taylorseer:3`, `mag`, `none`."""
    name, _, value = text.partition(":")
    if not value:
        return name, None
    try:
        return name, float(value)
    except ValueError:
        raise UserInputError(f"--cache takes NAME[:NUMBER], e.g. first_block:0.1; got {text!r}.") from None
