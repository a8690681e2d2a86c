"""Making a list of LoRA files (each with a strength) the LoRAs of a loaded model, with offloading active.

Each LoRA is a peft adapter on the transformer, kept unfused: its strength is the adapter's weight, so
changing a strength touches no model weight and no offload hook, and removing a LoRA gives back bitwise the
model's own output. Fusing would save the adapters' small matmuls per step (measured in BENCHMARKS.md) but
every strength change would rewrite the fused weights (and a disk-offloaded transformer's files), and
unfusing (W + dW - dW) does not restore the weights exactly.

Adding or removing adapters changes the modules, so it happens inside `LoadedPipeline.modifying`: the offload
hooks come off first and the pack's own settings are applied again afterwards (diffusers' LoRA loading would
re-apply its own, and over a disk-offloaded model would reuse stale offload files). Step caches are enabled
per sampling run, after the offload hooks, so they stay the outermost hooks whatever happens here.
Every file is read and checked before the model changes: a bad file leaves the model's LoRAs as they were.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import UserInputError
from ..loading.model import LoadedPipeline
from .convert import ConvertedLora, check_fits, convert_lora
from .files import LoraFile, read_lora_file

logger = logging.getLogger(__name__)
_adapter_ids = itertools.count()


@dataclass
class AppliedLora:
    adapter: str  # the peft adapter's name on the transformer
    file: LoraFile
    converted: ConvertedLora
    strength: float = 1.0

    def describe(self) -> str:
        text = (f"LoRA {self.file.path.name} ({self.converted.format}): {self.converted.modules} layers, "
                f"strength {self.strength:g}")
        if self.converted.unmatched:
            text += (f"; {len(self.converted.unmatched)} keys fit no layer of this model and are not applied: "
                     f"{self.converted.describe_unmatched()}")
        return text


def apply_loras(model: LoadedPipeline, loras: Sequence[LoraFile]) -> list[str]:
    """Gives `model` exactly these LoRAs (the same file twice: strengths add up); returns a line per LoRA.

    LoRAs already applied stay (a strength change is only a new adapter weight); new files are read, checked
    against the model and added; LoRAs no longer listed are removed."""
    wanted: dict[tuple, LoraFile] = {}
    for lora in loras:
        previous = wanted.get(lora.identity)
        wanted[lora.identity] = LoraFile(lora.path, lora.strength + (previous.strength if previous else 0.0))
    current = model.loras
    removed = [key for key in current if key not in wanted]
    transformer = model.modules["transformer"]
    new = {key: lora for key, lora in wanted.items() if key not in current}
    if new:
        _check_peft()
    added = {key: _read_checked(lora, transformer, model.family.name) for key, lora in new.items()}
    if removed or added:
        with model.modifying(("transformer",)) as modules:
            _change_adapters(modules["transformer"], current, removed, added)
    for key, applied in current.items():
        applied.strength = wanted[key].strength
    if current:
        transformer.set_adapters([a.adapter for a in current.values()], [a.strength for a in current.values()])
    return [applied.describe() for applied in current.values()]


def _check_peft() -> None:
    """diffusers reads whether peft is usable when it is imported (`USE_PEFT_BACKEND`) and otherwise fails deep
    in its LoRA loading; say what to install instead."""
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:
        raise UserInputError(
            "LoRAs need the peft package: run `pip install -r requirements.txt` (or `pip install peft`) in the "
            "Python that runs ComfyUI, then restart it."
        )


def _read_checked(lora: LoraFile, transformer: torch.nn.Module, model_name: str) -> AppliedLora:
    converted = convert_lora(read_lora_file(lora.path), transformer)
    check_fits(converted, lora.path.name, model_name)
    applied = AppliedLora(f"lora_{next(_adapter_ids)}", lora, converted, lora.strength)
    if converted.unmatched:
        logger.warning("%s", applied.describe())
    return applied


def _change_adapters(transformer: torch.nn.Module, current: dict, removed: list, added: dict) -> None:
    """Removes and adds adapters (offload hooks are off); if an addition fails, this call's additions are
    taken out again and the error raised."""
    gone = [current.pop(key).adapter for key in removed]
    if not current and not added:
        transformer.unload_lora()  # no adapter left: the original layers back in place of peft's wrappers
        return
    if gone:
        transformer.delete_adapters(gone)
    done = []
    try:
        for key, applied in added.items():
            with warnings.catch_warnings():
                # peft 0.21 matches target modules by suffix and says so ("inconsistency ... additional target
                # modules"), and warns that a second adapter makes several: both expected here.
                warnings.filterwarnings("ignore", message="While injecting the PEFT adapters", category=RuntimeWarning)
                warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)
                transformer.load_lora_adapter(applied.converted.state_dict, prefix=None,
                                              adapter_name=applied.adapter, low_cpu_mem_usage=True)
            applied.converted.state_dict = {}  # peft holds the adapter now; the converted copy would only cost RAM
            done.append(key)
            _adapters_in_compute_dtype(transformer, applied.adapter)
            current[key] = applied
    except BaseException:
        for key in done:
            current.pop(key, None)
        if current:
            transformer.delete_adapters([added[key].adapter for key in done])
        else:
            transformer.unload_lora()
        raise


@torch.no_grad()
def _adapters_in_compute_dtype(transformer: torch.nn.Module, adapter: str) -> None:
    """The adapter's weights in the dtype the transformer computes in. peft gives them its base layer's
    dtype, which under fp8 storage is fp8 (no matmul runs in it) and upcasts bf16 ones to fp32."""
    from peft.tuners.lora import LoraLayer

    dtype = transformer.dtype  # diffusers reports the compute dtype of fp8 storage and fp8 files (their casting hooks)
    for module in transformer.modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            module.lora_A[adapter].to(dtype)
            module.lora_B[adapter].to(dtype)
