"""Loading HunyuanVideo from the single files ComfyUI users have (transformer, VAE, text encoders), mixed with
a diffusers folder or not: `ModelSource` names them; `load_pipeline(ModelSource(...))` loads them.

Only `source` is imported here: the loader imports this package, and the modules that load weights import
the loader.
"""

from .source import ModelSource

__all__ = ["ModelSource"]
