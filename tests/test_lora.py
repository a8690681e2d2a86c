"""LoRAs: every shared key format equals the same change merged into the weights by hand, strength 0 and
removal are bitwise the model without LoRA, and adding, re-weighting and removing work under every offload
preset with the offload proof holding and a step cache still the outermost hook."""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import pytest
import torch
from conftest import TINY_SETTINGS

from hunyuan_core.errors import UserInputError
from hunyuan_core.loading.loader import load_pipeline
from hunyuan_core.lora import LoraFile, apply_loras, parse_lora
from hunyuan_core.offload.presets import PRESETS, preset_plan
from hunyuan_core.offload.probe import count_onloads, poison_offloaded
from hunyuan_core.runtime.encode import encode_prompts
from hunyuan_core.runtime.sampling import sample
from hunyuan_core.speed.settings import SpeedSettings
from hunyuan_core.testing.loras import merged_by_hand, random_lora

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def v1(tiny_model_dir):
    model = load_pipeline(tiny_model_dir)
    yield model
    model.release()


@torch.no_grad()
def forward(model_or_transformer):
    """One transformer call on fixed random inputs (the LoRA changes only the transformer)."""
    transformer = (model_or_transformer if isinstance(model_or_transformer, torch.nn.Module)
                   else model_or_transformer.modules["transformer"])
    config = transformer.config
    generator = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, config.in_channels, 2, 4, 4, generator=generator),
                  timestep=torch.tensor([500.0]), encoder_attention_mask=torch.ones(1, 5),
                  encoder_hidden_states=torch.randn(1, 5, config.text_embed_dim, generator=generator))
    if "pooled_projection_dim" in config:
        inputs.update(pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
                      guidance=torch.tensor([6000.0]))
    else:
        inputs.update(encoder_hidden_states_2=torch.randn(1, 3, config.text_embed_2_dim, generator=generator),
                      encoder_attention_mask_2=torch.ones(1, 3), image_embeds=torch.zeros(1, 4, config.image_embed_dim))
    return transformer(**inputs, return_dict=False)[0]


def by_hand(model, lora, strength=1.0):
    """The output of a copy of the model's transformer (without LoRAs) with the LoRA's change added."""
    transformer = copy.deepcopy(model.modules["transformer"])
    merged_by_hand(transformer, lora.deltas(transformer, strength))
    return forward(transformer)


@pytest.fixture(scope="module")
def v1_lora(v1):
    lora = random_lora(v1.modules["transformer"])
    return lora, by_hand(v1, lora), by_hand(v1, lora, 0.5), forward(v1)


def check_equals_by_hand(model, lora, path, merged, plain):
    """The LoRA file at `path` gives `merged` with every layer applied, bitwise `plain` at strength 0 and after
    its removal, and leaves no adapter behind."""
    try:
        (line,) = apply_loras(model, [LoraFile(path)])
        assert f": {len(lora.pairs)} layers, strength 1" in line and "not applied" not in line
        torch.testing.assert_close(forward(model), merged, **TOLERANCE)
        apply_loras(model, [LoraFile(path, 0.0)])
        assert torch.equal(forward(model), plain)
    finally:
        apply_loras(model, [])
    assert torch.equal(forward(model), plain)
    assert not any("lora" in name for name, _ in model.modules["transformer"].named_modules())
    return line


@pytest.mark.parametrize("fmt", ["original", "comfyui", "kohya"])
def test_each_format_equals_the_change_merged_by_hand(v1, v1_lora, tmp_path, fmt):
    """Fused layers included (qkv, single blocks' linear1 at a width other than 3072, the refiner's qkv, the
    final modulation with its halves swapped) and alphas: each of those fails or is wrong through diffusers'
    own converter (0.42.1), see test_diffusers_converter_still_needs_the_fixes."""
    lora, merged, _, plain = v1_lora
    check_equals_by_hand(v1, lora, lora.save(tmp_path / f"{fmt}.safetensors", fmt), merged, plain)


