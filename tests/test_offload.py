"""Group offloading covers all four components, really fires for each, and changes no output."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPTS, TINY_SETTINGS
from diffusers.hooks import apply_group_offloading
from helpers import generate

from hunyuan_core.errors import UserInputError
from hunyuan_core.offload.config import OffloadConfig, OffloadMode, OffloadPlan
from hunyuan_core.offload.hooks import offload_hooks, remove_offload
from hunyuan_core.offload.probe import count_onloads, hook_counts, peak_onloaded_bytes, poison_offloaded
from hunyuan_core.runtime.memory_estimate import transformer_device_bytes

COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")

CPU_CONFIGS = {
    "block_level": OffloadConfig(mode="block_level"),
    "block_level_2_per_group": OffloadConfig(mode="block_level", num_blocks_per_group=2),
    "leaf_level": OffloadConfig(mode="leaf_level"),
    "leaf_level_low_cpu_mem": OffloadConfig(mode="leaf_level", low_cpu_mem_usage=True, non_blocking=True),
}


def uniform(model, config):
    return OffloadPlan.uniform(config)


def test_plan_covers_every_torch_component(model):
    assert tuple(model.modules) == COMPONENTS
    assert set(model.offload_configs) == set(COMPONENTS)


@pytest.mark.parametrize("name", list(CPU_CONFIGS))
def test_every_component_is_hooked_and_onloads(model, name):
    model.configure_offload(uniform(model, CPU_CONFIGS[name]))
    hooks = hook_counts(model.modules)
    assert all(hooks[c] > 0 for c in COMPONENTS), hooks
    with count_onloads(model.modules) as onloads:
        generate(model, PROMPTS, TINY_SETTINGS)
    assert all(onloads[c] > 0 for c in COMPONENTS), onloads


def test_vae_block_modules_are_what_makes_vae_offloading_fire(model):
    """Plain block-level offloading of the VAE never onloads during decode; ours does."""
    vae = model.modules["vae"]
    apply_group_offloading(vae, onload_device="cpu", offload_type="block_level", num_blocks_per_group=1)
    with count_onloads({"vae": vae}) as plain:
        generate(model, PROMPTS[:1], TINY_SETTINGS)
    remove_offload(vae)
    model.configure_offload(uniform(model, OffloadConfig(mode="block_level")))
    with count_onloads({"vae": vae}) as ours:
        generate(model, PROMPTS[:1], TINY_SETTINGS)
    assert plain["vae"] == 0
    assert ours["vae"] > 0


def record_copies(module):
    """A list with, per onload of any of `module`'s groups, the ids of the tensors that onload copied."""
    onloads = []
    for group in {id(hook.group): hook.group for hook in offload_hooks(module)}.values():
        onload, transfer = group.onload_, group._transfer_tensor_to_device

        def recording_onload(onload=onload):
            onloads.append([])
            return onload()

        def recording_transfer(tensor, source, stream, transfer=transfer):
            onloads[-1].append(id(tensor))
            return transfer(tensor, source, stream)

        group.onload_, group._transfer_tensor_to_device = recording_onload, recording_transfer
    return onloads


@pytest.mark.parametrize("name", ["block_level", "block_level_2_per_group", "leaf_level"])
def test_each_onload_copies_each_tensor_once(model, name):
    """diffusers lists the tensors of block-level "unmatched" groups twice and copied them twice per onload."""
    model.configure_offload(uniform(model, CPU_CONFIGS[name]))
    copies = {component: record_copies(module) for component, module in model.modules.items()}
    generate(model, PROMPTS, TINY_SETTINGS)
    for component, onloads in copies.items():
        assert onloads, component
        repeated = [len(tensors) - len(set(tensors)) for tensors in onloads]
        assert repeated == [0] * len(onloads), component
    transformer = model.modules["transformer"]
    copied = {tensor for tensors in copies["transformer"] for tensor in tensors}
    assert copied == {id(t) for t in (*transformer.parameters(), *transformer.buffers())}, "and each one is copied"


@pytest.mark.parametrize("name", list(CPU_CONFIGS))
def test_offloaded_output_is_bitwise_equal(model, reference, name):
    model.configure_offload(uniform(model, CPU_CONFIGS[name]))
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0])
    assert torch.equal(frames, reference[1])


