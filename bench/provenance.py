"""What every benchmark result records beside its figures: when, on what, with which versions, how run.

Shared by the scripts in bench/; `provenance(device)` is called once at the start of a run and
`load_average()` around each timed part, so a noisy machine shows in the result.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1-, 5- and 15-minute load averages (runnable processes; compare with the core count)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


REPO = Path(__file__).resolve().parent.parent  # this checkout


def git_commit(repo: str | Path = REPO) -> str | None:
    """The commit of the checkout at `repo` (this one), with '+dirty' when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def provenance(device: torch.device) -> dict:
    on_cuda = device.type == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
        "device": torch.cuda.get_device_name(device) if on_cuda else cpu_model(),
        "device_type": device.type,
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "optuna": _version("optuna"),
        "cuda": torch.version.cuda if on_cuda else None,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,
        "driver": _nvidia_driver() if on_cuda else None,
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "load_average_start": load_average(),
    }


def as_a_user_runs(**variables: str) -> dict[str, str]:
    """The environment for a timed command, as a user's shell has it, with `variables` added: Python keeps its
    bytecode cache. A machine that sets PYTHONDONTWRITEBYTECODE (this workplace's does) compiles every module of
    hpsearch again at each start, 0.06 s of a 0.2-s command, which no user pays after the first run."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, **variables}


def alternated(cases: dict[str, Callable[[], tuple[float, float]]], repeats: int, digits: int) -> dict:
    """Each case (a call giving its wall and CPU seconds) run `repeats` times, the cases alternating so that a change
    in the machine's load hits them all, with the load after each; the medians and the ratio of `slower` over
    `faster` added by ratios()."""
    seconds: dict[str, list[float]] = {case: [] for case in cases}
    cpu_seconds: dict[str, list[float]] = {case: [] for case in cases}
    loads = []
    for _ in range(repeats):
        for case, run in cases.items():
            wall, cpu = run()
            seconds[case].append(round(wall, digits))
            cpu_seconds[case].append(round(cpu, digits))
            loads.append(load_average())
            print(f"{case}: {seconds[case][-1]} s ({cpu_seconds[case][-1]} s CPU)", file=sys.stderr)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "load_averages": loads}


def ratios(rounds: dict, slower: str, faster: str) -> dict:
    """alternated()'s rounds with each case's median seconds and CPU seconds, and the ratios of `slower` over
    `faster`."""
    medians = {case: statistics.median(values) for case, values in rounds["seconds"].items()}
    cpu_medians = {case: statistics.median(values) for case, values in rounds["cpu_seconds"].items()}
    return {**rounds, "median_s": medians, "ratio": round(medians[slower] / medians[faster], 2),
            "cpu_median_s": cpu_medians, "cpu_ratio": round(cpu_medians[slower] / cpu_medians[faster], 2),
            "load_average_end": load_average()}


def write_result(path: Path, result: dict) -> None:
    """The result as indented JSON at `path`, its folder made: what every benchmark commits under bench/results/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
