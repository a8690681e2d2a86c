"""Step progress for long loops: the caller's callback when given (ComfyUI's bar), else a console bar."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

StepCallback = Callable[..., None]
"""Called as `callback(done, total)` after each unit of work (the sampler adds a preview latent); it may
raise to cancel between units."""


@contextmanager
def step_progress(callback: StepCallback | None, total: int, description: str) -> Iterator[StepCallback]:
    if callback is not None:
        yield callback
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description) as bar:
        yield lambda done, _total, *_preview: bar.update(done - bar.n)
