"""HunyuanVideo 1 image-to-video (`HunyuanVideoImageToVideoPipeline`): a Llava text encoder that sees the
start image, the image latent as the first frame.

Two published checkpoints, told apart by the transformer's config:
- `token_replace` (HunyuanVideo-I2V): 16 input channels and an embedded guidance scale; the first latent
  frame is the clean image latent, in the model's input and after every step.
- `latent_concat` (HunyuanVideo-I2V-33ch): 33 input channels (noisy latents, the image latent in frame 0,
  a mask), no guidance embedding.

Where diffusers 0.42.1's pipeline cannot batch (two prompts with one image, several videos per prompt,
one truncated prompt: each fails), the pack encodes every prompt with its own image and selects rows per
video. Negative prompts see a black image, as in diffusers and Tencent's code, with the same image-token
interleave as the prompts (diffusers uses 2 for negatives whatever the checkpoint; Tencent uses one value).
The text encoder is loaded as `LlavaModel`: the language-model head (1 GB) is never used.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import UserInputError
from ..runtime.images import fit_images, image_latents, to_pil
from ..runtime.recovery import recovering_encoders
from ..runtime.rows import RowTensors
from ..spec import ComponentSpec, PipelineSpec, Role
from .hunyuan_video import (
    CLIP_TEXT,
    CLIP_TOKENIZER,
    LLAMA_TOKENIZERS,
    SCHEDULER,
    TRANSFORMER,
    VAE,
    HunyuanVideo,
    text_rows,
)

MAX_SEQUENCE_LENGTH = 256
HIDDEN_LAYERS_TO_SKIP = 2
IMAGE_TOKEN_STRIDE = {"token_replace": 4, "latent_concat": 2}  # every k-th image token is kept, as diffusers does
RESERVED_TOKENS = ("<image>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>")
# Llava's layers as groups, and its token embedding as a group of its own: LlavaModel.forward uses the embedding
# before its language model's forward (which would onload it) runs: used while offloaded, a device mismatch.
LLAVA_BLOCKS = ("language_model", "vision_tower", "encoder", "embed_tokens")
IMAGE_NOISE_LEVEL = 0.999  # start latents: noise * 0.999 + image latent * 0.001, as the pipeline mixes them


class HunyuanVideoImageToVideo(HunyuanVideo):
    name = "HunyuanVideo 1 image-to-video"
    spec = PipelineSpec(
        pipeline_class="HunyuanVideoImageToVideoPipeline",
        components=(
            TRANSFORMER,
            ComponentSpec("text_encoder", "transformers", ("LlavaForConditionalGeneration",), Role.TEXT_ENCODER,
                          torch.float16, offload_block_modules=LLAVA_BLOCKS,
                          load_class="LlavaModel"),
            ComponentSpec("tokenizer", "transformers", LLAMA_TOKENIZERS),
            CLIP_TEXT,
            CLIP_TOKENIZER,
            VAE,
            SCHEDULER,
            ComponentSpec("image_processor", "transformers",
                          ("CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast")),
        ),
    )
    takes_image = True
    max_text_tokens = 576 // 2 + MAX_SEQUENCE_LENGTH  # image tokens (latent_concat keeps every 2nd) + text

    def default_prompt_template(self, pipe) -> dict:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
            DEFAULT_PROMPT_TEMPLATE,
        )

        return dict(DEFAULT_PROMPT_TEMPLATE)

    def prompt_template_problem(self, template) -> str | None:
        keys = ("crop_start", "image_emb_start", "image_emb_end", "image_emb_len")
        if not isinstance(template, dict) or "{}" not in str(template.get("template", "")):
            return f"must hold an object with a 'template' string containing '{{}}' and integers {', '.join(keys)}."
        if str(template["template"]).count("<image>") != 1:
            return "must have exactly one <image> in its template."
        if not all(isinstance(template.get(key), int) and template[key] >= 0 for key in keys):
            return f"must give {', '.join(keys)} as non-negative integers."
        if template["image_emb_end"] - template["image_emb_start"] != template["image_emb_len"]:
            return "must have image_emb_end - image_emb_start == image_emb_len."
        return None

    @staticmethod
    def condition_type(model) -> str:
        return model.pipe.transformer.config.image_condition_type

    def encode_text(self, model, prompts: list[str], secondary: list[str] | None, images,
                    report_pass: Callable[[], None]) -> RowTensors:
        """Runs CLIP, then Llava with each prompt's image (a black one for negative prompts)."""
        reserved = [token for token in RESERVED_TOKENS if any(token in prompt for prompt in prompts)]
        if reserved:
            raise UserInputError(
                f"A prompt contains {reserved[0]}, which the image-to-video text encoder reserves for its template. "
                "Remove it from the prompt."
            )
        pipe, device = model.pipe, model.device
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            pooled = pipe._get_clip_prompt_embeds(secondary or prompts, device=device)
        report_pass()
        pictures = [to_pil(image) for image in images] if images is not None else _black(len(prompts))
        with recovering_encoders(model, Role.TEXT_ENCODER, "encoding the prompts"):
            embeds, mask = _llava_states(pipe, model.prompt_template, prompts, pictures, device,
                                         IMAGE_TOKEN_STRIDE[self.condition_type(model)])
        report_pass()
        return text_rows(embeds, mask, pooled)

    def run_inputs(self, model, conditioning, rows, settings, latent_shape) -> RowTensors:
        """The start images' latents at the video's size (and the embedded guidance of token_replace)."""
        latents = image_latents(model, fit_images(model, conditioning.images, settings.width, settings.height))
        inputs = {"image_latents": latents[rows.to(latents.device)]}
        transformer = model.pipe.transformer
        if transformer.config.guidance_embeds:
            inputs["guidance"] = torch.full((len(rows),), settings.guidance_scale * 1000.0, dtype=transformer.dtype,
                                            device=model.device)
        return RowTensors(inputs)

    def initial_latents(self, model, noise: torch.Tensor, inputs: RowTensors) -> torch.Tensor:
        level = torch.tensor([IMAGE_NOISE_LEVEL], device=noise.device)  # a float32 tensor, as the pipeline's
        return noise * level + inputs["image_latents"].float().expand_as(noise) * (1 - level)

    def predict(self, model, latents, timestep, next_timestep, inputs: RowTensors) -> torch.Tensor:
        tensors = dict(inputs.tensors)
        image = tensors.pop("image_latents").to(latents.dtype)
        if self.condition_type(model) == "token_replace":
            hidden = torch.cat([image, latents[:, :, 1:]], dim=2)
        else:
            condition = torch.zeros_like(latents)
            condition[:, :, :1] = image
            mask = torch.zeros_like(latents[:, :1])
            mask[:, :, :1] = 1
            hidden = torch.cat([latents, condition, mask], dim=1)
        transformer = model.pipe.transformer
        return transformer(hidden_states=hidden.to(transformer.dtype), timestep=timestep, **tensors,
                           return_dict=False)[0]

    def after_step(self, model, latents: torch.Tensor, inputs: RowTensors) -> torch.Tensor:
        """token_replace: the first frame stays the clean image latent (the Euler step is per element, so
        stepping every frame and resetting the first equals the pipeline's stepping of the others only)."""
        if self.condition_type(model) == "token_replace":
            latents = latents.clone()
            latents[:, :, :1] = inputs["image_latents"].to(latents.dtype)
        return latents


