"""What `--mlflow` costs a trial: the same digits runs with and without it, in turn, to a local MLflow store.

Each round runs `hpsearch run` twice as fresh processes on fresh storages, once plain and once with
`--mlflow sqlite:///.../mlflow.db` (MLflow's own default store; its artifacts in a local folder), alternating
which goes first so that a change in the machine's load hits both. Same study (bench/studies/digits-small.yaml
with --epochs), seed and trials, so the same configs train. The figure is wall seconds per epoch of a trial
(the trial's `seconds` attribute, the objective from start to end, every epoch's callbacks included, over its
epochs), median over the trials of a run; the first trial of each run (warm-up) is left out. The ratio
with ÷ without is taken per round, and their geometric mean over an even number of rounds reported: on a
shared machine the load drifts between rounds more than within one, and whichever run goes first in a round
was seen to be slower, which alternating the order cancels. CPU seconds of each whole process (mlflow's
import and store included) are recorded beside.

    python bench/mlflow_overhead.py --out bench/results/mlflow-overhead-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optuna  # noqa: E402
import torch  # noqa: E402  (the provenance record only; the timed runs are separate processes)
import yaml  # noqa: E402
from provenance import load_average, provenance  # noqa: E402  (bench/provenance.py)

STUDY = Path(__file__).resolve().parent / "studies" / "digits-small.yaml"


def timed_run(folder: Path, study: Path, trials: int, mlflow: bool) -> dict:
    """One `hpsearch run` in `folder`: its wall and CPU seconds and each trial's seconds per epoch."""
    storage = f"sqlite:///{folder / 'hpsearch.db'}"
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(study), "--storage", storage,
               "--n-trials", str(trials), "--device", "cpu", "--keep-weights", "1"]
    if mlflow:
        command += ["--mlflow", f"sqlite:///{folder / 'mlflow.db'}"]
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "HPSEARCH_OFFLINE": "1"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if done.returncode != 0 or (mlflow and "mlflow at" in done.stderr):
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name="bench-digits-small", storage=storage)
    per_epoch = [t.user_attrs["seconds"] / t.user_attrs["epochs"] for t in study.trials]
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu_s, 3), "s_per_epoch": [round(s, 4) for s in per_epoch],
            "median_s_per_epoch": round(statistics.median(per_epoch[1:]), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="even: each order runs as often")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    result = {"benchmark": "mlflow_overhead", **provenance(torch.device("cpu")), "study": str(STUDY.name),
              "epochs": args.epochs, "rounds": args.rounds, "trials_per_run": args.trials, "runs": []}
    spec = yaml.safe_load(STUDY.read_text())
    spec["budget"]["epochs"] = args.epochs
    import mlflow

    result["mlflow"] = mlflow.__version__
    for round_ in range(args.rounds):
        for mlflow_on in ((False, True) if round_ % 2 == 0 else (True, False)):
            with tempfile.TemporaryDirectory() as tmp:
                study = Path(tmp) / STUDY.name
                study.write_text(yaml.safe_dump(spec, sort_keys=False))
                load = load_average()
                run = timed_run(Path(tmp), study, args.trials, mlflow_on)
                result["runs"].append({"round": round_, "mlflow": mlflow_on, "load_before": load, **run})
                print(f"round {round_} mlflow={mlflow_on}: {run['wall_s']:.1f} s, {run['cpu_s']:.1f} s CPU, "
                      f"median {run['median_s_per_epoch']:.4f} s/epoch", file=sys.stderr)
    by = {(r["round"], r["mlflow"]): r for r in result["runs"]}
    ratios = [by[n, True]["median_s_per_epoch"] / by[n, False]["median_s_per_epoch"] for n in range(args.rounds)]
    result["ratios_per_round"] = [round(r, 3) for r in ratios]
    result["ratio_with_to_without"] = round(statistics.geometric_mean(ratios), 3)
    result["median_s_per_epoch"] = {key: round(statistics.median(
        r["median_s_per_epoch"] for r in result["runs"] if r["mlflow"] == on), 4) for key, on in (("without", False),
                                                                                                ("with", True))}
    result["median_cpu_s"] = {key: round(statistics.median(r["cpu_s"] for r in result["runs"] if r["mlflow"] == on), 2)
                              for key, on in (("without", False), ("with", True))}
    result["load_average_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_s_per_epoch", "ratios_per_round", "ratio_with_to_without",
                                             "median_cpu_s")}))


if __name__ == "__main__":
    main()
