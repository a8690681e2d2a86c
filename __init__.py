"""ComfyUI entry point of the HunyuanVideo (diffusers) node pack; the library itself is hunyuan_core."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
