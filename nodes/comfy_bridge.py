"""Everything the nodes take from ComfyUI, in one place: devices, model folders, progress.

ComfyUI modules are imported inside the functions so that the node classes can be imported (and their
declarations tested) without a ComfyUI installation.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..hunyuan_core.errors import UserInputError
from ..hunyuan_core.families import FAMILIES
from ..hunyuan_core.loading.cache import PipelineCache
from ..hunyuan_core.loading.single_file import ModelSource
from ..hunyuan_core.lora import apply_loras
from ..hunyuan_core.progress import StepCallback

PIPELINES = PipelineCache()
"""The one HunyuanVideo pipeline this ComfyUI process holds."""


def compute_device() -> str:
    import comfy.model_management

    return str(comfy.model_management.get_torch_device())


def offload_device() -> str:
    """System RAM, always. ComfyUI's `unet_offload_device()` is the GPU under --highvram/--gpu-only, which
    would load each component whole onto the GPU before "offloading" it there; the `none` preset is the
    way to keep everything on the GPU."""
    return "cpu"


def _search_paths() -> list[Path]:
    import folder_paths

    return [Path(p) for p in folder_paths.get_folder_paths("diffusers") if os.path.isdir(p)]


def _is_supported(folder: Path) -> bool:
    try:
        return json.loads((folder / "model_index.json").read_text()).get("_class_name") in FAMILIES
    except (OSError, ValueError, AttributeError):
        return False


def model_folder_names() -> list[str]:
    """HunyuanVideo folders (holding model_index.json) under ComfyUI's models/diffusers paths."""
    names = []
    for search_path in _search_paths():
        for root, dirs, files in os.walk(search_path, followlinks=True):
            if "model_index.json" in files:
                dirs.clear()
                if _is_supported(Path(root)):
                    names.append(Path(root).relative_to(search_path).as_posix())
    return sorted(set(names))


def _relative_name(name: str, inside: str) -> PurePosixPath:
    """A listed name as a relative path; names that could escape the model folders are refused."""
    relative = PurePosixPath(name.replace("\\", "/"))
    if not name or relative.is_absolute() or PureWindowsPath(name).drive or ".." in relative.parts:
        raise UserInputError(
            f"The model name {name!r} is not a {inside} (absolute paths and '..' are refused). Pick a model "
            "from the list."
        )
    return relative


def resolve_model_folder(name: str) -> Path:
    """The folder a listed model name refers to."""
    relative = _relative_name(name, "folder name inside ComfyUI's diffusers model folders")
    for search_path in _search_paths():
        if (search_path / relative).is_dir():
            return search_path / relative
    searched = ", ".join(str(p) for p in _search_paths()) or "(no models/diffusers folder exists)"
    raise UserInputError(
        f"Model folder {name!r} not found in {searched}. Put the diffusers-format HunyuanVideo folder "
        "there (or add a path in extra_model_paths.yaml) and refresh."
    )


SINGLE_FILE_FOLDERS = {"transformer": ("diffusion_models", "unet"), "vae": ("vae",),
                       "text_encoder": ("text_encoders", "clip"), "image_encoder": ("clip_vision",)}
"""ComfyUI's model folder names (folder_paths) holding each kind of single file; 'unet' and 'clip' are the
legacy names older installs and extra_model_paths.yaml files still use."""
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft", ".gguf")


def _file_search_paths(kind: str) -> list[Path]:
    import folder_paths

    paths = []
    for folder_name in SINGLE_FILE_FOLDERS[kind]:
        try:
            paths += [Path(p) for p in folder_paths.get_folder_paths(folder_name) if os.path.isdir(p)]
        except KeyError:  # a folder name this ComfyUI does not know
            continue
    return list(dict.fromkeys(paths))


def single_file_names(kind: str) -> list[str]:
    """The .safetensors and .gguf files in ComfyUI's folders for `kind` (SINGLE_FILE_FOLDERS). GGUF
    files are listed too: ComfyUI's own lists leave them out (folder_paths.supported_pt_extensions)."""
    names = set()
    for search_path in _file_search_paths(kind):
        for root, _dirs, files in os.walk(search_path, followlinks=True):
            for file in files:
                if file.lower().endswith(SINGLE_FILE_SUFFIXES):
                    names.add((Path(root) / file).relative_to(search_path).as_posix())
    return sorted(names)


