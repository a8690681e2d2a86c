"""What a diffusers HunyuanVideo folder holds, as data.

Each supported pipeline class is described by a `PipelineSpec`: its components, the library class
each must be, the dtype it defaults to on an accelerator, and how group offloading should split it.
Loading, offloading and the offload proof all read these specs, so supporting another HunyuanVideo
pipeline from diffusers (image-to-video, FramePack, HunyuanVideo 1.5) means adding a spec here and
the sampling step that is new, not restructuring what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    library: str  # "diffusers" or "transformers", as model_index.json names it
    class_names: tuple[str, ...]  # accepted class names (a tokenizer may be saved as slow or fast)
    default_dtype: torch.dtype | None = None  # None: not a torch module (tokenizer, scheduler)
    # Named children that group offloading must treat as blocks. Needed where the default split (top-level
    # ModuleLists only) is too coarse or never fires: the VAE's decode() bypasses forward(), so without
    # these names block-level offloading of the VAE never onloads anything.
    offload_block_modules: tuple[str, ...] | None = None

    @property
    def is_module(self) -> bool:
        return self.default_dtype is not None


@dataclass(frozen=True)
class PipelineSpec:
    pipeline_class: str
    components: tuple[ComponentSpec, ...]

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.is_module)

    def component(self, name: str) -> ComponentSpec:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)


HUNYUAN_VIDEO_T2V = PipelineSpec(
    pipeline_class="HunyuanVideoPipeline",
    components=(
        ComponentSpec("transformer", "diffusers", ("HunyuanVideoTransformer3DModel",), torch.bfloat16),
        ComponentSpec("text_encoder", "transformers", ("LlamaModel",), torch.float16),
        ComponentSpec("tokenizer", "transformers", ("LlamaTokenizerFast", "LlamaTokenizer", "PreTrainedTokenizerFast")),
        ComponentSpec(
            "text_encoder_2",
            "transformers",
            ("CLIPTextModel",),
            torch.float16,
            offload_block_modules=("text_model", "encoder"),
        ),
        ComponentSpec("tokenizer_2", "transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
        ComponentSpec(
            "vae",
            "diffusers",
            ("AutoencoderKLHunyuanVideo",),
            torch.float16,
            offload_block_modules=("quant_conv", "post_quant_conv", "encoder", "decoder"),
        ),
        ComponentSpec("scheduler", "diffusers", ("FlowMatchEulerDiscreteScheduler",)),
    ),
)

SUPPORTED_PIPELINES = {spec.pipeline_class: spec for spec in (HUNYUAN_VIDEO_T2V,)}
