"""The HunyuanVideo family through diffusers, with group offloading of every component.

A plain library: nothing here imports ComfyUI. Typical use::

    model = load_pipeline("models/diffusers/HunyuanVideo", offload=plan)
    conditioning = encode_prompts(model, ["a cat walks on the grass"])
    latents = sample(model, conditioning, SamplingSettings(width=848, height=480, frames=61))
    frames = decode(model, latents)  # [videos, frames, H, W, 3], 0..1
"""

from .errors import UserInputError
from .loading.loader import load_pipeline
from .loading.model import LoadedPipeline
from .offload.config import OffloadConfig, OffloadMode, OffloadPlan
from .offload.probe import count_onloads, hook_counts
from .runtime.encode import Conditioning, encode_prompts
from .runtime.rows import RowTensors
from .runtime.sampling import SamplingSettings, sample
from .runtime.vae import TilingSettings, decode

__all__ = [
    "Conditioning",
    "LoadedPipeline",
    "OffloadConfig",
    "OffloadMode",
    "OffloadPlan",
    "RowTensors",
    "SamplingSettings",
    "TilingSettings",
    "UserInputError",
    "count_onloads",
    "decode",
    "encode_prompts",
    "hook_counts",
    "load_pipeline",
    "sample",
]
