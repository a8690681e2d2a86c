"""Prompt text from a text box: one prompt, or one prompt per line for a batch."""

from __future__ import annotations

SINGLE = "single prompt"
PER_LINE = "one prompt per line"
BATCH_MODES = (SINGLE, PER_LINE)


def split_prompts(text: str, mode: str) -> list[str]:
    """The prompts in `text`; an empty list when it holds only white space."""
    if mode == SINGLE:
        return [text.strip()] if text.strip() else []
    if mode == PER_LINE:
        return [line.strip() for line in text.splitlines() if line.strip()]
    raise ValueError(f"Unknown batch mode {mode!r}; use one of {', '.join(BATCH_MODES)}.")
