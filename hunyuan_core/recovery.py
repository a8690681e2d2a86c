"""Failures inside a forward pass: rebuild the offload hooks, free memory, explain out-of-memory errors.

An exception in the middle of a transformer or VAE forward (out of memory, a cancel from a progress
callback inside the VAE) can leave offloaded groups on the accelerator. The model's offload hooks are
rebuilt so the next run starts from a clean state and gives the same result as an uninterrupted one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .devices import free_cached_memory
from .errors import OutOfMemoryError
from .loaded_pipeline import LoadedPipeline


@contextmanager
def recovering(model: LoadedPipeline, task: str, advice: str) -> Iterator[None]:
    """Runs the body; on failure resets the offload hooks and turns out-of-memory into a clear error."""
    try:
        yield
    except BaseException as error:
        model.reset_offload()
        free_cached_memory()
        if isinstance(error, torch.cuda.OutOfMemoryError):
            raise OutOfMemoryError(f"Out of GPU memory while {task}. {advice} The model is ready for another run.") from error
        raise
