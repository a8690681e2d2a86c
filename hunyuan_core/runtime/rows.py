"""Named tensors with one row per prompt or video: the transformer's conditioning inputs, batched.

Every family's encoder produces its transformer's keyword inputs (`encoder_hidden_states`,
`encoder_attention_mask`, `pooled_projections`, ...) as a `RowTensors`. The sampler selects rows (a video
per prompt and seed), joins the conditional and unconditional rows for batched CFG and repeats per-run
inputs without knowing which family it runs: a text sequence is padded, with its key-padding mask, to the
longer of two row sets, and every other tensor is joined as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch


@dataclass(frozen=True)
class RowTensors:
    tensors: Mapping[str, torch.Tensor]
    masks: Mapping[str, str] = field(default_factory=dict)  # a text sequence's name -> its key-padding mask's name

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values()))) if self.tensors else 0

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def _with(self, tensors: Mapping[str, torch.Tensor]) -> RowTensors:
        return RowTensors(dict(tensors), self.masks)

    def select(self, rows: Sequence[int] | torch.Tensor) -> RowTensors:
        index = torch.as_tensor(rows, dtype=torch.long)
        return self._with({name: tensor[index.to(tensor.device)] for name, tensor in self.tensors.items()})

    def repeat(self, copies: int) -> RowTensors:
        """All rows `copies` times over (rows, then rows again), as the CFG halves of one batch."""
        return self._with({name: torch.cat([tensor] * copies) for name, tensor in self.tensors.items()})

    def concat(self, other: RowTensors) -> RowTensors:
        """Rows of `self` then rows of `other`; of two text sequences, the shorter is padded (and masked)."""
        if set(self.tensors) != set(other.tensors):
            raise ValueError(f"Cannot join rows of {sorted(self.tensors)} and {sorted(other.tensors)}.")
        lengths = {name: max(self[name].shape[1], other[name].shape[1]) for name in self.masks}
        parts = [rows._padded(lengths) for rows in (self, other)]
        return self._with({name: torch.cat([part[name] for part in parts]) for name in self.tensors})

    def merge(self, other: RowTensors) -> RowTensors:
        """The inputs of both, row for row (the text rows and the per-run inputs of the same videos)."""
        overlap = set(self.tensors) & set(other.tensors)
        if overlap:
            raise ValueError(f"Both row sets hold {sorted(overlap)}.")
        return RowTensors({**self.tensors, **other.tensors}, {**self.masks, **other.masks})

    def _padded(self, lengths: Mapping[str, int]) -> dict[str, torch.Tensor]:
        tensors = dict(self.tensors)
        for sequence, mask in self.masks.items():
            extra = lengths[sequence] - tensors[sequence].shape[1]
            if extra:
                padding = (0, 0) * (tensors[sequence].ndim - 2) + (0, extra)
                tensors[sequence] = torch.nn.functional.pad(tensors[sequence], padding)
                tensors[mask] = torch.nn.functional.pad(tensors[mask], (0, extra))
        return tensors

    def to(self, device: torch.device, dtype: torch.dtype) -> RowTensors:
        """On `device`, in the transformer's `dtype`: masks too, as diffusers' pipelines pass them."""
        return self._with({name: tensor.to(device, dtype) for name, tensor in self.tensors.items()})
