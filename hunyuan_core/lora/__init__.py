"""LoRAs for the transformer: the key formats people share, converted to what diffusers/peft load, applied
as adapters on a loaded model with offloading active."""

from .apply import apply_loras
from .files import LoraFile, parse_lora

__all__ = ["LoraFile", "apply_loras", "parse_lora"]