def test_the_same_file_twice_adds_its_strengths(v1, v1_lora, tmp_path):
    lora, _, half, plain = v1_lora
    path = lora.save(tmp_path / "twice.safetensors", "original")
    try:
        (line,) = apply_loras(v1, [LoraFile(path, 0.2), LoraFile(path, 0.3)])
        assert "strength 0.5" in line
        torch.testing.assert_close(forward(v1), half, **TOLERANCE)
    finally:
        apply_loras(v1, [])
    assert torch.equal(forward(v1), plain)


@pytest.mark.parametrize("fused_qkv", [True, False], ids=["fused_qkv", "q_k_v_apart"])
@pytest.mark.parametrize("fmt", ["original", "comfyui", "kohya"])
def test_hunyuan_video15_original_names_equal_the_change_merged_by_hand(shared_family_model, tmp_path, fmt,
                                                                      fused_qkv):
    """1.5 in Tencent's names (diffusers 0.42.1 has no converter for them): the blocks' attention fused as in
    ComfyUI's repackaged files or apart as in Tencent's checkpoints, the refiner's qkv, the final modulation
    with its halves swapped, byT5 and vision inputs, alphas."""
    model = shared_family_model("hunyuan-video-1.5")
    lora = random_lora(model.modules["transformer"], fused_qkv=fused_qkv, alpha=3.0)
    assert ("double_blocks.0.img_attn_qkv" in lora.pairs) == fused_qkv
    line = check_equals_by_hand(model, lora, lora.save(tmp_path / f"{fmt}.safetensors", fmt), by_hand(model, lora),
                                forward(model))
    assert "Tencent's original names" in line


@pytest.mark.parametrize("name", ["hunyuan-video", "hunyuan-video-1.5"])
def test_diffusers_names_equal_the_change_merged_by_hand(shared_family_model, tmp_path, name):
    model = shared_family_model(name)
    plain = forward(model)
    try:
        lora = random_lora(model.modules["transformer"], original_names=False)
        expected = by_hand(model, lora, 0.7)
        apply_loras(model, [LoraFile(lora.save(tmp_path / "d.safetensors", "diffusers"), 0.7)])
        torch.testing.assert_close(forward(model), expected, **TOLERANCE)
        from safetensors.torch import save_file

        # kohya's flattening of diffusers names (lora_unet_transformer_blocks_0_attn_to_q...) is read as well
        flat = {}
        for key, tensor in lora.state_dict("diffusers").items():
            stem, part = key.removeprefix("transformer.").rsplit(".lora_", 1)
            flat[f"lora_unet_{stem.replace('.', '_')}.lora_{'down' if part.startswith('A') else 'up'}.weight"] = tensor
        save_file(flat, tmp_path / "flat.safetensors")
        apply_loras(model, [LoraFile(tmp_path / "flat.safetensors", 0.7)])
        torch.testing.assert_close(forward(model), expected, **TOLERANCE)
    finally:
        apply_loras(model, [])
    assert torch.equal(forward(model), plain)


@pytest.mark.parametrize("saved_by", ["pipeline", "model"])
def test_alphas_in_the_files_adapter_metadata_scale_the_lora(shared_family_model, tmp_path, saved_by):
    """diffusers' own save paths (since 0.35) keep the alphas only in the file's metadata: peft's LoraConfig
    as `lora_adapter_metadata`, its keys prefixed `transformer.` by a pipeline's `save_lora_weights` and not by
    a model's `save_lora_adapter`. The scale is lora_alpha / r, per module through `alpha_pattern`."""
    from safetensors import safe_open

    model = shared_family_model("hunyuan-video-1.5")
    transformer = model.modules["transformer"]
    lora = random_lora(transformer, original_names=False, alpha=8.0, alpha_pattern={"attn.to_k": 2.0})
    merged = by_hand(model, lora)
    path = lora.save(tmp_path / "pipeline.safetensors", "diffusers_metadata")
    if saved_by == "model":  # loaded by diffusers itself (which reads the metadata), saved by the model
        adapted = copy.deepcopy(transformer)
        adapted.load_lora_adapter(str(tmp_path), weight_name=path.name, prefix="transformer", adapter_name="saved")
        torch.testing.assert_close(forward(adapted), merged, **TOLERANCE)  # diffusers scales as the reference does
        adapted.save_lora_adapter(tmp_path, adapter_name="saved", weight_name="model.safetensors")
        path = tmp_path / "model.safetensors"
    with safe_open(path, framework="pt") as file:
        prefix = "transformer." if saved_by == "pipeline" else ""
        assert f'"{prefix}lora_alpha": 8.0' in file.metadata()["lora_adapter_metadata"]
    check_equals_by_hand(model, lora, path, merged, forward(model))


