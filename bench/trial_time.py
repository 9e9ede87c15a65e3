"""Wall time of one whole trial: a baseline's model trained for the study budget, evaluated every epoch.

Two measurements in one run, on data already on the device (reading it is not a trial's cost):
  fit     train.fit + the test pass, timed with the device synchronised, `--repeats` times (the first
          includes cuDNN's autotuning and the allocator's warm-up; later ones are the steady figure);
  trial   the same model as a real trial: hpsearch.search.run.run on a fresh SQLite study holding only that
          baseline, so Optuna's per-epoch reports, the storage and the kept weights are counted too.
`--profile` adds one profiled epoch: the top operators by device time and the fraction of the epoch the
device was busy (far below 1: the steps are launch-bound, the case for CUDA graphs or larger batches).

    python bench/trial_time.py --model seed001-cnn --dataset cifar10 --device cuda --epochs 25 \\
        --data-dir data --profile --out bench/results/trial-time-h100.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance, write_result  # noqa: E402

from hpsearch.search.options import RunOptions  # noqa: E402
from hpsearch.search.run import run  # noqa: E402
from hpsearch.studyfile.baselines import BASELINES  # noqa: E402
from hpsearch.studyfile.schema import load_spec  # noqa: E402
from hpsearch.studyfile.types import DatasetSpec  # noqa: E402
from hpsearch.training import devicedata as hdata
from hpsearch.training import recipe  # noqa: E402
from hpsearch.training.models import count_parameters  # noqa: E402
from hpsearch.training.space import train_config  # noqa: E402

VALIDATION = 5000  # the CIFAR-10 studies' validation split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(BASELINES), default="seed001-cnn")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--validation", type=float, default=VALIDATION, help="dataset.validation: a count or a fraction")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--repeats", type=int, default=2,
                   help="timed fit runs; the first includes warm-up (0: only the trial as run, the GPU suite's choice)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--profile", action="store_true", help="also profile one epoch (top operators, device busy)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.repeats < 0:
        p.error(f"--repeats must be 0 or more, got {args.repeats}")
    return args


def synchronised(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_fit(data, params: dict, epochs: int, device: torch.device) -> dict:
    """recipe.train as a trial runs it; the first epoch's time includes building the model."""
    started = synchronised(device)
    marks = []
    trained = recipe.train(params, data, epochs=epochs, seed=0,
                           on_epoch=lambda stats: marks.append(synchronised(device)))
    total = synchronised(device) - started
    epoch_s = [b - a for a, b in zip([started, *marks], marks)]
    return {"total_s": round(total, 3), "epoch_s": [round(s, 4) for s in epoch_s],
            "val_accuracy": trained.val_accuracy, "test_accuracy": trained.test_accuracy,
            "parameters": count_parameters(trained.model)}


def time_trial(model: str, dataset: DatasetSpec, epochs: int, device: torch.device, data_dir: Path | None) -> dict:
    """The baseline as `hpsearch run` trains it: one trial of a study that holds only it."""
    with tempfile.TemporaryDirectory() as folder:
        study_file = Path(folder) / "trial-time.yaml"
        study_file.write_text(yaml.safe_dump({
            "name": "trial-time", "dataset": {"name": dataset.name, "validation": dataset.validation},
            "budget": {"epochs": epochs, "trials": 1}, "pruner": {"name": "none"}, "baselines": [model]}))
        started = synchronised(device)
        study = run(load_spec(study_file), f"sqlite:///{folder}/trial-time.db",
                    RunOptions(device=device.type, n_trials=1, data_dir=data_dir))
        wall = synchronised(device) - started
    (trial,) = study.trials
    return {"state": trial.state.name, "run_s": round(wall, 3), "trial_seconds": trial.user_attrs.get("seconds"),
            "val_accuracy": trial.value, "test_accuracy": trial.user_attrs.get("test_accuracy"),
            "failure": trial.user_attrs.get("failure")}


def profile_epoch(data, params: dict, device: torch.device) -> dict:
    """One epoch under torch.profiler: where the time goes, and how busy the device was."""
    from torch.profiler import ProfilerActivity, profile

    cfg = train_config(params, epochs=1, seed=0)
    recipe.train(params, data, epochs=1, seed=0)  # warm-up outside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:  # one epoch, with the build and the final test evaluation
        started = synchronised(device)
        recipe.train(params, data, epochs=1, seed=0)
        wall = synchronised(device) - started
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    busy_us = sum(getattr(e, key, 0) for e in events) if device.type == "cuda" else None
    steps = len(data.train_y) // cfg.batch_size
    return {"epoch_s": round(wall, 4), "steps": steps, "ms_per_step": round(1000 * wall / steps, 4),
            "device_busy_fraction": None if busy_us is None else round(busy_us / 1e6 / wall, 4),
            "top_operators": events.table(sort_by=key, row_limit=25)}


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    validation = int(args.validation) if args.validation >= 1 else args.validation
    dataset = DatasetSpec(args.dataset, validation=validation, download=False)
    params = BASELINES[args.model].config()
    started = time.perf_counter()
    data = hdata.load(dataset, device, args.data_dir)
    result = {**provenance(device), "benchmark": "trial_time", "model": args.model, "dataset": args.dataset,
              "validation": validation, "epochs": args.epochs, "params": params,
              "data_source": data.source, "train_images": len(data.train_y), "load_s": round(time.perf_counter() - started, 3)}
    result["fit"] = [time_fit(data, params, args.epochs, device) for _ in range(args.repeats)]
    result["trial"] = time_trial(args.model, dataset, args.epochs, device, args.data_dir)
    if args.profile:
        result["profile"] = profile_epoch(data, params, device)
    result["load_average_end"] = load_average()
    print(f"{args.model} on {args.dataset} ({len(data.train_y)} training images), {args.epochs} epochs on "
          f"{result['device']} as a trial: {result['trial']['trial_seconds']} s "
          f"({result['trial']['run_s']:.2f} s with the study around it)")
    if result["fit"]:
        steady = result["fit"][-1]
        print(f"fit + test {steady['total_s']:.2f} s (first run {result['fit'][0]['total_s']:.2f} s), "
              f"test accuracy {steady['test_accuracy']:.4f}")
    if args.profile:
        print(f"profiled epoch: {result['profile']['ms_per_step']} ms a step, device busy "
              f"{result['profile']['device_busy_fraction']}")
    if args.out is not None:
        write_result(args.out, result)


if __name__ == "__main__":
    main()
