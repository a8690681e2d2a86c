"""Random LoRA files in every format people share, and the weight change each should make, for tests.

The expected change per diffusers layer comes from this module's own table of where Tencent's fused layers
went in diffusers (written from the model definitions, not from the converter under test), so a conversion
mistake shows up as a wrong output instead of being repeated in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

FORMATS = ("original", "comfyui", "kohya", "diffusers", "diffusers_metadata")

# Tencent's HunyuanVideo 1 layer -> the diffusers layers its output rows are split into, in order.
ORIGINAL_LAYERS = {
    "double_blocks.0.img_attn_qkv": [f"transformer_blocks.0.attn.{n}" for n in ("to_q", "to_k", "to_v")],
    "double_blocks.1.txt_attn_qkv": [f"transformer_blocks.1.attn.{n}" for n in ("add_q_proj", "add_k_proj",
                                                                                 "add_v_proj")],
    "double_blocks.0.img_attn_proj": ["transformer_blocks.0.attn.to_out.0"],
    "double_blocks.1.txt_mlp.fc2": ["transformer_blocks.1.ff_context.net.2"],
    "double_blocks.0.img_mod.linear": ["transformer_blocks.0.norm1.linear"],
    "single_blocks.0.linear1": [f"single_transformer_blocks.0.{n}" for n in ("attn.to_q", "attn.to_k", "attn.to_v",
                                                                             "proj_mlp")],
    "single_blocks.1.linear2": ["single_transformer_blocks.1.proj_out"],
    "single_blocks.1.modulation.linear": ["single_transformer_blocks.1.norm.linear"],
    "txt_in.individual_token_refiner.blocks.0.self_attn_qkv": [
        f"context_embedder.token_refiner.refiner_blocks.0.attn.{n}" for n in ("to_q", "to_k", "to_v")],
    "txt_in.individual_token_refiner.blocks.0.mlp.fc1": [
        "context_embedder.token_refiner.refiner_blocks.0.ff.net.0.proj"],
    "final_layer.adaLN_modulation.1": ["norm_out.linear"],  # (shift, scale) in Tencent's, (scale, shift) in diffusers'
    "final_layer.linear": ["proj_out"],
    "vector_in.in_layer": ["time_text_embed.text_embedder.linear_1"],
    "time_in.mlp.0": ["time_text_embed.timestep_embedder.linear_1"],
}

# The same for HunyuanVideo 1.5, q, k and v fused as in ComfyUI's repackaged files (apart: `_unfused`).
ORIGINAL_LAYERS_15 = {
    "double_blocks.0.img_attn_qkv": [f"transformer_blocks.0.attn.{n}" for n in ("to_q", "to_k", "to_v")],
    "double_blocks.1.txt_attn_qkv": [f"transformer_blocks.1.attn.{n}" for n in ("add_q_proj", "add_k_proj",
                                                                                 "add_v_proj")],
    "double_blocks.1.img_attn_proj": ["transformer_blocks.1.attn.to_out.0"],
    "double_blocks.0.txt_mlp.fc1": ["transformer_blocks.0.ff_context.net.0.proj"],
    "double_blocks.0.img_mod.linear": ["transformer_blocks.0.norm1.linear"],
    "txt_in.individual_token_refiner.blocks.0.self_attn_qkv": [
        f"context_embedder.token_refiner.refiner_blocks.0.attn.{n}" for n in ("to_q", "to_k", "to_v")],
    "txt_in.input_embedder": ["context_embedder.proj_in"],
    "byt5_in.fc1": ["context_embedder_2.linear_1"],
    "vision_in.proj.1": ["image_embedder.linear_1"],
    "time_in.mlp.0": ["time_embed.timestep_embedder.linear_1"],
    "final_layer.adaLN_modulation.1": ["norm_out.linear"],  # (shift, scale) in Tencent's, (scale, shift) in diffusers'
    "final_layer.linear": ["proj_out"],
}


def _unfused(layers: dict[str, list[str]]) -> dict[str, list[str]]:
    """The double blocks' attention as Tencent's 1.5 checkpoints name it: `img_attn_q`, `_k`, `_v` apart."""
    out = {}
    for layer, targets in layers.items():
        if layer.startswith("double_blocks.") and layer.endswith("_attn_qkv"):
            out |= {layer[: -len("qkv")] + x: [target] for x, target in zip("qkv", targets)}
        else:
            out[layer] = targets
    return out


@dataclass
class RandomLora:
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (A [rank, in], B [out, rank])
    targets: dict[str, list[str]]  # layer -> the diffusers layers it changes
    alpha: float
    alpha_pattern: dict[str, float] = field(default_factory=dict)  # layer name or its last parts -> its alpha

    def alpha_of(self, layer: str) -> float:
        return next((alpha for key, alpha in self.alpha_pattern.items() if layer == key or layer.endswith(f".{key}")),
                    self.alpha)

    @property
    def original_names(self) -> bool:
        return any(layer != targets[0] for layer, targets in self.targets.items())

    def deltas(self, transformer: torch.nn.Module, strength: float = 1.0) -> dict[str, torch.Tensor]:
        """The change of each diffusers layer's weight at `strength`."""
        layers = dict(transformer.named_modules())
        out = {}
        for layer, (a, b) in self.pairs.items():
            full = b @ a * (strength * self.alpha_of(layer) / a.shape[0])
            if layer == "final_layer.adaLN_modulation.1":
                shift, scale = full.chunk(2)
                full = torch.cat([scale, shift])
            rows = [layers[t].out_features for t in self.targets[layer]]
            out.update(zip(self.targets[layer], full.split(rows)))
        return out

    def state_dict(self, fmt: str) -> dict[str, torch.Tensor]:
        """The LoRA's keys in format `fmt` (one of FORMATS; diffusers names have no alpha: it is in B, or in the
        file's metadata with `diffusers_metadata`, see `save`)."""
        out = {}
        for layer, (a, b) in self.pairs.items():
            alpha = torch.tensor(self.alpha_of(layer))
            if fmt in ("diffusers", "diffusers_metadata"):
                if self.original_names:
                    raise ValueError("diffusers names exist for each diffusers layer; build with original_names=False")
                scale = self.alpha_of(layer) / a.shape[0] if fmt == "diffusers" else 1.0
                out[f"transformer.{layer}.lora_A.weight"] = a
                out[f"transformer.{layer}.lora_B.weight"] = b * scale
            elif fmt == "original":
                out |= {f"diffusion_model.{layer}.lora_A.weight": a, f"diffusion_model.{layer}.lora_B.weight": b,
                        f"diffusion_model.{layer}.alpha": alpha}
            elif fmt == "comfyui":
                out |= {f"diffusion_model.{layer}.lora_down.weight": a, f"diffusion_model.{layer}.lora_up.weight": b,
                        f"diffusion_model.{layer}.alpha": alpha}
            elif fmt == "kohya":
                stem = "lora_unet_" + layer.replace(".", "_")
                out |= {f"{stem}.lora_down.weight": a, f"{stem}.lora_up.weight": b, f"{stem}.alpha": alpha}
            else:
                raise ValueError(f"Unknown LoRA format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return {key: tensor.contiguous() for key, tensor in out.items()}

    def save(self, path: str | Path, fmt: str) -> Path:
        """Writes the LoRA in format `fmt`; `diffusers_metadata` through diffusers' own `save_lora_weights`, with
        the alphas in the adapter config it stores in the file's metadata (as diffusers' training scripts do)."""
        from safetensors.torch import save_file

        path = Path(path)
        if fmt != "diffusers_metadata":
            save_file(self.state_dict(fmt), path)
            return path
        from diffusers.loaders.lora_pipeline import HunyuanVideoLoraLoaderMixin
        from peft import LoraConfig

        (rank,) = {a.shape[0] for a, _ in self.pairs.values()}
        config = LoraConfig(r=rank, lora_alpha=self.alpha, alpha_pattern=dict(self.alpha_pattern),
                            target_modules=list(self.pairs))
        layers = {key.removeprefix("transformer."): tensor for key, tensor in self.state_dict(fmt).items()}
        HunyuanVideoLoraLoaderMixin.save_lora_weights(path.parent, transformer_lora_layers=layers,
                                                      weight_name=path.name,
                                                      transformer_lora_adapter_metadata=config.to_dict())
        return path


def random_lora(transformer: torch.nn.Module, original_names: bool = True, rank: int = 4, alpha: float = 2.0,
                seed: int = 0, scale: float = 0.3, fused_qkv: bool = True,
                alpha_pattern: dict[str, float] | None = None) -> RandomLora:
    """A random LoRA for `transformer`: in Tencent's layer names, fused layers included (HunyuanVideo 1.5: the
    double blocks' q, k and v fused or, `fused_qkv=False`, apart), or on every attention and feed-forward layer
    in diffusers' names. `alpha_pattern` gives some layers another alpha (a name or its last parts, as peft
    matches plain patterns)."""
    layers = dict(transformer.named_modules())
    if original_names and type(transformer).__name__ == "HunyuanVideo15Transformer3DModel":
        targets = ORIGINAL_LAYERS_15 if fused_qkv else _unfused(ORIGINAL_LAYERS_15)
    elif original_names:
        targets = ORIGINAL_LAYERS
    else:
        targets = {name: [name] for name, module in layers.items()
                   if isinstance(module, torch.nn.Linear) and (".attn." in name or ".ff." in name)}
    generator = torch.Generator().manual_seed(seed)
    pairs = {}
    for layer, parts in targets.items():
        features_in = layers[parts[0]].in_features
        features_out = sum(layers[p].out_features for p in parts)
        pairs[layer] = (torch.randn(rank, features_in, generator=generator) * scale,
                        torch.randn(features_out, rank, generator=generator) * scale)
    return RandomLora(pairs, dict(targets), alpha, dict(alpha_pattern or {}))


@torch.no_grad()
def merged_by_hand(transformer: torch.nn.Module, deltas: dict[str, torch.Tensor]) -> None:
    """Adds `deltas` to the layers' weights in place: the reference a LoRA must equal."""
    layers = dict(transformer.named_modules())
    for name, delta in deltas.items():
        layers[name].weight += delta.to(layers[name].weight.dtype)
