"""Run by test_parallel.py under torchrun with 2 processes: the verify cases, then the CLI, in one process
group, so that process start-up (imports) is paid once. Arguments: verify's, then `--`, then the CLI's."""

from __future__ import annotations

import sys

import torch.distributed as dist

from hunyuan_core.cli import main as cli
from hunyuan_core.parallel.launch import join_process_group, rank_device
from hunyuan_core.parallel.verify import main as verify

if __name__ == "__main__":
    split = sys.argv.index("--")
    join_process_group(rank_device("cpu"))
    try:
        codes = verify(sys.argv[1:split]), cli(sys.argv[split + 1:])
    finally:
        dist.destroy_process_group()
    sys.exit(max(codes))
