"""Finished trials per hour with K worker processes per GPU, against K = 1, in one run.

Each K runs the same fixed study from an empty SQLite file for the same wall time
(`hpsearch run --trials-per-gpu K --timeout T`, startup included), then counts the trials that
finished (complete or pruned). The ratio to K = 1 is what --trials-per-gpu buys: small models
leave most of an H100 idle, so several trials at once fill it. On CUDA, nvidia-smi is polled every
POLL_S seconds for the GPU memory each process held at its peak. On a machine without a GPU,
`--device cpu` runs K CPU workers instead (a smoke test of the script, not a GPU figure).

    python bench/trials_per_gpu.py --study bench/studies/cifar10-small.yaml --ks 1 2 4 --seconds 240 \\
        --out bench/results/trials-per-gpu-h100.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402  (bench/provenance.py: device, versions, command)

POLL_S = 2  # how often nvidia-smi is asked what each worker holds


def measure(study_file: str, k: int, seconds: float, device: str, data_dir: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{folder}/bench.db"
        cmd = [sys.executable, "-m", "hpsearch", "run", "--study", study_file, "--storage", storage,
               "--timeout", str(seconds), "--n-trials", "100000", "--no-stop-at-target"]
        cmd += ["--trials-per-gpu", str(k)] if device == "cuda" else ["--device", "cpu", "--workers", str(k)]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        peaks: dict[int, int] = {}  # pid -> the most GPU memory (MiB) it held at any poll
        while process.poll() is None:
            for pid, mib in (gpu_memory_by_process() or {}).items():
                peaks[pid] = max(mib, peaks.get(pid, 0))
            time.sleep(POLL_S)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited with status {process.returncode}")
        wall = time.perf_counter() - started
        study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        states = [t.state for t in study.trials]
    finished = states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
    return {"k": k, "wall_s": round(wall, 1), "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL),
            "finished_per_hour": round(finished * 3600 / wall, 1),
            "gpu_memory_mib_per_process": sorted(peaks.values(), reverse=True) if device == "cuda" else None}


def gpu_memory_by_process() -> dict[int, int] | None:
    """MiB of GPU memory each process holds now, as nvidia-smi sees it (None where it cannot tell)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = (line.split(",") for line in out.splitlines() if line.strip())
    return {int(pid): int(mib) for pid, mib in rows if mib.strip().isdigit()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [measure(args.study, k, args.seconds, args.device, args.data_dir) for k in args.ks]
    reference = rows[0]["finished_per_hour"] or float("nan")
    print(f"{'K':>3} {'wall s':>8} {'complete':>9} {'pruned':>7} {'failed':>7} {'trials/h':>9} {'vs K=' + str(rows[0]['k']):>8}")
    for row in rows:
        row["ratio"] = round(row["finished_per_hour"] / reference, 2)
        print(f"{row['k']:>3} {row['wall_s']:>8} {row['complete']:>9} {row['pruned']:>7} {row['failed']:>7} "
              f"{row['finished_per_hour']:>9} {row['ratio']:>8}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**provenance(torch.device(args.device)), "study": args.study, "seconds": args.seconds,
                                        "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
