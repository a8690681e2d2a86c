"""Context parallelism: two CPU processes (gloo, Ulysses degree 2) give one process's latents for every
family, the CLI runs under torchrun with rank 0 alone writing, and every refusal is a clear message before
anything heavy runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig, HunyuanVideoTransformer3DModel

from hunyuan_core.cli import main
from hunyuan_core.families import FAMILIES
from hunyuan_core.families.hunyuan_video import HUNYUAN_VIDEO as TEXT_TO_VIDEO
from hunyuan_core.loading.folder import read_model_index
from hunyuan_core.offload.config import OffloadConfig, OffloadPlan
from hunyuan_core.parallel import ParallelSettings, ParallelSetupError, checks
from hunyuan_core.parallel.launch import diffusers_device_count
from hunyuan_core.parallel.plans import HUNYUAN_VIDEO, HUNYUAN_VIDEO_15, plan_for
from hunyuan_core.runtime.attention_mask import key_order_mask
from hunyuan_core.speed.settings import SpeedSettings

ROOT = Path(__file__).resolve().parents[1]
CASES = [("hunyuan-video", "ulysses=2 true_cfg_scale=4"), ("hunyuan-video-i2v", "ulysses=2"),
         ("hunyuan-video-1.5", "ulysses=2"), ("hunyuan-video-1.5-i2v", "ulysses=2"), ("hunyuan-video-1.5", "cfg=2")]
"""One case per transformer family and image conditioning (HunyuanVideo 1 text-to-video with true CFG, its
token-replace image-to-video, 1.5 text- and image-to-video) and CFG parallel (1.5's folder guides)."""


def test_two_processes_give_one_process_results_for_every_family(random_folder, tmp_path):
    cases = [f"{random_folder(name)} {spec} steps=2" for name, spec in CASES]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "parallel_job.py"), "--atol", "1e-5", *(item for case in cases for item in ("--case", case)),
         "--", "generate", "--model", str(random_folder("hunyuan-video")), "--steps", "2", "--width", "64",
         "--height", "64", "--frames", "9", "--offload", "block_level",
         "--device", "cpu", "--out", "video.webp", "--parallel", "ulysses=2"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(Path(line["model"]).name, line["parallel"]) for line in lines] == [
        (name, spec.split()[0]) for name, spec in CASES], result.stdout + result.stderr[-3000:]
    for line in lines:
        assert line["ranks_equal"], line  # the gathered latents are the same on both ranks
        assert line["max_abs"] <= 1e-5 and line["max_rel"] <= 1e-6, line  # reordered float sums only
        assert line["share"] == 1 / 2, line  # each rank computed half the rows: the work really was split
    # The CLI: rank 1 samples with rank 0 but neither decodes nor writes nor reports.
    assert result.returncode == 0, result.stderr[-3000:]
    assert [path.name for path in tmp_path.iterdir()] == ["video.webp"]
    assert result.stdout.count("wrote video.webp") == 1
    assert result.stdout.count("offload check: transformer:") == 1 and "NEVER" not in result.stdout


def test_the_mask_is_reordered_into_ulysses_key_order():
    # 4 image + 4 text tokens on 2 ranks: rank 0 holds [i0 i1 t0 t1], rank 1 [i2 i3 t2 t3], and Ulysses
    # concatenates their keys rank after rank.
    whole = torch.tensor([[True, True, True, True, True, True, False, False]])[:, None, None, :]
    reordered = key_order_mask(whole, local_image=2, local_text=2, world=2)
    assert reordered.flatten().tolist() == [True, True, True, True, True, True, False, False][:4] + [
        True, True, False, False]
    with pytest.raises(RuntimeError, match=r"expected a key-padding mask \[B, 1, 1, 8\]"):
        key_order_mask(whole[..., :6], local_image=2, local_text=2, world=2)


@pytest.mark.skipif(torch.accelerator.device_count() > 0, reason="the workaround is a no-op with an accelerator")
def test_enable_parallelism_gets_past_diffusers_device_count_on_a_cpu(tmp_path):
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 2, 4))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        config = ContextParallelConfig(ulysses_degree=2)
        with pytest.raises(ZeroDivisionError):  # diffusers 0.42.1: rank % torch.accelerator.device_count()
            transformer.enable_parallelism(config=config, cp_plan=dict(HUNYUAN_VIDEO.cp_plan))
        # past the device, the next check is the world size (one process here, two wanted)
        with diffusers_device_count(), pytest.raises(Exception, match="Mesh should not be bigger|must not exceed"):
            transformer.enable_parallelism(config=config, cp_plan=dict(HUNYUAN_VIDEO.cp_plan))
        assert torch.accelerator.device_count() == 0
    finally:
        dist.destroy_process_group()


def test_every_family_has_a_plan():
    plans = {family.name: plan_for(family) for family in FAMILIES.values()}
    assert [plan is HUNYUAN_VIDEO_15 for plan in plans.values()] == ["1.5" in name for name in plans] and len(plans) == 4
    assert HUNYUAN_VIDEO.leading_token_counts({"image_condition_type": "token_replace"}) == {
        "transformer_blocks.*": "num_tokens", "single_transformer_blocks.*": "num_tokens"}
    assert HUNYUAN_VIDEO.leading_token_counts({"image_condition_type": "latent_concat"}) == {}


@pytest.mark.parametrize("spec, message", [
    ("ring=2", "Ring attention cannot run HunyuanVideo in diffusers 0.42.1"),
    ("ulysses=1", "--parallel needs a degree above 1"),
    ("cfg=3", "cfg=3: classifier-free guidance has two halves"),
    ("tensor=2", "--parallel takes ulysses=N and/or cfg=2"),
])
def test_bad_parallel_settings(spec, message):
    with pytest.raises(ParallelSetupError, match=message):
        ParallelSettings.parse(spec)


