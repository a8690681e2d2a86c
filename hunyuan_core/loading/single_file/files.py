"""Reading a single weights file: first its header only (names, shapes, storage types), so that a wrong,
truncated or unsupported file is refused before gigabytes are read; then its tensors.

safetensors (`.safetensors`, `.sft`) and GGUF (`.gguf`, city96's ComfyUI-GGUF files) are read; pickled
checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`) are refused, since unpickling can run code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...errors import UserInputError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
GGUF_SUFFIXES = (".gguf",)
PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]  # the logical shape (a GGUF tensor's unpacked one)
    dtype: torch.dtype | None  # None for a GGUF quantized type
    gguf_type: str | None = None  # GGUF storage type name (Q8_0, BF16, F32, ...)


@dataclass
class FileHeader:
    path: Path
    component: str  # for messages: "transformer", "VAE", ...
    format: str  # "safetensors" or "gguf"
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    architecture: str | None = None  # GGUF general.architecture

    @property
    def fp8_dtypes(self) -> set[torch.dtype]:
        return {t.dtype for t in self.tensors.values() if t.dtype in FP8_DTYPES}

    @property
    def storage(self) -> str:
        """How the weights are stored, for messages and checks: "bf16", "fp16", "fp32", "fp8", "scaled fp8" or
        "GGUF <its most common quantized type>"."""
        if self.format == "gguf":
            types = [t.gguf_type for t in self.tensors.values()]
            quantized = [t for t in types if t not in ("F32", "F16", "BF16")] or types
            return "GGUF " + max(set(quantized), key=quantized.count)
        if "scaled_fp8" in self.tensors or any(k.endswith((".scale_weight", ".weight_scale")) for k in self.tensors):
            return "scaled fp8"
        if self.fp8_dtypes:
            return "fp8"
        floats = [t.dtype for t in self.tensors.values() if t.dtype is not None and t.dtype.is_floating_point]
        dtype = max(set(floats), key=floats.count) if floats else None
        return {torch.float16: "fp16", torch.float32: "fp32"}.get(dtype, "bf16")

    def first_keys(self, count: int = 3) -> str:
        return ", ".join(list(self.tensors)[:count]) or "none"


def read_header(path: str | Path, component: str) -> FileHeader:
    """The file's tensor names, shapes and storage types, without reading the weights."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"The {component} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in PICKLED_SUFFIXES:
        raise UserInputError(
            f"{path.name} is a pickled checkpoint; this pack reads .safetensors and .gguf files only (unpickling "
            f"can run code). Use the .safetensors version of the {component}."
        )
    try:
        if suffix in GGUF_SUFFIXES:
            return _gguf_header(path, component)
        if suffix in SAFETENSORS_SUFFIXES:
            return _safetensors_header(path, component)
    except UserInputError:
        raise
    except Exception as error:  # truncated and corrupted files fail in many ways inside the readers
        raise UserInputError(
            f"Could not read {path.name} as a {suffix[1:]} file ({error}). It is incomplete or corrupted; "
            "download it again."
        ) from error
    raise UserInputError(
        f"{path.name}: unknown file type {suffix or '(none)'}; the {component} must be a .safetensors or .gguf file."
    )


def _safetensors_header(path: Path, component: str) -> FileHeader:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as file:  # checks that the data covers the header: truncation
        metadata = dict(file.metadata() or {})
        for key in file.keys():
            sliced = file.get_slice(key)
            dtype = sliced.get_dtype()
            tensors[key] = TensorInfo(tuple(sliced.get_shape()), SAFETENSORS_DTYPES.get(dtype))
    return FileHeader(path, component, "safetensors", tensors, metadata)


def _gguf_header(path: Path, component: str) -> FileHeader:
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError:
        raise UserInputError(
            f"{path.name} is a GGUF file; reading it needs the gguf package: pip install gguf (with the Python "
            "that runs ComfyUI)."
        ) from None

    reader = GGUFReader(str(path))
    unquantized = {GGMLQuantizationType.F32: torch.float32, GGMLQuantizationType.F16: torch.float16}
    tensors = {}
    for tensor in reader.tensors:
        tensor.data.shape  # noqa: B018 - a truncated file fails here, in the reader's reshape
        tensors[tensor.name] = TensorInfo(
            tuple(int(n) for n in reversed(tensor.shape)), unquantized.get(tensor.tensor_type),
            GGMLQuantizationType(tensor.tensor_type).name,
        )
    architecture = reader.get_field("general.architecture")
    return FileHeader(path, component, "gguf", tensors,
                      architecture=architecture.contents() if architecture is not None else None)


def read_tensors(header: FileHeader) -> dict[str, torch.Tensor]:
    """All tensors of the file: safetensors memory-mapped, GGUF through diffusers' reader (quantized tensors
    as `GGUFParameter`s)."""
    try:
        if header.format == "gguf":
            from diffusers.models.model_loading_utils import load_gguf_checkpoint

            # Called directly: through from_single_file(path) its error for an unsupported quantization type is
            # swallowed into a generic OSError (diffusers 0.42.1, models/model_loading_utils.py:187-204).
            return load_gguf_checkpoint(str(header.path))
        from safetensors.torch import load_file

        return load_file(str(header.path))
    except Exception as error:
        raise UserInputError(
            f"Could not read the weights of {header.path.name} ({error}). The file is incomplete or corrupted; "
            "download it again."
        ) from error


@torch.no_grad()
def own_aligned_storage(module: torch.nn.Module) -> None:
    """Gives every CPU tensor of `module` that is a view or not 64-byte aligned an allocation of its own.

    Tensors read from a file are slices of its memory map at the file's offsets, and the fused layers' splits
    are views of one tensor: CPU kernels round differently on unaligned data (a tiny model's output moved by
    2e-6), and block-level disk offloading refuses to save tensors that share memory. `p.data = clone` keeps
    the Parameter object (and a GGUF parameter's quantization type).
    """
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type != "cpu" or tensor.device.type == "meta":
            continue
        size = tensor.numel() * tensor.element_size()
        owns = tensor.storage_offset() == 0 and tensor.untyped_storage().nbytes() == size
        if not owns or tensor.data_ptr() % 64:
            tensor.data = tensor.data.clone()


def strip_prefix(keys, anchors: tuple[str, ...]) -> str:
    """The prefix in front of the model's own names (`model.diffusion_model.`, `diffusion_model.`, `vae.`, ...),
    found from the first key that contains one of `anchors`; "" when the names carry none."""
    for key in keys:
        for anchor in anchors:
            at = key.find(anchor)
            if at >= 0:
                return key[:at]
    return ""


def without_prefix(tensors: dict, prefix: str) -> dict:
    """The tensors under `prefix`, named without it (other keys, such as a VAE stored alongside, are dropped)."""
    if not prefix:
        return dict(tensors)
    return {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}


def count_indices(keys, pattern: str) -> int:
    """How many distinct indices `pattern`'s group matches in `keys` (layers, blocks): depths from the names."""
    return len({m.group(1) for key in keys for m in [re.match(pattern, key)] if m})
