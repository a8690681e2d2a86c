"""HunyuanVideo 1 text-to-video (`HunyuanVideoPipeline`): Llama + CLIP text, embedded guidance.

Text: the Llama hidden states of the prompt wrapped in the folder's prompt template, and CLIP's pooled
embedding. diffusers' `encode_prompt` ignores `prompt_2` and always feeds CLIP the Llama prompt (diffusers
#13588); the narrow fix is to encode the CLIP prompt with the pipeline's own CLIP helper and hand it to
`encode_prompt` as `pooled_prompt_embeds`, which diffusers then uses as is.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..runtime.attention_mask import install_batch_safe_attention
from ..runtime.recovery import recovering_encoders
from ..runtime.rows import RowTensors
from ..spec import ComponentSpec, PipelineSpec, Role
from .base import FamilyDefaults, LatentFormat, ModelFamily

MAX_SEQUENCE_LENGTH = 256

LLAMA_TOKENIZERS = ("LlamaTokenizerFast", "LlamaTokenizer", "PreTrainedTokenizerFast")
CLIP_TEXT = ComponentSpec("text_encoder_2", "transformers", ("CLIPTextModel",), Role.TEXT_ENCODER, torch.float16,
                          offload_block_modules=("text_model", "encoder"))
CLIP_TOKENIZER = ComponentSpec("tokenizer_2", "transformers", ("CLIPTokenizer", "CLIPTokenizerFast"))
VAE = ComponentSpec("vae", "diffusers", ("AutoencoderKLHunyuanVideo",), Role.VAE, torch.float16,
                    offload_block_modules=("quant_conv", "post_quant_conv", "encoder", "decoder"))
SCHEDULER = ComponentSpec("scheduler", "diffusers", ("FlowMatchEulerDiscreteScheduler",))
TRANSFORMER = ComponentSpec("transformer", "diffusers", ("HunyuanVideoTransformer3DModel",), Role.TRANSFORMER,
                            torch.bfloat16)


class HunyuanVideo(ModelFamily):
    name = "HunyuanVideo 1 text-to-video"
    spec = PipelineSpec(
        pipeline_class="HunyuanVideoPipeline",
        components=(
            TRANSFORMER,
            ComponentSpec("text_encoder", "transformers", ("LlamaModel",), Role.TEXT_ENCODER, torch.float16),
            ComponentSpec("tokenizer", "transformers", LLAMA_TOKENIZERS),
            CLIP_TEXT,
            CLIP_TOKENIZER,
            VAE,
            SCHEDULER,
        ),
    )
    latent = LatentFormat(channels=16, spatial=8, temporal=4, patch=2, scaling_factor=0.476986,
                          comfy_format="HunyuanVideo")
    defaults = FamilyDefaults(width=848, height=480, frames=61, steps=30, guidance_scale=6.0)
    secondary_prompt = "CLIP"
    max_text_tokens = MAX_SEQUENCE_LENGTH

    def prepare_pipeline(self, pipe) -> None:
        # The HunyuanVideo transformer takes the valid text tokens to come first: padding must be on the right.
        pipe.tokenizer.padding_side = "right"
        install_batch_safe_attention(pipe.transformer)

    def default_prompt_template(self, pipe) -> dict:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import (
            DEFAULT_PROMPT_TEMPLATE,
        )

        return dict(DEFAULT_PROMPT_TEMPLATE)

    def prompt_template_problem(self, template) -> str | None:
        if not isinstance(template, dict) or "{}" not in str(template.get("template", "")):
            return ("must hold an object with a 'template' string containing '{}' where the prompt goes and an "
                    "integer 'crop_start'.")
        if not isinstance(template.get("crop_start"), int) or template["crop_start"] < 0:
            return "must give 'crop_start' as a non-negative integer."
        return None

    def text_passes(self) -> int:
        return 2

    def encode_text(self, model, prompts: list[str], secondary: list[str] | None, images,
                    report_pass: Callable[[], None]) -> RowTensors:
        """Runs CLIP, then Llama; progress is reported between the passes, where a cancel leaves nothing behind."""
        pipe, device = model.pipe, model.device
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            pooled = pipe._get_clip_prompt_embeds(secondary or prompts, device=device)
        report_pass()
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            embeds, pooled, mask = pipe.encode_prompt(
                prompt=prompts,
                prompt_template=model.prompt_template,
                pooled_prompt_embeds=pooled,
                device=device,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
            )
        report_pass()
        return text_rows(embeds, mask, pooled)

    def run_inputs(self, model, conditioning, rows, settings, latent_shape) -> RowTensors:
        transformer = model.pipe.transformer
        guidance = torch.full((len(rows),), settings.guidance_scale * 1000.0, dtype=transformer.dtype,
                              device=model.device)
        return RowTensors({"guidance": guidance})


def text_rows(embeds: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> RowTensors:
    """The v1 transformer's text inputs, on the CPU."""
    return RowTensors(
        {"encoder_hidden_states": embeds.cpu(), "encoder_attention_mask": mask.cpu(),
         "pooled_projections": pooled.cpu()},
        masks={"encoder_hidden_states": "encoder_attention_mask"},
    )


HUNYUAN_VIDEO = HunyuanVideo()
