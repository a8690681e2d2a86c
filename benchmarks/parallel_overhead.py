"""Context parallelism on this machine: two processes against one, same latents within float tolerance?
and what does splitting cost or save per sampling run?

    python -m benchmarks.parallel_overhead --runs 5                      # CPU: gloo, 2 processes
    python -m benchmarks.parallel_overhead --runs 5 --device cuda --case "PATH ulysses=2 width=848 height=480 frames=61"

Starts one torchrun job (`hunyuan_core.parallel.verify`) that runs every case `--runs` times; in each run
every rank first samples alone, then as one rank of the parallel run. Prints a Markdown table: per case, the
largest difference from the lone run over all runs, and the median sampling time of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from hunyuan_core.devices import default_device

from .measure import environment

CASES = ["tiny ulysses=2", "tiny ulysses=2 true_cfg_scale=4", "tiny cfg=2 true_cfg_scale=4", "tiny-1.5 ulysses=2",
         "tiny-1.5 cfg=2"]
SIZE = "width=128 height=128 frames=17 steps=4"


def run_job(cases: list[str], runs: int, processes: int, device: str | None) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "hunyuan_core.parallel.verify", "--atol", "1e-4"]
    for case in cases:
        command += ["--case", case] * runs
    if device:
        command += ["--device", device]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or len(lines) != len(cases) * runs:
        raise SystemExit(f"torchrun failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    return lines


def table(lines: list[dict]) -> str:
    header = ("| case | runs | max abs diff | max rel diff | ranks equal | one process s (median) | "
              "parallel s (median) | parallel / one |")
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    cases: dict[tuple, list[dict]] = {}
    for line in lines:
        cases.setdefault((line["model"], line["parallel"], json.dumps(line["settings"])), []).append(line)
    for (model, parallel, settings), runs in cases.items():
        single = statistics.median(run["single_s"] for run in runs)
        split = statistics.median(run["parallel_s"] for run in runs)
        rows.append(
            f"| {model} {parallel} {settings} | {len(runs)} | {max(r['max_abs'] for r in runs):.1e} | "
            f"{max(r['max_rel'] for r in runs):.1e} | {all(r['ranks_equal'] for r in runs)} | {single:.3f} | "
            f"{split:.3f} | {split / single:.2f}× |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="a verify case (default: tiny models at " + SIZE + ")")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", help="cpu or cuda (default: the accelerator if there is one)")
    parser.add_argument("--json", help="also write every run's line here")
    args = parser.parse_args()
    cases = args.case or [f"{case} {SIZE}" for case in CASES]
    lines = run_job(cases, args.runs, args.processes, args.device)
    record = {**environment(torch.device(args.device) if args.device else default_device()),
              "processes": args.processes, "threads_per_process": os.environ.get("OMP_NUM_THREADS", "1 (torchrun)")}
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": record, "runs": lines}, indent=1))
    print(json.dumps(record))
    print(table(lines))


if __name__ == "__main__":
    main()