def resolve_single_file(kind: str, name: str) -> Path:
    """The file a listed name refers to."""
    relative = _relative_name(name, f"file name inside ComfyUI's {' / '.join(SINGLE_FILE_FOLDERS[kind])} folders")
    for search_path in _file_search_paths(kind):
        if (search_path / relative).is_file():
            return search_path / relative
    raise UserInputError(
        f"{name!r} not found in ComfyUI's {' / '.join(SINGLE_FILE_FOLDERS[kind])} folders. Put the file there and "
        "refresh."
    )


COMFY_TOKENIZERS = {"tokenizer": "text_encoders/llama_tokenizer", "tokenizer_2": "sd1_tokenizer"}
"""The tokenizer files ComfyUI ships inside its comfy package (HunyuanVideo 1: Llama and CLIP-L)."""


def comfy_tokenizer_folders() -> dict[str, Path]:
    """ComfyUI's own tokenizer folders that exist here, for loading without a model folder."""
    import comfy

    if not getattr(comfy, "__file__", None):
        return {}
    package = Path(comfy.__file__).parent
    return {name: package / sub for name, sub in COMFY_TOKENIZERS.items()
            if (package / sub / "tokenizer_config.json").is_file()}
def lora_names() -> list[str]:
    """The LoRA files in ComfyUI's models/loras folders (safetensors only: pickled files can run code)."""
    import folder_paths

    return sorted(name for name in folder_paths.get_filename_list("loras") if name.endswith(".safetensors"))


def resolve_lora(name: str) -> Path:
    import folder_paths

    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise UserInputError(f"LoRA {name!r} not found in ComfyUI's loras folders; put it in models/loras and refresh.")
    return Path(path)


def progress_bar(total: int) -> StepCallback:
    """A callback that moves ComfyUI's progress bar; ComfyUI raises from it when the user cancels."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)
    return lambda done, total, *_preview: bar.update_absolute(done, total)


def sampling_progress(total: int, latent_format_name: str) -> StepCallback:
    """ComfyUI's progress bar with a latent preview, drawn by ComfyUI's own previewer as the user set it up, for
    the latent format of that name in comfy.latent_formats (HunyuanVideo, HunyuanVideo15). A ComfyUI older than
    its support for the family (0.3.64 has no HunyuanVideo15) still runs it, with the progress bar only."""
    import comfy.latent_formats
    import comfy.utils
    import latent_preview

    format_class = getattr(comfy.latent_formats, latent_format_name, None)
    if format_class is None:
        logging.getLogger(__name__).warning(
            "HunyuanVideo (diffusers): this ComfyUI has no %s latent format, so sampling shows no previews; update "
            "ComfyUI to get them.", latent_format_name)
        return progress_bar(max(total, 1))
    bar = comfy.utils.ProgressBar(max(total, 1))
    latent_format = format_class()
    previewer = latent_preview.get_previewer(compute_device(), latent_format)

    def report(done: int, total: int, preview=None) -> None:
        image = None
        if previewer is not None and preview is not None:
            image = previewer.decode_latent_to_preview_image("JPEG", latent_format.process_in(preview))
        bar.update_absolute(done, total, image)

    return report


def make_room(bytes_needed: int) -> None:
    """Asks ComfyUI to unload its own models until `bytes_needed` are free on the compute device."""
    import comfy.model_management

    comfy.model_management.free_memory(bytes_needed, comfy.model_management.get_torch_device())


def load_model(folder: Path | ModelSource, dtypes: dict, plan, speed=None, loras=()) -> object:
    """The cached pipeline for these settings; the first call ties its release to ComfyUI's unloading."""
    _release_when_comfyui_unloads()
    model = PIPELINES.get(folder, dtypes, plan, progress_bar(1), speed)
    for line in apply_loras(model, loras):  # in place: LoRAs already applied stay, others are added or removed
        logging.info("HunyuanVideo (diffusers): %s", line)
    return model


def _release_when_comfyui_unloads() -> None:
    """Wraps `comfy.model_management.unload_all_models` (called by "free model and node cache" and after an
    out-of-memory error) so that it also releases our pipeline, which ComfyUI does not manage itself."""
    import comfy.model_management

    original = comfy.model_management.unload_all_models
    if getattr(original, "releases_hunyuan_diffusers", False):
        return

    def unload_all_models(*args, **kwargs):
        if PIPELINES.current is not None:
            PIPELINES.release()
            logging.info("HunyuanVideo (diffusers): released the loaded pipeline with ComfyUI's models.")
        return original(*args, **kwargs)

    unload_all_models.releases_hunyuan_diffusers = True
    comfy.model_management.unload_all_models = unload_all_models
