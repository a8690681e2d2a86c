"""The text encoder's prompt template a model folder is used with.

HunyuanVideo wraps every prompt in an instruction template and crops the template's tokens off the
embedding (`crop_start`). diffusers' defaults (crop_start 95 for v1, 108 for 1.5) are right for the
released tokenizers only, so a folder with another tokenizer (the tiny random models) carries its own
template in `prompt_template.json`; folders without that file use their family's default.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserInputError
from ..families import ModelFamily

PROMPT_TEMPLATE_FILE = "prompt_template.json"


def read_prompt_template(folder: str | Path, family: ModelFamily) -> dict | None:
    """The folder's prompt_template.json, checked by the family; None without one (the family's default)."""
    path = Path(folder) / PROMPT_TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        template = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} is not valid JSON ({error}). Fix or delete that file.") from error
    problem = family.prompt_template_problem(template)
    if problem is not None:
        raise UserInputError(f"{path} {problem} Fix or delete that file.")
    return template
