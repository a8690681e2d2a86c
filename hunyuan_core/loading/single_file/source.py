"""Where a model's weights come from when they are not (all) one diffusers folder.

ComfyUI users hold single files: a transformer in `models/diffusion_models` (bf16, fp8 or GGUF), a VAE in
`models/vae`, the text encoders in `models/text_encoders`, an image encoder in `models/clip_vision`. A
`ModelSource` names those files, and optionally a diffusers folder for every component not given as a file;
without a folder, the configs shipped with the pack (the released models') and the given tokenizer folders fill
in the rest. It is plain data, so it can key
a cache and travel through a node graph.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

FILE_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "image_encoder")
"""Components that can come from a single file (which of them a family reads: pipeline.py)."""
TOKENIZERS = ("tokenizer", "tokenizer_2")


@dataclass(frozen=True)
class ModelSource:
    folder: Path | None = None  # a diffusers folder: configs, tokenizers, scheduler and any component not given
    transformer: Path | None = None  # .safetensors (bf16/fp16/fp32, fp8, ComfyUI scaled fp8) or .gguf
    vae: Path | None = None
    text_encoder: Path | None = None  # the Llama (llava_llama3_fp16 / _fp8_scaled) or 1.5's Qwen2.5-VL
    text_encoder_2: Path | None = None  # CLIP-L (clip_l.safetensors) or 1.5's ByT5 (byt5_small_glyphxl_fp16)
    # models/clip_vision: 1.5 image-to-video's SigLIP (sigclip_vision_patch14_384), or HunyuanVideo 1
    # image-to-video's Llava vision tower (llava_llama3_vision), which goes with the text_encoder file
    image_encoder: Path | None = None
    tokenizer: Path | None = None  # a tokenizer folder, when there is no model folder
    tokenizer_2: Path | None = None

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                object.__setattr__(self, field.name, Path(value).expanduser())

    @property
    def files(self) -> dict[str, Path]:
        """Component name -> its single file, for the components given as files."""
        return {name: getattr(self, name) for name in FILE_COMPONENTS if getattr(self, name) is not None}

    @property
    def tokenizer_folders(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in TOKENIZERS if getattr(self, name) is not None}

    @property
    def key(self) -> tuple:
        """What identifies the weights (resolved paths), for caching a loaded model."""
        return tuple((field.name, str(getattr(self, field.name).resolve()) if getattr(self, field.name) else None)
                     for field in fields(self))

    def describe(self) -> str:
        """For logs: which file each component comes from."""
        if not self.files:
            return str(self.folder)
        parts = [f"{name}: {path.name}" for name, path in self.files.items()]
        if self.folder is not None:
            parts.append(f"the rest from {self.folder}")
        return ", ".join(parts)
