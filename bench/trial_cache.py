"""Whether hpsearch's TrialCache pays for itself: a run's later reads of a study holding N trials, through TrialCache
and through Optuna's own cache, both in front of the row reader, alternated in one run.

Each round copies one SQLite study of N stored trials (big_study.stored_trials), opens it as a run does
(storage.open_storage, one cache a process), reads it whole once (the first read, not timed: both caches make it
through the same row reader), then adds --steps trials by ask and tell. Around each trial it times the reads a run
makes of a trial (search/run.py's decisions, the pruner, Optuna's sampler and stale-trial check): every trial twice,
the finished ones once, the stale-trial query twice. The figure is the ratio of the median seconds of those reads:
Optuna's cache over TrialCache (above 1: TrialCache is faster).

    python bench/trial_cache.py --stored 4000 --out bench/results/trial-cache-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from big_study import stored_trials  # noqa: E402  (bench/big_study.py)
from provenance import alternated, provenance, ratios, write_result  # noqa: E402  (bench/provenance.py)

from hpsearch.storage import open_storage, optuna_private  # noqa: E402

CACHES = {"optuna": optuna_private.optuna_cache, "hpsearch": optuna_private.TrialCache}


def later_reads(make_cache, template: Path, folder: Path, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of the reads a run makes around `steps` new trials, on a fresh copy of `template`. The
    CPU seconds move less with other jobs' load than the wall seconds do."""
    db = folder / "run.db"
    shutil.copy(template, db)
    study = optuna.load_study(study_name="big", storage=make_cache(open_storage(f"sqlite:///{db}", heartbeat=60)))
    study.get_trials(deepcopy=False)  # the first read, the whole study
    seconds = cpu_seconds = 0.0
    for step in range(steps):
        trial = study.ask()
        trial.suggest_int("width", 4, 16)
        trial.suggest_float("lr", 0.01, 0.2, log=True)
        trial.report(0.5, 1)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(2):
            study.get_trials(deepcopy=False)
            optuna_private.stale_trial_ids(study)
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        seconds += time.perf_counter() - started
        cpu_seconds += time.process_time() - cpu
        study.tell(trial, 0.5 + step / 1000)
    return seconds, cpu_seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stored", type=int, default=4000, help="trials the study holds before the run")
    p.add_argument("--steps", type=int, default=30, help="trials each round adds")
    p.add_argument("--repeats", type=int, default=5, help="rounds of (optuna, hpsearch), alternated")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)  # a run asks through Study.optimize
    record = provenance(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        template = folder / "big.db"
        started = time.perf_counter()
        study = optuna.create_study(study_name="big", storage=f"sqlite:///{template}", direction="maximize")
        study.add_trials(stored_trials(args.stored, torch.Generator().manual_seed(0)))
        record["filling_s"] = round(time.perf_counter() - started, 1)
        rounds = alternated({name: functools.partial(later_reads, make_cache, template, folder, args.steps)
                             for name, make_cache in CACHES.items()}, args.repeats, digits=3)
    record.update(stored=args.stored, steps=args.steps, repeats=args.repeats, **ratios(rounds, "optuna", "hpsearch"))
    medians = record["median_s"]
    write_result(args.out, record)
    print(f"the reads around {args.steps} trials on a study of {args.stored:,}: {medians['optuna']:.3f} s through "
          f"Optuna's cache, {medians['hpsearch']:.3f} s through TrialCache: {record['ratio']}x (CPU seconds: {record['cpu_ratio']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
