"""ComfyUI entry point of the HunyuanVideo (diffusers) node pack; the library itself is hunyuan_core.

The nodes are imported only inside ComfyUI: elsewhere (a test runner collecting this folder, say)
importing this file must not require ComfyUI or a parent package.
"""

try:
    import comfy.utils  # noqa: F401 - present only inside ComfyUI
except ImportError:
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
