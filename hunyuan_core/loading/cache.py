"""At most one loaded model, reused while only its offload plan changes.

A node graph re-runs its loader whenever any loader input changes. Reloading 40 GB of weights to try
another offload preset would be slow, and keeping the old model alive while loading a new one would
need twice the memory; this cache reconfigures in place when it can and releases before it loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..offload.config import OffloadPlan
from ..progress import StepCallback
from ..speed.settings import SpeedSettings
from .loader import load_pipeline
from .model import LoadedPipeline
from .single_file.source import ModelSource


def _key(folder: str | Path | ModelSource, dtypes: Mapping[str, torch.dtype] | None,
         speed: SpeedSettings | None) -> tuple:
    """What a loaded model cannot change in place: its folder (or files), dtypes, fp8 storage and compilation."""
    loads = (speed or SpeedSettings()).loads_differently
    source = folder.key if isinstance(folder, ModelSource) else str(Path(folder).expanduser().resolve())
    return source, tuple(sorted((dtypes or {}).items())), loads


class PipelineCache:
    def __init__(self):
        self._model: LoadedPipeline | None = None
        self._key: tuple | None = None
        self._releases: dict[tuple, int] = {}

    @property
    def current(self) -> LoadedPipeline | None:
        return self._model

    def get(self, folder: str | Path | ModelSource, dtypes: Mapping[str, torch.dtype] | None, plan: OffloadPlan,
            on_step: StepCallback | None = None, speed: SpeedSettings | None = None) -> LoadedPipeline:
        key = _key(folder, dtypes, speed)
        if self._model is not None and key == self._key and self._model.pipe is not None:
            self._model.configure_offload(plan)  # only components whose settings changed are touched
            self._model.configure_speed(speed or SpeedSettings())
            return self._model
        self.release()
        self._model = load_pipeline(folder, dtypes, plan, on_step, speed)
        self._key = key
        return self._model

    def times_released(self, folder: str | Path | ModelSource, dtypes: Mapping[str, torch.dtype] | None,
                       speed: SpeedSettings | None = None) -> int:
        """How often the model for these settings has been released: a handle given out before the last
        release is stale, so a host that caches loader outputs (ComfyUI) knows to load again. A model released
        directly (after a failure it could not recover from) counts too."""
        if self._model is not None and self._model.pipe is None:
            self.release()
        return self._releases.get(_key(folder, dtypes, speed), 0)

    def release(self) -> None:
        if self._model is not None:
            self._model.release()
            self._releases[self._key] = self._releases.get(self._key, 0) + 1
        self._model = None
        self._key = None