def test_disk_offload_is_bitwise_equal_and_restores_weights(model, reference, tmp_path):
    before = {name: p.clone() for name, p in model.modules["transformer"].named_parameters()}
    model.configure_offload(uniform(model, OffloadConfig(mode="leaf_level", disk_folder=str(tmp_path))))
    assert any(tmp_path.rglob("*.safetensors"))
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])

    # While offloaded to disk the in-memory tensors are uninitialised placeholders: make that visible.
    with torch.no_grad():
        for parameter in model.modules["transformer"].parameters():
            parameter.fill_(float("nan"))
    model.configure_offload(uniform(model, OffloadConfig()))
    after = dict(model.modules["transformer"].named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(tmp_path.iterdir()), "the disk offload files of a replaced plan must be deleted"


def test_two_models_offloaded_to_one_folder_do_not_share_files(tiny_model_dir, tmp_path):
    from hunyuan_core.loading.loader import load_pipeline

    first = load_pipeline(tiny_model_dir)
    second = load_pipeline(tiny_model_dir)
    try:
        with torch.no_grad():
            for parameter in second.modules["transformer"].parameters():
                parameter.mul_(0.5)
        expected, _ = generate(second, PROMPTS, TINY_SETTINGS)
        plan_config = OffloadConfig(mode="block_level", disk_folder=str(tmp_path))
        first.configure_offload(uniform(first, plan_config))
        second.configure_offload(uniform(second, plan_config))
        latents, _ = generate(second, PROMPTS, TINY_SETTINGS)
        assert torch.equal(latents, expected)
    finally:
        first.release()
        second.release()


def test_reconfiguring_replaces_hooks_instead_of_stacking(model, reference):
    leaf = uniform(model, OffloadConfig(mode="leaf_level"))
    block = uniform(model, OffloadConfig(mode="block_level"))
    model.configure_offload(leaf)
    leaf_hooks = hook_counts(model.modules)
    model.configure_offload(block)
    block_hooks = hook_counts(model.modules)
    for _ in range(3):
        model.configure_offload(leaf)
        model.configure_offload(block)
    assert hook_counts(model.modules) == block_hooks
    model.configure_offload(leaf)
    assert hook_counts(model.modules) == leaf_hooks
    assert leaf_hooks != block_hooks
    model.configure_offload(uniform(model, OffloadConfig()))
    assert hook_counts(model.modules) == dict.fromkeys(COMPONENTS, 0)
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])


def test_changing_one_component_leaves_the_others_hooked_as_they_were(model, reference):
    block = uniform(model, OffloadConfig(mode="block_level"))
    model.configure_offload(block)
    transformer_hooks = [id(h) for h in offload_hooks(model.modules["transformer"])]
    vae_hooks = [id(h) for h in offload_hooks(model.modules["vae"])]
    model.configure_offload(block.with_components(("vae",), OffloadConfig(mode="leaf_level")))
    assert [id(h) for h in offload_hooks(model.modules["transformer"])] == transformer_hooks
    leaf_vae_hooks = [id(h) for h in offload_hooks(model.modules["vae"])]
    assert len(leaf_vae_hooks) > len(vae_hooks)
    model.configure_offload(block.with_components(("vae",), OffloadConfig(mode="leaf_level")))  # the same plan again
    assert [id(h) for h in offload_hooks(model.modules["vae"])] == leaf_vae_hooks
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])


def test_per_component_plans(model, reference):
    plan = uniform(model, OffloadConfig(mode="block_level")).with_components(
        ("text_encoder", "text_encoder_2"), OffloadConfig(mode="leaf_level")
    )
    model.configure_offload(plan)
    assert model.offload_configs["text_encoder"].mode == OffloadMode.LEAF_LEVEL
    assert model.offload_configs["vae"].mode == OffloadMode.BLOCK_LEVEL
    latents, _ = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0])


