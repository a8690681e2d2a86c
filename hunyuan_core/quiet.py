"""Silencing library messages the pack expects, for the duration of one call.

diffusers 0.42.1 warns on every guider it builds that guiders are experimental (the pack builds one per
sampling run), and transformers reports the weights a model class leaves unused (Llava's language-model
head, which the pack skips on purpose).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

GUIDERS = "diffusers.guiders.guider_utils"
TRANSFORMERS = "transformers"


@contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Only errors from `loggers` (and their children) while the body runs."""
    saved = [(logger, logger.level) for logger in map(logging.getLogger, loggers)]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