def test_diffusers_converter_still_needs_the_fixes(v1):
    """diffusers 0.42.1's converter fails on alphas, on linear1 at widths other than 3072 and on the refiner's
    qkv (it splits lora_A's rank too), and gives the final modulation a wrong delta (it swaps lora_A's halves
    too); when a release fixes one, this fails and the pack's own handling of that layer
    (lora/original_names.py) can go."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    lora = random_lora(v1.modules["transformer"])
    state = lora.state_dict("original")
    with_alpha = {k: v for k, v in state.items() if "img_attn_qkv" in k}
    with pytest.raises(RuntimeError, match="chunk expects at least a 1-dimensional tensor"):
        _convert_hunyuan_video_lora_to_diffusers(with_alpha)
    linear1 = {k: v for k, v in state.items() if "linear1" in k and "alpha" not in k}
    with pytest.raises(RuntimeError, match="split_with_sizes"):
        _convert_hunyuan_video_lora_to_diffusers(linear1)

    def pair(layer):
        a, b = lora.pairs[layer]
        return {f"{layer}.lora_A.weight": a, f"{layer}.lora_B.weight": b}

    with pytest.raises(ValueError, match="not enough values to unpack"):  # rank 4 is cut into 2 + 2
        _convert_hunyuan_video_lora_to_diffusers(pair("txt_in.individual_token_refiner.blocks.0.self_attn_qkv"))
    final = _convert_hunyuan_video_lora_to_diffusers(pair("final_layer.adaLN_modulation.1"))
    delta = final["transformer.norm_out.linear.lora_B.weight"] @ final["transformer.norm_out.linear.lora_A.weight"]
    a, b = lora.pairs["final_layer.adaLN_modulation.1"]
    shift, scale = (b @ a).chunk(2)  # Tencent's (shift, scale) rows are diffusers' (scale, shift)
    assert not torch.allclose(delta, torch.cat([scale, shift]))


@pytest.fixture(scope="module")
def lora_steps(v1, v1_lora, tmp_path_factory):
    """Add, re-weight, add another, remove one, remove all; and the outputs without offloading."""
    folder = tmp_path_factory.mktemp("loras")
    first = v1_lora[0].save(folder / "first.safetensors", "kohya")
    second = random_lora(v1.modules["transformer"], seed=1).save(folder / "second.safetensors", "original")
    steps = [[LoraFile(first)], [LoraFile(first, 0.5)], [LoraFile(first, 0.5), LoraFile(second, 0.8)],
             [LoraFile(second, 0.8)], []]
    expected = []
    for loras in steps:
        apply_loras(v1, loras)
        expected.append(forward(v1))
    torch.testing.assert_close(expected[0], v1_lora[1], **TOLERANCE)
    torch.testing.assert_close(expected[1], v1_lora[2], **TOLERANCE)
    assert torch.equal(expected[-1], v1_lora[3])
    return steps, expected


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
def test_lora_operations_under_every_preset_keep_the_offload_proof(v1, lora_steps, tmp_path, preset):
    """Each step gives bitwise the output it gives without offloading, every offloaded weight (the adapters'
    too) is onloaded when used, and the transformer's hooks fire after each change."""
    v1.configure_offload(preset_plan(preset, "cpu", disk_folder=str(tmp_path / "disk")))
    try:
        for loras, wanted in zip(*lora_steps):
            apply_loras(v1, loras)
            with count_onloads(v1.modules) as onloads, poison_offloaded(v1.modules) as poisoned:
                result = forward(v1)
            assert torch.equal(result, wanted), (preset, loras, (result - wanted).abs().max())
            assert not poisoned and onloads["transformer"] > 0
    finally:
        apply_loras(v1, [])
        v1.configure_offload(preset_plan("none", "cpu"))
    assert not any((tmp_path / "disk").rglob("*.safetensors"))


