"""Measuring tools shared by the benchmarks: step clocks, peak accelerator memory and peak host RSS."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from datetime import date

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """A step callback that timestamps each finished step (after synchronising the device)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times = [time.perf_counter()]

    def __call__(self, done: int, total: int, *_preview) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter())

    def median_step(self, warmup: int) -> float:
        durations = [b - a for a, b in zip(self.times, self.times[1:])]
        return statistics.median(durations[warmup:] or durations)


class PeakRss:
    """Polls this process's resident set size in a thread; `peak` is the largest value seen (bytes)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


class PeakDeviceMemory:
    """Peak memory allocated on a CUDA device during the `with` body (None elsewhere)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = None

    def __enter__(self) -> PeakDeviceMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)


def _command() -> str:
    """The command line as typed: `python -m package.module args` for a module run."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return " ".join(program + [f"'{a}'" if " " in a else a for a in sys.argv[1:]])


def environment(device: torch.device) -> dict:
    """Date, hardware and versions, for the record."""
    import diffusers
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu}",
        "cpu_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "command": _command(),
    }
