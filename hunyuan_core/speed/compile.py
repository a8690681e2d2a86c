"""Regional compilation: torch.compile on the transformer's repeated blocks (diffusers'
`compile_repeated_blocks`), which composes with block-level offloading and the block-skipping caches.

Where it does not help, the pack refuses it instead of compiling for nothing: under leaf-level offloading
torch.compile reaches its recompile limit on the per-layer hooks and runs the blocks eagerly, and MagCache's
hooks disable compilation of every block (diffusers 0.42.1).
"""

from __future__ import annotations

import torch

from ..errors import UserInputError

# diffusers 0.42.1 lists HunyuanVideo 1's blocks in `_repeated_blocks` but not the image-to-video variants'.
TOKEN_REPLACE_BLOCKS = ("HunyuanVideoTokenReplaceTransformerBlock", "HunyuanVideoTokenReplaceSingleTransformerBlock")


def check_compile(offload_mode: str, cache: str) -> None:
    if offload_mode == "leaf_level":
        raise UserInputError(
            "Regional compilation does not work with leaf-level offloading of the transformer (torch.compile "
            "reaches its recompile limit on the per-layer hooks and runs eagerly). Use block_level offloading "
            "(the balanced preset) or none for the transformer, or turn compile off."
        )
    if cache == "mag":
        raise UserInputError(
            "Regional compilation and the mag cache do not combine (its hooks make every block run eagerly). "
            "Use the first_block cache with compile, or turn compile off."
        )


def compile_blocks(transformer: torch.nn.Module, backend: str = "inductor") -> int:
    """Compiles each repeated block in place; returns how many were compiled."""
    transformer.compile_repeated_blocks(backend=backend)
    extra = [m for m in transformer.modules() if type(m).__name__ in TOKEN_REPLACE_BLOCKS]
    for module in extra:
        module.compile(backend=backend)
    repeated = set(transformer._repeated_blocks) | set(TOKEN_REPLACE_BLOCKS)
    return sum(1 for m in transformer.modules() if type(m).__name__ in repeated)
