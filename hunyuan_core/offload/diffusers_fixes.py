"""A narrow fix for diffusers' block-level group offloading: each tensor is copied once per onload.

For `block_level`, diffusers (0.42.1) puts the top-level children that are not blocks into one
"unmatched" group, and also lists as that group's loose tensors every parameter and buffer not under a
block, which includes those same children's tensors. The group then copies each of them twice per onload:
with streams, two host-to-device copies per forward of the transformer's 0.7 GB of embedders and token
refiner, and of the Llama's 1 GB token embedding. Dropping the loose entries that the group's modules
already hold leaves one copy; everything else about the group is unchanged.
"""

from __future__ import annotations

from typing import Iterable


def drop_duplicate_group_tensors(hooks: Iterable) -> None:
    """Removes, from each hooked group, loose tensors that one of the group's modules already owns."""
    for group in {id(hook.group): hook.group for hook in hooks}.values():
        owned = {id(t) for module in group.modules for t in (*module.parameters(), *module.buffers())}
        group.parameters = [p for p in group.parameters if id(p) not in owned]
        group.buffers = [b for b in group.buffers if id(b) not in owned]