def test_launch_checks():
    assert ParallelSettings.parse("cfg=2,ulysses=2").world_size == 4
    assert ParallelSettings.parse("ring=1,ulysses=2") == ParallelSettings(ulysses=2)  # ring=1: no ring attention
    with pytest.raises(ParallelSetupError, match="runs on exactly 2 processes, but 3 were started"):
        checks.check_launch(3, 2, "cpu", 0, 3, "ulysses=2")
    with pytest.raises(ParallelSetupError, match="2 processes on this machine but only 1 cuda device"):
        checks.check_launch(2, 2, "cuda", 1, 2, "ulysses=2")
    checks.check_launch(2, 2, "cuda", 2, 2, "ulysses=2")
    checks.check_launch(2, 2, "cpu", 0, 2, "ulysses=2")  # CPU ranks share the CPU


def test_not_started_by_torchrun_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["generate", "--model", "tiny", "--parallel", "ulysses=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --parallel ulysses=2 needs 2 processes started by torchrun, one per device: "
        "torchrun --nproc_per_node 2 -m hunyuan_core generate ... --parallel ulysses=2")


def test_a_world_size_that_does_not_match_the_degree_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert main(["generate", "--model", "tiny", "--device", "cpu", "--parallel", "ulysses=2"]) == 2
    assert "--parallel ulysses=2 runs on exactly 2 processes, but 1 were started" in capsys.readouterr().err
    assert not dist.is_initialized()


def test_heads_and_image_tokens_that_do_not_divide(random_folder):
    folder = random_folder("hunyuan-video")
    family = read_model_index(folder)
    with pytest.raises(ParallelSetupError, match=r"has 2 attention heads, which ulysses=3 cannot share equally. "
                                                 r"Use a degree that divides 2: 2\."):
        checks.check_model(family, folder, 3, 64, 64, 9)
    # 16x16 with 9 frames: 3 latent frames of one 2x2 patch -> 3 image tokens
    with pytest.raises(ParallelSetupError, match=r"16x16 with 9 frames makes 3 image tokens, which 2 processes "
                                                 r"cannot share equally\. .* frames .*5.* work"):
        checks.check_model(family, folder, 2, 16, 16, 9)
    checks.check_model(family, folder, 2, 64, 64, 9)


def test_offload_that_cannot_work_per_process(tmp_path):
    sizes = {"transformer": 30 * checks.GB, "vae": checks.GB}
    in_ram = OffloadPlan.uniform(OffloadConfig(mode="block_level", onload_device="cuda")).resolve(
        TEXT_TO_VIDEO.spec)
    with pytest.raises(ParallelSetupError, match=r"2 x 31.0 GB = 62.0 GB, but the machine has 48.0 GB"):
        checks.check_offload(in_ram, sizes, 2, memory=48 * checks.GB)
    checks.check_offload(in_ram, sizes, 2, memory=64 * checks.GB)


def test_weight_sizes_come_from_the_headers_and_the_single_files_given(random_folder, tmp_path):
    """What the per-process memory check counts: the folder's weights in their load dtype, a single file given
    instead (a configs-only folder holds none) at its own size."""
    from safetensors.torch import save_file

    folder = random_folder("hunyuan-video")
    spec = read_model_index(folder).spec
    dtypes = {name: torch.bfloat16 for name in spec.module_names}
    from_folder = checks.weight_bytes(folder, dtypes, {})
    transformer = HunyuanVideoTransformer3DModel.from_pretrained(folder / "transformer")
    assert from_folder["transformer"] == 2 * sum(p.numel() for p in transformer.parameters())
    path = tmp_path / "transformer.safetensors"
    save_file({"w": torch.zeros(1000, dtype=torch.float8_e4m3fn)}, str(path))
    with_file = checks.weight_bytes(folder, dtypes, {"transformer": path})
    assert with_file["transformer"] == path.stat().st_size and with_file["vae"] == from_folder["vae"]


def test_speed_levers_that_cannot_run_split():
    with pytest.raises(ParallelSetupError, match="The first_block cache skips whole blocks"):
        checks.check_speed(SpeedSettings(cache="first_block"), 2)
    with pytest.raises(ParallelSetupError, match="The flash attention backend cannot run under context parallelism"):
        checks.check_speed(SpeedSettings(attention="flash"), 2)
    checks.check_speed(SpeedSettings(attention="native"), 2)


def test_cfg_parallel_needs_guidance_in_one_batched_pass():
    with pytest.raises(ParallelSetupError, match="but guidance is off for this run"):
        checks.check_guidance(2, guided=False, batched_cfg=True)
    with pytest.raises(ParallelSetupError, match="turn batched_cfg back on"):
        checks.check_guidance(2, guided=True, batched_cfg=False)
    checks.check_guidance(2, guided=True, batched_cfg=True)


def test_only_rank_0_prints_the_setup_errors_every_rank_finds(monkeypatch):
    from argparse import Namespace

    from hunyuan_core.cli import _error_line
    from hunyuan_core.errors import UserInputError

    args = Namespace(parallel="ulysses=2")
    monkeypatch.setenv("RANK", "1")
    assert _error_line(args, ParallelSetupError("alike on every rank")) is None
    assert _error_line(args, UserInputError("only here")) == "error (rank 1): only here"
    monkeypatch.setenv("RANK", "0")
    assert _error_line(args, ParallelSetupError("alike on every rank")) == "error: alike on every rank"
