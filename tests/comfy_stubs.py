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


class HunyuanVideoLatentFormat:
    """ComfyUI's HunyuanVideo latent format: the sampler works on latents times this scale."""

    scale_factor = 0.476986
    latent_channels = 16

    def process_in(self, latent):
        return latent * self.scale_factor


class HunyuanVideo15LatentFormat(HunyuanVideoLatentFormat):
    """ComfyUI's HunyuanVideo15 latent format (comfy/latent_formats.py, current ComfyUI)."""

    scale_factor = 1.03682
    latent_channels = 32


class Previewer:
    """Records what it was asked to preview and returns a stand-in image."""

    seen: list = []

    def decode_latent_to_preview_image(self, preview_format, x0):
        Previewer.seen.append(x0)
        return (preview_format, "image", 512)


class Memory:
    """Records ComfyUI memory requests; `unload_all_models` is what "free model and node cache" calls."""

    requests: list = []
    unloads: int = 0

    @staticmethod
    def free_memory(memory_required, device, keep_loaded=()):
        Memory.requests.append((memory_required, device))

    @staticmethod
    def unload_all_models():
        Memory.unloads += 1


FOLDERS: dict[str, list[str]] = {}
"""ComfyUI's model folders by folder_paths name ("diffusers", "diffusion_models", "vae", ...); tests add theirs."""

MODULES = ("comfy", "comfy.model_management", "comfy.utils", "comfy.latent_formats", "latent_preview", "folder_paths")


def _folder_paths(diffusers_paths: list[str], lora_paths: list[str]) -> types.ModuleType:
    """folder_paths with the diffusers and loras folders (tests add others to FOLDERS); file lists are read live,
    as ComfyUI's are."""
    folder_paths = types.ModuleType("folder_paths")
    FOLDERS.clear()
    FOLDERS.update({"diffusers": list(diffusers_paths), "loras": list(lora_paths)})
    folders = FOLDERS
    folder_paths.get_folder_paths = lambda name: list(folders.get(name, []))

    def get_filename_list(name):
        return sorted(p.relative_to(root).as_posix() for root in map(Path, folders.get(name, []))
                      for p in root.rglob("*") if p.is_file())

    def get_full_path(name, filename):
        found = [Path(root) / filename for root in folders.get(name, []) if (Path(root) / filename).is_file()]
        return str(found[0]) if found else None

    folder_paths.get_filename_list, folder_paths.get_full_path = get_filename_list, get_full_path
    return folder_paths


def install(diffusers_paths: list[str], lora_paths: list[str] = ()) -> None:
    comfy = types.ModuleType("comfy")
    management = types.ModuleType("comfy.model_management")
    management.get_torch_device = lambda: "cpu"
    management.unet_offload_device = lambda: "cuda:0"  # as under --highvram: the pack must not offload there
    management.InterruptProcessingException = InterruptProcessingException
    management.free_memory = Memory.free_memory
    management.unload_all_models = Memory.unload_all_models
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    latent_formats = types.ModuleType("comfy.latent_formats")
    latent_formats.HunyuanVideo = HunyuanVideoLatentFormat
    latent_formats.HunyuanVideo15 = HunyuanVideo15LatentFormat
    comfy.model_management, comfy.utils, comfy.latent_formats = management, utils, latent_formats
    previews = types.ModuleType("latent_preview")
    previews.get_previewer = lambda device, latent_format: Previewer()
    modules = (comfy, management, utils, latent_formats, previews, _folder_paths(diffusers_paths, lora_paths))
    sys.modules.update(dict(zip(MODULES, modules)))


def uninstall() -> None:
    for name in MODULES:
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
