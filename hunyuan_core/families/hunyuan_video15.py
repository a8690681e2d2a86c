"""HunyuanVideo 1.5 (`HunyuanVideo15Pipeline`, `HunyuanVideo15ImageToVideoPipeline`): Qwen2.5-VL + ByT5
text, a 32-channel 16x VAE, classifier-free guidance through the folder's diffusers guider.

The transformer takes 65 channels: the noisy latents, a condition (the start image's latent in frame 0 for
image-to-video, zeros for text-to-video) and a mask marking the conditioned frame; plus SigLIP embeddings of
the start image (zeros for text-to-video). The variants are the folders' own configs: a cfg-distilled
folder's guider has scale 1 (one transformer pass per step); a step-distilled (MeanFlow) transformer also
takes the step's target timestep, which the pack passes for text- and image-to-video alike.

Where diffusers 0.42.1's pipelines go wrong with batches (the VAE fails for more than one video; several
prompts with several videos each get each other's masks; text-to-video cannot make several videos per
prompt), the pack encodes per prompt, selects rows per video and runs the VAE one video at a time.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..runtime.attention_mask import install_batch_safe_attention
from ..runtime.images import fit_images, image_latents
from ..runtime.recovery import recovering_encoders
from ..runtime.rows import RowTensors
from ..spec import ComponentSpec, PipelineSpec, Role
from .base import FamilyDefaults, LatentFormat, ModelFamily, quietly

COMPONENTS = (
    ComponentSpec("transformer", "diffusers", ("HunyuanVideo15Transformer3DModel",), Role.TRANSFORMER, torch.bfloat16),
    ComponentSpec("text_encoder", "transformers", ("Qwen2_5_VLTextModel",), Role.TEXT_ENCODER, torch.bfloat16),
    ComponentSpec("tokenizer", "transformers", ("Qwen2Tokenizer", "Qwen2TokenizerFast")),
    # ByT5 puts its layers one level down (`encoder.block`): without the name, one group holds the whole model.
    ComponentSpec("text_encoder_2", "transformers", ("T5EncoderModel",), Role.TEXT_ENCODER, torch.bfloat16,
                  offload_block_modules=("encoder",)),
    ComponentSpec("tokenizer_2", "transformers", ("ByT5Tokenizer",)),
    # decode()/encode() bypass forward(), as in HunyuanVideo 1's VAE: the coders must be groups of their own.
    ComponentSpec("vae", "diffusers", ("AutoencoderKLHunyuanVideo15",), Role.VAE, torch.bfloat16,
                  offload_block_modules=("encoder", "decoder")),
    ComponentSpec("scheduler", "diffusers", ("FlowMatchEulerDiscreteScheduler",)),
    ComponentSpec("guider", "diffusers", ("ClassifierFreeGuidance",)),
)
TEMPLATE_KEYS = {"system_message": str, "crop_start": int, "max_length": int, "byt5_max_length": int,
                 "image_tokens": int}
MEANFLOW_STEPS = 12  # Tencent's recommendation for the step-distilled model (8 to 12)


class HunyuanVideo15(ModelFamily):
    name = "HunyuanVideo 1.5 text-to-video"
    spec = PipelineSpec(pipeline_class="HunyuanVideo15Pipeline", components=COMPONENTS)
    latent = LatentFormat(channels=32, spatial=16, temporal=4, patch=1, scaling_factor=1.03682,
                          comfy_format="HunyuanVideo15")
    defaults = FamilyDefaults(width=848, height=480, frames=121, steps=50, guidance_scale=6.0)
    max_text_tokens = 1000 + 256 + 729  # Qwen, ByT5 and image tokens

    def prepare_pipeline(self, pipe) -> None:
        pipe.tokenizer.padding_side = "right"  # the crop takes the valid tokens to come first
        install_batch_safe_attention(pipe.transformer)

    def default_prompt_template(self, pipe) -> dict:
        """diffusers' own text settings, which the pipeline keeps as attributes rather than in its folder."""
        return {"system_message": pipe.system_message, "crop_start": pipe.prompt_template_encode_start_idx,
                "max_length": pipe.tokenizer_max_length, "byt5_max_length": pipe.tokenizer_2_max_length,
                "image_tokens": pipe.vision_num_semantic_tokens}

    def prompt_template_problem(self, template) -> str | None:
        if not isinstance(template, dict) or not all(isinstance(template.get(k), t) for k, t in TEMPLATE_KEYS.items()):
            return f"must hold an object with {', '.join(f'{k} ({t.__name__})' for k, t in TEMPLATE_KEYS.items())}."
        lengths = (template["max_length"], template["byt5_max_length"], template["image_tokens"])
        if template["crop_start"] < 0 or min(lengths) < 1:
            return "must give a non-negative crop_start and positive lengths."
        return None

    def default_steps(self, pipe) -> int:
        return MEANFLOW_STEPS if pipe.transformer.config.use_meanflow else self.defaults.steps

    def text_passes(self) -> int:
        return 2

    def encode_text(self, model, prompts: list[str], secondary, images, report_pass: Callable[[], None]) -> RowTensors:
        """Qwen2.5-VL on the prompts in the chat template, then ByT5 on the text in quotes (zeros without)."""
        pipe, device, template = model.pipe, model.device, model.prompt_template
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            embeds, mask = pipe._get_mllm_prompt_embeds(
                text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, prompt=prompts, device=device,
                tokenizer_max_length=template["max_length"], system_message=template["system_message"],
                crop_start=template["crop_start"],
            )
        report_pass()
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            glyphs, glyph_mask = pipe._get_byt5_prompt_embeds(
                tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2, prompt=prompts, device=device,
                tokenizer_max_length=template["byt5_max_length"],
            )
        report_pass()
        return RowTensors(
            {"encoder_hidden_states": embeds.cpu(), "encoder_attention_mask": mask.cpu(),
             "encoder_hidden_states_2": glyphs.cpu(), "encoder_attention_mask_2": glyph_mask.cpu()},
            masks={"encoder_hidden_states": "encoder_attention_mask",
                   "encoder_hidden_states_2": "encoder_attention_mask_2"},
        )

    def run_inputs(self, model, conditioning, rows, settings, latent_shape) -> RowTensors:
        """No image: a zero condition and zero image embeddings (the transformer then masks them out)."""
        transformer = model.pipe.transformer
        batch, (channels, frames, height, width) = len(rows), latent_shape
        condition = torch.zeros(batch, channels + 1, frames, height, width, device=model.device)
        image = torch.zeros(batch, model.prompt_template["image_tokens"], transformer.config.image_embed_dim,
                            dtype=transformer.dtype, device=model.device)
        return RowTensors({"condition": condition, "image_embeds": image})

    def predict(self, model, latents, timestep, next_timestep, inputs: RowTensors) -> torch.Tensor:
        tensors = dict(inputs.tensors)
        hidden = torch.cat([latents, tensors.pop("condition").to(latents.dtype)], dim=1)
        transformer = model.pipe.transformer
        # Its time embedding runs in the timestep's dtype (diffusers' pipeline casts it to the latents' dtype).
        times = {"timestep": timestep.to(transformer.dtype)}
        if transformer.config.use_meanflow:
            times["timestep_r"] = next_timestep.to(transformer.dtype)
        return transformer(hidden_states=hidden.to(transformer.dtype), **times, **tensors, return_dict=False)[0]

    def guider(self, model, settings):
        """The folder's guider (scale 6 for the base models, 1 for the distilled ones: one pass per step), its
        scale replaced by `true_cfg_scale` when that is set (0 keeps the folder's)."""
        guider = model.pipe.guider
        overrides = {"guidance_scale": settings.true_cfg_scale} if settings.true_cfg_scale else {}
        return quietly(guider.new, **overrides)