def test_a_step_cache_stays_outermost_after_lora_changes(tiny_model_dir, v1_lora, tmp_path):
    """Caches skip whole blocks without onloading them only while their hook is outside the offload hooks;
    diffusers' own LoRA loading re-applies offloading outside them. After LoRA changes a cached run still
    onloads fewer groups than an uncached one, as many as before the change."""
    lora = v1_lora[0]
    path = lora.save(tmp_path / "l.safetensors", "original")
    model = load_pipeline(tiny_model_dir, offload=preset_plan("balanced", "cpu"))
    settings = replace(TINY_SETTINGS, frames=1, steps=4)
    cached = SpeedSettings(cache="first_block", cache_value=10.0)  # skips every block it may
    conditioning = encode_prompts(model, ["a cat walks"])

    def transformer_onloads(speed):
        model.configure_speed(speed)
        with count_onloads(model.modules) as onloads:
            sample(model, conditioning, settings)
        return onloads["transformer"]

    try:
        before = transformer_onloads(cached)
        apply_loras(model, [LoraFile(path)])
        apply_loras(model, [LoraFile(path, 0.3)])
        after = transformer_onloads(cached)
        uncached = transformer_onloads(SpeedSettings())
        assert model.last_run.blocks_run == model.last_run.blocks_total
        assert after == before < uncached
    finally:
        model.release()


def test_a_lora_for_another_model_is_refused_naming_its_keys(v1, shared_family_model, tmp_path):
    other = shared_family_model("hunyuan-video-1.5").modules["transformer"]
    path = random_lora(other, original_names=False).save(tmp_path / "x.safetensors", "diffusers")
    with pytest.raises(UserInputError, match=r"The LoRA x.safetensors does not fit this HunyuanVideo 1 .*"
                                             r"none of its layers match \(e.g. transformer\.context_embedder"):
        apply_loras(v1, [LoraFile(path)])
    assert v1.loras == {}
    hint = r"HunyuanVideo 1 and 1.5 LoRAs share Tencent's layer names \(double_blocks…\) but not their widths"
    original = random_lora(v1.modules["transformer"]).save(tmp_path / "v1.safetensors", "original")
    with pytest.raises(UserInputError, match=r"does not fit this HunyuanVideo 1.5 .*" + hint):
        apply_loras(shared_family_model("hunyuan-video-1.5"), [LoraFile(original)])
    original = random_lora(other).save(tmp_path / "v15.safetensors", "kohya")
    with pytest.raises(UserInputError, match=r"does not fit this HunyuanVideo 1 .*" + hint):
        apply_loras(v1, [LoraFile(original)])


def test_a_partly_matching_lora_is_applied_with_a_warning(v1, v1_lora, tmp_path, caplog):
    from safetensors.torch import save_file

    lora = v1_lora[0]
    state = lora.state_dict("original")
    state["diffusion_model.double_blocks.7.img_attn_qkv.lora_A.weight"] = torch.ones(4, 20)
    state["diffusion_model.double_blocks.7.img_attn_qkv.lora_B.weight"] = torch.ones(60, 4)
    state["diffusion_model.double_blocks.0.img_attn_qkv.dora_scale"] = torch.ones(60)
    save_file(state, tmp_path / "partly.safetensors")
    try:
        with caplog.at_level(logging.WARNING, logger="hunyuan_core.lora"):
            (line,) = apply_loras(v1, [LoraFile(tmp_path / "partly.safetensors")])
        assert "2 keys fit no layer of this model and are not applied" in line
        assert "diffusion_model.double_blocks.0.img_attn_qkv.dora_scale" in caplog.text
        assert "diffusion_model.double_blocks.7.img_attn_qkv" in caplog.text
        torch.testing.assert_close(forward(v1), v1_lora[1], **TOLERANCE)
    finally:
        apply_loras(v1, [])