def test_accelerate_offloading_is_refused(model):
    from accelerate.hooks import CpuOffload, add_hook_to_module

    add_hook_to_module(model.modules["vae"], CpuOffload(execution_device="cpu"))
    with pytest.raises(UserInputError) as error:
        model.configure_offload(uniform(model, OffloadConfig(mode="leaf_level")))
    assert str(error.value) == (
        "vae already uses accelerate offloading (enable_model_cpu_offload or enable_sequential_cpu_offload). "
        "Offloading strategies do not stack: load the model again without them before applying group offloading."
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            OffloadConfig(mode="leaf_level", use_stream=True),
            "offload settings for transformer: use_stream needs an accelerator (CUDA) onload device, but the onload "
            "device is the CPU. Turn use_stream off, or run on a GPU.",
        ),
        (
            OffloadConfig(mode="leaf_level", record_stream=True),
            "offload settings for transformer: record_stream only works together with use_stream. "
            "Turn one on or both off.",
        ),
        (
            OffloadConfig(mode="block_level", num_blocks_per_group=0),
            "offload settings for transformer: blocks per group must be at least 1, got 0.",
        ),
    ],
)
def test_bad_offload_settings_are_explained(model, config, message):
    with pytest.raises(UserInputError) as error:
        model.configure_offload(uniform(model, config))
    assert str(error.value) == message


