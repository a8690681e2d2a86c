"""At most one loaded model, reused while only its offload plan changes.

A node graph re-runs its loader whenever any loader input changes. Reloading 40 GB of weights to try
another offload preset would be slow, and keeping the old model alive while loading a new one would
need twice the memory; this cache reconfigures in place when it can and releases before it loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .loaded_pipeline import LoadedPipeline
from .loader import load_pipeline
from .offload import OffloadPlan


class PipelineCache:
    def __init__(self):
        self._model: LoadedPipeline | None = None
        self._key: tuple | None = None

    @property
    def current(self) -> LoadedPipeline | None:
        return self._model

    def get(self, folder: str | Path, dtypes: Mapping[str, torch.dtype] | None, plan: OffloadPlan) -> LoadedPipeline:
        key = (str(Path(folder).expanduser().resolve()), tuple(sorted((dtypes or {}).items())))
        if self._model is not None and key == self._key and self._model.pipe is not None:
            if self._model.offload_plan != plan:
                self._model.configure_offload(plan)
            return self._model
        self.release()
        self._model = load_pipeline(folder, dtypes, plan)
        self._key = key
        return self._model

    def release(self) -> None:
        if self._model is not None:
            self._model.release()
        self._model = None
        self._key = None
