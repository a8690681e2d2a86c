"""One sampling run with the model's speed settings: the cache and the attention backend in force for the
run only, every transformer call in a cache context, and a report of what ran."""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .attention import attention_for_run, count_backend_calls
from .caches import cached_run
from .settings import SpeedSettings


@dataclass
class RunReport:
    """What a sampling run did: transformer blocks that ran (a skipped block runs no part of itself), the
    attention calls per backend, and MagCache's calibrated ratios when it calibrated."""

    cache: str = "none"
    blocks_total: int = 0
    blocks_run: int = 0
    attention: Counter = field(default_factory=Counter)
    mag_ratios: list[float] | None = None

    def describe(self) -> str:
        skipped = self.blocks_total - self.blocks_run
        backends = ", ".join(f"{name} ({calls} calls)" for name, calls in self.attention.items()) or "none"
        text = (f"cache {self.cache}: {self.blocks_run} of {self.blocks_total} transformer block calls ran "
                f"({skipped} skipped); attention: {backends}")
        if self.mag_ratios:
            text += f"; MagCache ratios calibrated: {', '.join(f'{r:.4f}' for r in self.mag_ratios)}"
        return text


def transformer_blocks(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks: every ModuleList directly under the transformer whose name ends in 'blocks'."""
    return [block for name, child in transformer.named_children()
            if isinstance(child, torch.nn.ModuleList) and name.endswith("blocks") for block in child]


@contextmanager
def _counting_blocks(transformer: torch.nn.Module, report: RunReport) -> Iterator[None]:
    """A block counts as run when its first layer runs; a cache that skips it never reaches that layer."""
    handles = []
    for block in transformer_blocks(transformer):
        def called(*_):
            report.blocks_total += 1

        def ran(*_):
            report.blocks_run += 1

        handles.append(block.register_forward_pre_hook(called))
        handles.append(next(block.children()).register_forward_pre_hook(ran))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class StepClock:
    """Where the loop is, for caches that follow the timestep (FasterCache, pyramid attention broadcast)."""

    def __init__(self):
        self.timestep = float("inf")

    def __call__(self) -> float:
        return self.timestep


@contextmanager
def speed_run(transformer: torch.nn.Module, settings: SpeedSettings, steps: int,
              clock: StepClock) -> Iterator[RunReport]:
    report = RunReport(cache=settings.cache)
    with ExitStack() as stack:
        stack.enter_context(_counting_blocks(transformer, report))
        report.attention = stack.enter_context(count_backend_calls())
        stack.enter_context(attention_for_run(transformer, settings.attention))
        report.mag_ratios = stack.enter_context(cached_run(transformer, settings, steps, clock))
        yield report
