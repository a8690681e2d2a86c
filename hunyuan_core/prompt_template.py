"""The Llama prompt template a model folder is used with.

HunyuanVideo wraps every prompt in an instruction template and crops the template's tokens off the
embedding (`crop_start`). diffusers' default (crop_start 95) is right for the released tokenizer only,
so a folder with another tokenizer (the tiny test model) carries its own template in
`prompt_template.json`; folders without that file use diffusers' default.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserInputError

PROMPT_TEMPLATE_FILE = "prompt_template.json"


def default_prompt_template() -> dict:
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import (
        DEFAULT_PROMPT_TEMPLATE,
    )

    return dict(DEFAULT_PROMPT_TEMPLATE)


def read_prompt_template(folder: str | Path) -> dict:
    path = Path(folder) / PROMPT_TEMPLATE_FILE
    if not path.is_file():
        return default_prompt_template()
    try:
        template = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not valid JSON ({error}). Fix or delete that file.") from error
    if not isinstance(template, dict) or "{}" not in str(template.get("template", "")):
        raise UserInputError(
            f"{path} must hold an object with a 'template' string containing '{{}}' where the prompt goes "
            "and an integer 'crop_start'. Fix or delete that file."
        )
    if not isinstance(template.get("crop_start"), int) or template["crop_start"] < 0:
        raise UserInputError(f"{path}: 'crop_start' must be a non-negative integer. Fix or delete that file.")
    return template