def test_unwritable_disk_folder_is_explained(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = OffloadConfig(mode="leaf_level", disk_folder=str(blocker / "offload"))
    with pytest.raises(UserInputError, match=r"the disk offload folder .* is not writable"):
        model.configure_offload(uniform(model, config))


def test_mixed_onload_devices_are_refused(model):
    plan = uniform(model, OffloadConfig()).with_components(("vae",), OffloadConfig(onload_device="meta"))
    with pytest.raises(UserInputError) as error:
        model.configure_offload(plan)
    assert str(error.value) == (
        "All components must compute on one device, but the offload settings name ['cpu', 'meta']. "
        "Use the same onload device for every component."
    )


def tensor_bytes(module):
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


@pytest.mark.parametrize("name", ["block_level", "leaf_level"])
def test_the_vram_estimate_covers_the_weights_the_hooks_really_onload(model, name):
    model.configure_offload(uniform(model, CPU_CONFIGS[name]))
    with peak_onloaded_bytes(model.modules) as peaks:
        generate(model, PROMPTS, TINY_SETTINGS)
    estimate = transformer_device_bytes(model)
    transformer = model.modules["transformer"]
    assert 0 < peaks["transformer"] <= estimate < tensor_bytes(transformer)
    assert all(0 < peaks[c] < tensor_bytes(model.modules[c]) for c in COMPONENTS), peaks
    if name == "block_level":
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        outside_blocks = tensor_bytes(transformer) - sum(map(tensor_bytes, blocks))
        largest = max(map(tensor_bytes, blocks))
        assert peaks["transformer"] == outside_blocks + largest, "on a CPU: what is not a block, plus one block"
        assert estimate == outside_blocks + 2 * largest, "on a GPU one more block is in flight"


def test_modifying_a_component_reapplies_its_offloading_the_packs_way(model, reference, tmp_path):
    """While the body runs the component has no hooks and real weights; afterwards the same settings are
    applied again (fresh disk folder, hooks that fire) and the output is unchanged."""
    config = OffloadConfig(mode="leaf_level", disk_folder=str(tmp_path))
    model.configure_offload(uniform(model, config))
    folders_before = set(tmp_path.iterdir())
    with model.modifying(("transformer",)) as modules:
        transformer = modules["transformer"]
        assert hook_counts({"t": transformer}) == {"t": 0}
        assert all(torch.isfinite(p).all() for p in transformer.parameters()), "real weights, not placeholders"
    assert model.offload_configs["transformer"] == config
    assert hook_counts(model.modules)["transformer"] > 0
    assert len(set(tmp_path.iterdir())) == len(folders_before) and set(tmp_path.iterdir()) != folders_before
    latents, frames = generate(model, PROMPTS, TINY_SETTINGS)
    assert torch.equal(latents, reference[0]) and torch.equal(frames, reference[1])


class _StandInStream:
    """Lets diffusers build its streamed (lazy-prefetch) hooks on a CPU; no forward runs with it."""

    def synchronize(self):
        pass


@pytest.mark.parametrize("name, component", [("hunyuan-video-i2v", "text_encoder"),
                                             ("hunyuan-video-1.5", "text_encoder_2")])
def test_streamed_offloading_applies_where_block_modules_nest(shared_family_model, name, component):
    """Llava's language model and ByT5's encoder are block modules with loose layers of their own inside a
    model with loose layers: diffusers 0.42.1 gave each level a lazy-prefetch hook and the outer one raised
    "layer_execution_tracker already exists". Now one hook at the top traces every group below it."""
    from diffusers.hooks import group_offloading

    from hunyuan_core.offload.diffusers_fixes import trace_nested_groups_once

    trace_nested_groups_once()
    model = shared_family_model(name)
    module = type(model.modules[component])(model.modules[component].config)  # a fresh, unhooked copy
    config = group_offloading.GroupOffloadingConfig(
        onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
        offload_type=group_offloading.GroupOffloadingType.BLOCK_LEVEL, non_blocking=True, record_stream=True,
        low_cpu_mem_usage=True, num_blocks_per_group=1, stream=_StandInStream(),
        block_modules=list(model.family.spec.component(component).offload_block_modules))
    group_offloading._apply_group_offloading_block_level(module, config)

    registries = {n: m._diffusers_hook for n, m in module.named_modules() if hasattr(m, "_diffusers_hook")}
    lazy = {n: r.get_hook(group_offloading._LAZY_PREFETCH_GROUP_OFFLOADING) for n, r in registries.items()}
    assert [n for n, hook in lazy.items() if hook is not None] == [""]
    grouped = {n for n, r in registries.items() if n and r.get_hook(group_offloading._GROUP_OFFLOADING) is not None}
    traced = {n for n, r in registries.items() if r.get_hook(group_offloading._LAYER_EXECUTION_TRACKER) is not None}
    assert any(inner.startswith(f"{outer}.") for inner in grouped for outer in grouped), "groups nest"
    assert traced == grouped == lazy[""]._layer_execution_tracker_module_names


def test_the_poison_probe_names_weights_no_group_holds():
    """Weights added after the hooks were applied (stale hooks, e.g. a LoRA's adapters) cannot be poisoned;
    the probe names them instead of passing them by."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_type="leaf_level")
    with poison_offloaded({"model": model}) as poisoned:
        model(torch.ones(1, 4))
    assert poisoned == []
    model.append(torch.nn.Linear(4, 4))  # never hooked
    with poison_offloaded({"model": model}) as poisoned:
        model(torch.ones(1, 4))
    assert poisoned == ["model.2.weight (in no offload group)", "model.2.bias (in no offload group)"]


class _TiedEmbedding(torch.nn.Module):
    """T5's layout: an unused `shared` embedding whose weight is the one the encoder uses."""

    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Embedding(64, 16)
        self.encoder = torch.nn.Sequential(torch.nn.Embedding(64, 16), torch.nn.Linear(16, 16))
        self.encoder[0].weight = self.shared.weight

    def forward(self, ids):
        return self.encoder(ids)


def test_disk_offloading_keeps_tied_weights(tmp_path):
    """diffusers 0.42.1 puts a tied weight in the disk groups of both its modules, and the second group writes the
    placeholder the first left (garbage, not NaN; what it holds depends on the allocator). `untie_parameters`
    (applied before every disk offloading) gives each group its own copy: the output is exact."""
    from hunyuan_core.offload.diffusers_fixes import untie_parameters
    from hunyuan_core.offload.hooks import offload_hooks

    def groups_holding(model, parameter):
        groups = {id(hook.group): hook.group for hook in offload_hooks(model)}.values()
        return sum(any(t is parameter for t in group.tensor_to_key) for group in groups)

    torch.manual_seed(0)
    ids = torch.arange(64).reshape(4, 16)
    tied, model = _TiedEmbedding(), _TiedEmbedding()
    model.load_state_dict(tied.state_dict())
    with torch.no_grad():
        expected = model(ids)
    apply_group_offloading(tied, onload_device=torch.device("cpu"), offload_type="leaf_level",
                           offload_to_disk_path=str(tmp_path / "tied"))
    assert groups_holding(tied, tied.shared.weight) == 2  # the fix is still needed
    assert untie_parameters(model) == ["encoder.0.weight"]
    assert torch.equal(model.encoder[0].weight, model.shared.weight)
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_type="leaf_level",
                           offload_to_disk_path=str(tmp_path / "untied"))
    assert groups_holding(model, model.shared.weight) == groups_holding(model, model.encoder[0].weight) == 1
    with torch.no_grad():
        assert torch.equal(model(ids), expected)