def _black(count: int):
    from PIL import Image

    return [Image.new("RGB", (64, 64), 0)] * count  # after the CLIP processor's resize and crop, any black is one


def _llava_states(pipe, template: dict, prompts: list[str], pictures, device, stride: int):
    """Llava hidden states of each prompt (wrapped in the template) seeing its picture, cropped as diffusers
    crops them, per row: `[image tokens (every `stride`-th) | prompt tokens]`, valid tokens first (the tokenizer
    pads on the right: `HunyuanVideo.prepare_pipeline`)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
        _expand_input_ids_with_image_tokens,
    )

    tokenizer, llava = pipe.tokenizer, pipe.text_encoder
    crop_start, image_len = template["crop_start"], template["image_emb_len"]
    start, end = template["image_emb_start"], template["image_emb_end"]
    length = MAX_SEQUENCE_LENGTH + crop_start
    tokens = tokenizer([template["template"].format(p) for p in prompts], max_length=length, padding="max_length",
                       truncation=True, return_tensors="pt")
    ids, mask = tokens.input_ids, tokens.attention_mask
    expanded = _expand_input_ids_with_image_tokens(ids, mask, length, llava.config.image_token_index, image_len,
                                                   start, end, llava.config.pad_token_id)
    pixels = pipe.image_processor(pictures, return_tensors="pt").pixel_values
    hidden = llava(**{k: v.to(device) for k, v in expanded.items()}, pixel_values=pixels.to(device, llava.dtype),
                   output_hidden_states=True).hidden_states[-(HIDDEN_LAYERS_TO_SKIP + 1)]
    end_header = tokenizer.convert_tokens_to_ids("<|end_header_id|>")
    shift = image_len - 1  # positions after the image moved by this much when it was expanded
    states, masks = [], []
    for row in range(len(prompts)):
        headers = (ids[row] == end_header).nonzero().flatten()
        # The assistant header starts the answer; a truncated prompt lost it: then the sequence end.
        answer = int(headers[-1]) + 1 if len(headers) >= 3 else ids.shape[1]
        text = torch.cat([hidden[row, crop_start + shift:answer - 4 + shift], hidden[row, answer + shift:]])
        text_mask = torch.cat([mask[row, crop_start:answer - 4], mask[row, answer:]]).to(device)
        image = hidden[row, start:end][::stride]
        states.append(torch.cat([image, text]))
        masks.append(torch.cat([text_mask.new_ones(len(image)), text_mask]))
    return torch.stack(states), torch.stack(masks)


HUNYUAN_VIDEO_I2V = HunyuanVideoImageToVideo()
