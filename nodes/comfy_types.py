"""Names the pack's nodes share: socket types and the menu category."""

CATEGORY = "HunyuanVideo (diffusers)"

MODEL = "HYVD_MODEL"  # a loaded, offload-configured HunyuanVideo pipeline
OFFLOAD = "HYVD_OFFLOAD"  # an offload plan: one configuration per component
CONDITIONING = "HYVD_CONDITIONING"  # encoded prompts (and negative prompts)
SPEED = "HYVD_SPEED"  # speed settings: step cache, attention backend, fp8 storage, compile
LORAS = "HYVD_LORAS"  # a list of LoRA files with their strengths, for the loader

MODEL_INPUT = (MODEL, {"tooltip": "The model from the HunyuanVideo loader."})
OFFLOAD_BASE_INPUT = (
    OFFLOAD,
    {"tooltip": "Settings of the components not chosen in apply_to. Unconnected: those keep 'none' (on the GPU)."},
)
OFFLOAD_OUTPUT_TOOLTIP = "Offload settings for the loader's offload input (or another offload node's base)."
VAE_MODEL_INPUT = (MODEL, {"tooltip": "The model from the HunyuanVideo loader (its VAE is used)."})