def test_bad_files_are_refused_before_the_model_changes(v1, v1_lora, tmp_path):
    from safetensors.torch import save_file

    good = v1_lora[0].save(tmp_path / "good.safetensors", "original")
    apply_loras(v1, [LoraFile(good)])
    applied = dict(v1.loras)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "pickled.pt").write_bytes(b"")
    save_file(v1_lora[0].state_dict("original"), tmp_path / "settings.safetensors",
              metadata={"lora_adapter_metadata": "{lora_alpha: 8"})
    try:
        for bad, message in [("broken.safetensors", "Could not read the LoRA broken.safetensors"),
                             ("pickled.pt", "only .safetensors files are read"),
                             ("settings.safetensors", (r"LoRA settings.safetensors: its adapter settings "
                                                       r"\(lora_adapter_metadata in the file's metadata\) are not a "
                                                       r"JSON object. Save the LoRA again."))]:
            with pytest.raises(UserInputError, match=message):
                apply_loras(v1, [LoraFile(tmp_path / bad)])
            assert v1.loras == applied
        torch.testing.assert_close(forward(v1), v1_lora[1], **TOLERANCE)
    finally:
        apply_loras(v1, [])


def test_parse_lora(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    for name in ("a/b.safetensors", "b.safetensors", "C:\\loras\\b.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert parse_lora("a/b.safetensors:0.5") == LoraFile("a/b.safetensors", 0.5)
    assert parse_lora("b.safetensors") == LoraFile("b.safetensors", 1.0)
    assert parse_lora("C:\\loras\\b.safetensors") == LoraFile("C:\\loras\\b.safetensors", 1.0)
    with pytest.raises(UserInputError, match="--lora takes FILE"):
        parse_lora("b.safetensors:strong")
    with pytest.raises(UserInputError, match="finite"):
        LoraFile("b.safetensors", float("nan"))
    with pytest.raises(UserInputError, match="LoRA file not found: missing.safetensors"):
        parse_lora("missing.safetensors:0.5")


def test_with_fp8_storage_adapters_compute_in_the_compute_dtype(tiny_model_dir, v1_lora, tmp_path):
    """peft gives an adapter its base layer's dtype, fp8 under fp8 storage, in which no matmul runs."""
    from peft.tuners.lora import LoraLayer

    model = load_pipeline(tiny_model_dir, speed=SpeedSettings(fp8=("transformer",)))
    try:
        plain = forward(model)
        path = v1_lora[0].save(tmp_path / "l.safetensors", "original")
        apply_loras(model, [LoraFile(path, 0.0)])
        assert torch.equal(forward(model), plain)
        apply_loras(model, [LoraFile(path)])
        changed = forward(model)
        assert changed.isfinite().all() and not torch.equal(changed, plain)
        layers = [m for m in model.modules["transformer"].modules() if isinstance(m, LoraLayer)]
        assert layers and all(p.dtype == torch.float32 for m in layers for p in m.lora_A.parameters())
    finally:
        model.release()


def test_without_peft_the_error_says_what_to_install(v1, v1_lora, tmp_path, monkeypatch):
    """diffusers decides at import whether peft is usable; without it the pack says so before touching the model
    (diffusers would fail inside its loading, and its clean-up would hide the first error)."""
    import diffusers.utils

    monkeypatch.setattr(diffusers.utils, "USE_PEFT_BACKEND", False)
    path = v1_lora[0].save(tmp_path / "style.safetensors", "original")
    with pytest.raises(UserInputError, match=r"LoRAs need the peft package: run `pip install -r requirements.txt`"):
        apply_loras(v1, [LoraFile(path)])
    assert v1.loras == {}


def test_a_resident_transformer_stays_in_place_while_loras_change(v1, v1_lora, tmp_path, monkeypatch):
    """Without offloading there are no hooks to go stale: the transformer is not taken off its device (25 GB
    through system RAM and back per LoRA change on a GPU)."""
    from hunyuan_core.offload.hooks import AppliedOffload

    def refuse(*_):
        raise AssertionError("a resident component was detached")

    monkeypatch.setattr(AppliedOffload, "detach", refuse)
    path = v1_lora[0].save(tmp_path / "style.safetensors", "original")
    try:
        apply_loras(v1, [LoraFile(path)])
        torch.testing.assert_close(forward(v1), v1_lora[1], **TOLERANCE)
    finally:
        apply_loras(v1, [])
