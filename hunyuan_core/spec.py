"""What a diffusers model folder holds, as data: its components, their classes, dtypes and roles.

Each supported pipeline class is described by a `PipelineSpec`. Loading, offloading and the offload proof
read these specs; a component's `Role` (transformer, text encoder, image encoder, VAE) is how settings are
addressed without knowing a family's component names, so an offload preset "for the text encoders" means
Llama and CLIP in one family and Qwen2.5-VL and ByT5 in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Role(str, Enum):
    """What a torch component does; settings (offloading, dtypes) are chosen per role."""

    TRANSFORMER = "transformer"
    TEXT_ENCODER = "text_encoder"
    IMAGE_ENCODER = "image_encoder"
    VAE = "vae"

    @property
    def label(self) -> str:
        """How a message names the components of this role."""
        return {"transformer": "transformer", "text_encoder": "text encoders", "image_encoder": "image encoder",
                "vae": "VAE"}[self.value]


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    library: str  # "diffusers" or "transformers", as model_index.json names it
    class_names: tuple[str, ...]  # accepted class names (a tokenizer may be saved as slow or fast)
    role: Role | None = None  # None: not a torch module (tokenizer, scheduler, processor, guider)
    default_dtype: torch.dtype | None = None  # on an accelerator
    # Named children that group offloading must treat as blocks. Needed where the default split (top-level
    # ModuleLists only) is too coarse or never fires: a VAE's decode() bypasses forward(), so without
    # these names block-level offloading of the VAE never onloads anything.
    offload_block_modules: tuple[str, ...] | None = None
    # The class it is loaded as when that differs from the folder's: Llava without its unused 1 GB head.
    load_class: str | None = None

    @property
    def is_module(self) -> bool:
        return self.role is not None

    @property
    def loaded_class(self) -> str:
        return self.load_class or self.class_names[0]


@dataclass(frozen=True)
class PipelineSpec:
    pipeline_class: str
    components: tuple[ComponentSpec, ...]

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.is_module)

    def names_with_role(self, role: Role) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.role == role)

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles this pipeline's torch components play, in the order of `Role`."""
        present = {c.role for c in self.components if c.is_module}
        return tuple(role for role in Role if role in present)

    def component(self, name: str) -> ComponentSpec:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)
