"""Failures inside a forward pass: rebuild the offload hooks, free memory, explain out-of-memory errors.

An exception in the middle of a transformer or VAE forward (out of memory, a cancel from a progress
callback inside the VAE) can leave offloaded groups on the accelerator. The hooks of the components that
were running are rebuilt (only those: re-hooking a disk-offloaded transformer after a cancelled decode
would read and rewrite 24 GB for nothing), so the next run starts clean and gives the same result as an
uninterrupted one. If even that fails, the model is released rather than left half hooked.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from ..devices import free_cached_memory
from ..errors import OutOfMemoryError
from ..loading.model import LoadedPipeline
from ..spec import Role


@contextmanager
def recovering(model: LoadedPipeline, components: Sequence[str], task: str, advice: str) -> Iterator[None]:
    """Runs the body, which uses `components`; on failure resets their offload hooks and turns
    out-of-memory into a clear error."""
    try:
        yield
    except BaseException as error:
        state = "The model is ready for another run."
        try:
            model.reset_offload(components)
        except BaseException:
            model.release()
            state = "The model was released; the loader loads it again on the next run."
        free_cached_memory()
        if isinstance(error, torch.cuda.OutOfMemoryError):
            raise OutOfMemoryError(f"Out of GPU memory while {task}. {advice} {state}") from error
        raise


def recovering_encoders(model: LoadedPipeline, role: Role, task: str):
    """`recovering` for the components of one role (the text encoders, the image encoder) while encoding."""
    return recovering(model, model.spec.names_with_role(role), task,
                      f"Use the lowest_vram offload preset for the {role.label}.")
