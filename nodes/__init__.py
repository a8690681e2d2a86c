"""The pack's ComfyUI nodes (classic V1 API): declarations that each make one call into hunyuan_core."""

from .decode import HunyuanDiffusersDecode
from .encode import HunyuanDiffusersTextEncode
from .loader import HunyuanDiffusersLoader
from .lora import HunyuanDiffusersLoRA
from .offload import HunyuanDiffusersOffload
from .offload_preset import HunyuanDiffusersOffloadPreset
from .sampler import HunyuanDiffusersSampler
from .single_file_loader import HunyuanDiffusersSingleFileLoader
from .speed import HunyuanDiffusersSpeed
from .video_encode import HunyuanDiffusersVAEEncode

NODE_CLASS_MAPPINGS = {
    "HunyuanDiffusersLoader": HunyuanDiffusersLoader,
    "HunyuanDiffusersOffload": HunyuanDiffusersOffload,
    "HunyuanDiffusersOffloadPreset": HunyuanDiffusersOffloadPreset,
    "HunyuanDiffusersTextEncode": HunyuanDiffusersTextEncode,
    "HunyuanDiffusersSampler": HunyuanDiffusersSampler,
    "HunyuanDiffusersDecode": HunyuanDiffusersDecode,
    "HunyuanDiffusersVAEEncode": HunyuanDiffusersVAEEncode,
    "HunyuanDiffusersSpeed": HunyuanDiffusersSpeed,
    "HunyuanDiffusersSingleFileLoader": HunyuanDiffusersSingleFileLoader,
    "HunyuanDiffusersLoRA": HunyuanDiffusersLoRA,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HunyuanDiffusersLoader": "HunyuanVideo Loader (diffusers)",
    "HunyuanDiffusersOffload": "HunyuanVideo Offload (diffusers)",
    "HunyuanDiffusersOffloadPreset": "HunyuanVideo Offload Preset (diffusers)",
    "HunyuanDiffusersTextEncode": "HunyuanVideo Text Encode (diffusers)",
    "HunyuanDiffusersSampler": "HunyuanVideo Sampler (diffusers)",
    "HunyuanDiffusersDecode": "HunyuanVideo Decode (diffusers)",
    "HunyuanDiffusersVAEEncode": "HunyuanVideo VAE Encode (diffusers)",
    "HunyuanDiffusersSpeed": "HunyuanVideo Speed (diffusers)",
    "HunyuanDiffusersSingleFileLoader": "HunyuanVideo Single-File Loader (diffusers)",
    "HunyuanDiffusersLoRA": "HunyuanVideo LoRA (diffusers)",
}
