"""Names the pack's nodes share: socket types and the menu category."""

CATEGORY = "HunyuanVideo (diffusers)"

MODEL = "HYVD_MODEL"  # a loaded, offload-configured HunyuanVideo pipeline
OFFLOAD = "HYVD_OFFLOAD"  # an offload plan: one configuration per component
CONDITIONING = "HYVD_CONDITIONING"  # encoded prompts (and negative prompts)