class HunyuanVideo15ImageToVideo(HunyuanVideo15):
    name = "HunyuanVideo 1.5 image-to-video"
    spec = PipelineSpec(
        pipeline_class="HunyuanVideo15ImageToVideoPipeline",
        components=COMPONENTS + (
            ComponentSpec("image_encoder", "transformers", ("SiglipVisionModel",), Role.IMAGE_ENCODER,
                          torch.bfloat16, offload_block_modules=("encoder",)),
            ComponentSpec("feature_extractor", "transformers",
                          ("SiglipImageProcessor", "SiglipImageProcessorPil", "SiglipImageProcessorFast")),
        ),
    )
    takes_image = True

    def prepare_pipeline(self, pipe) -> None:
        super().prepare_pipeline(pipe)
        # The pipeline uses SigLIP's last hidden state only; its pooling head still runs, and under leaf-level
        # offloading its MultiheadAttention reads out_proj's weights without calling out_proj, which is then never
        # onloaded (diffusers #14551): a device mismatch on a GPU. Skipping the unused head avoids both.
        pipe.image_encoder.use_head = False

    def run_inputs(self, model, conditioning, rows, settings, latent_shape) -> RowTensors:
        """The start image fitted to the video: its latent in frame 0 of the condition (the mask says so) and
        its SigLIP embeddings."""
        pipe, transformer = model.pipe, model.pipe.transformer
        pictures = fit_images(model, conditioning.images, settings.width, settings.height)
        latents = image_latents(model, pictures)[rows.to(model.device)]
        batch, (channels, frames, height, width) = len(rows), latent_shape
        condition = torch.zeros(batch, channels + 1, frames, height, width, device=model.device)
        condition[:, :channels, :1] = latents
        condition[:, channels, 0] = 1.0
        with recovering_encoders(model, Role.IMAGE_ENCODER, "encoding the start image"):
            pixels = pipe.feature_extractor.preprocess(images=pictures, do_resize=True, return_tensors="pt")
            embeds = pipe.image_encoder(pixel_values=pixels.pixel_values.to(model.device, pipe.image_encoder.dtype))
        image = embeds.last_hidden_state.to(transformer.dtype)[rows.to(model.device)]
        return RowTensors({"condition": condition, "image_embeds": image})


HUNYUAN_VIDEO_15 = HunyuanVideo15()
HUNYUAN_VIDEO_15_I2V = HunyuanVideo15ImageToVideo()
