"""Stand-ins for the few ComfyUI modules the nodes call, and a loader that imports the pack as ComfyUI does.

ComfyUI imports a custom node folder as a package from its `__init__.py`; `load_pack` does the same
under a fixed package name, so the nodes' relative imports of `hunyuan_core` resolve as they do there.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "hunyuanvideo_diffusers_pack"


class InterruptProcessingException(Exception):
    pass


class ProgressBar:
    """Records updates; raises like ComfyUI's hook does once `cancel_after` updates have been made."""

    updates: list = []
    cancel_after: int | None = None

    def __init__(self, total):
        self.total = total

    def update_absolute(self, value, total=None, preview=None):
        ProgressBar.updates.append((value, total))
        if ProgressBar.cancel_after is not None and len(ProgressBar.updates) >= ProgressBar.cancel_after:
            raise InterruptProcessingException()


def install(diffusers_paths: list[str]) -> None:
    comfy = types.ModuleType("comfy")
    management = types.ModuleType("comfy.model_management")
    management.get_torch_device = lambda: "cpu"
    management.unet_offload_device = lambda: "cpu"
    management.InterruptProcessingException = InterruptProcessingException
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    comfy.model_management, comfy.utils = management, utils
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_folder_paths = lambda name: list(diffusers_paths) if name == "diffusers" else []
    sys.modules.update(
        {"comfy": comfy, "comfy.model_management": management, "comfy.utils": utils, "folder_paths": folder_paths}
    )


def uninstall() -> None:
    for name in ("comfy", "comfy.model_management", "comfy.utils", "folder_paths"):
        sys.modules.pop(name, None)
    for name in [n for n in sys.modules if n == PACK_NAME or n.startswith(PACK_NAME + ".")]:
        del sys.modules[name]


def load_pack():
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = pack
    spec.loader.exec_module(pack)
    return pack
