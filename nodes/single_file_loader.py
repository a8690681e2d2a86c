"""Single-file loader node: the transformer, VAE, text and image encoders from ComfyUI's own model folders
(models/diffusion_models, models/vae, models/text_encoders, models/clip_vision), optionally with a diffusers folder
for the rest."""

from __future__ import annotations

from ..hunyuan_core.errors import UserInputError
from ..hunyuan_core.loading.single_file import ModelSource
from . import comfy_bridge
from .loader import ModelLoaderNode, dtype_inputs, load, optional_inputs, times_released

FROM_FOLDER = "from model folder"
NO_FOLDER = "none"


def _file_input(kind: str, tooltip: str, optional_file: bool = True) -> tuple:
    names = comfy_bridge.single_file_names(kind)
    return ([FROM_FOLDER, *names] if optional_file else names), {"tooltip": tooltip}


class HunyuanDiffusersSingleFileLoader(ModelLoaderNode):
    DESCRIPTION = (
        "Loads HunyuanVideo from the single files ComfyUI uses: the transformer (bf16, fp8, scaled fp8 or a GGUF) "
        "from models/diffusion_models, and optionally the VAE and the text encoders from models/vae and "
        "models/text_encoders. Anything not given as a file comes from the model folder, if one is chosen. "
        "fp8 and GGUF files stay small in memory. The output works with every other node, offloading included. "
        "HunyuanVideo 1 text-to-video loads from files alone; image-to-video and HunyuanVideo 1.5 take every "
        "weight from files too, with that model's diffusers folder for configs and tokenizers."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "transformer": _file_input(
                    "transformer",
                    "The transformer file in models/diffusion_models (or models/unet): e.g. "
                    "hunyuan_video_t2v_720p_bf16.safetensors, an fp8 file, or a GGUF such as "
                    "hunyuan-video-t2v-720p-Q4_0.gguf.", optional_file=False),
                "vae": _file_input(
                    "vae", "The VAE file in models/vae (HunyuanVideo 1: hunyuan_video_vae_bf16.safetensors; 1.5: "
                    "hunyuanvideo15_vae_fp16.safetensors), or the model folder's."),
                "text_encoder": _file_input(
                    "text_encoder", "The first text encoder file in models/text_encoders (HunyuanVideo 1: "
                    "llava_llama3_fp16.safetensors or llava_llama3_fp8_scaled.safetensors; 1.5: "
                    "qwen_2.5_vl_7b.safetensors or qwen_2.5_vl_7b_fp8_scaled.safetensors), or the model folder's."),
                "clip": _file_input(
                    "text_encoder", "The second text encoder file in models/text_encoders (HunyuanVideo 1: "
                    "clip_l.safetensors; 1.5: byt5_small_glyphxl_fp16.safetensors), or the model folder's."),
                "model_folder": (
                    [NO_FOLDER, *comfy_bridge.model_folder_names()],
                    {"tooltip": "A diffusers HunyuanVideo folder in models/diffusers for every component not given "
                                "as a file, its configs and tokenizers. none: every component from a file, the "
                                "released model's configs and the tokenizers ComfyUI ships."},
                ),
                **dtype_inputs(),
            },
            "optional": {
                **optional_inputs(),
                "clip_vision": _file_input(
                    "image_encoder", "Image-to-video, a file in models/clip_vision: HunyuanVideo 1.5's SigLIP "
                    "(sigclip_vision_patch14_384.safetensors), or HunyuanVideo 1's Llava vision tower "
                    "(llava_llama3_vision.safetensors, together with the llava_llama3 text_encoder file); or the "
                    "model folder's."),
            },
        }

    @classmethod
    def IS_CHANGED(cls, transformer, vae, text_encoder, clip, model_folder, transformer_dtype, text_encoder_dtype,
                   vae_dtype, offload=None, speed=None, loras=None, clip_vision=FROM_FOLDER):
        """Changes when the model loaded for these inputs was released, so ComfyUI loads it again."""
        source = model_source(transformer, vae, text_encoder, clip, model_folder, clip_vision)
        return times_released(source, transformer_dtype, text_encoder_dtype, vae_dtype, speed)

    def load(self, transformer, vae, text_encoder, clip, model_folder, transformer_dtype, text_encoder_dtype,
             vae_dtype, offload=None, speed=None, loras=None, clip_vision=FROM_FOLDER):
        source = model_source(transformer, vae, text_encoder, clip, model_folder, clip_vision)
        return load(source, transformer_dtype, text_encoder_dtype, vae_dtype, offload, speed, loras)


def model_source(transformer: str, vae: str, text_encoder: str, clip: str, model_folder: str,
                 clip_vision: str = FROM_FOLDER) -> ModelSource:
    """The files and folder the inputs name; without a folder, the tokenizers ComfyUI ships."""

    def file(kind: str, name: str):
        return None if name == FROM_FOLDER else comfy_bridge.resolve_single_file(kind, name)

    files = {"transformer": file("transformer", transformer), "vae": file("vae", vae),
             "text_encoder": file("text_encoder", text_encoder), "text_encoder_2": file("text_encoder", clip),
             "image_encoder": file("image_encoder", clip_vision)}
    if model_folder != NO_FOLDER:
        return ModelSource(folder=comfy_bridge.resolve_model_folder(model_folder), **files)
    tokenizers = comfy_bridge.comfy_tokenizer_folders()
    missing = [name for name in comfy_bridge.COMFY_TOKENIZERS if name not in tokenizers]
    if missing:
        raise UserInputError(
            f"No model folder is chosen and ComfyUI's own tokenizer files were not found "
            f"({', '.join(f'comfy/{comfy_bridge.COMFY_TOKENIZERS[n]}' for n in missing)}). Choose a diffusers "
            "HunyuanVideo folder in model_folder for the tokenizers, or update ComfyUI."
        )
    return ModelSource(**files, **tokenizers)
