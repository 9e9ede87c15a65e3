"""What a study's size costs a run: 10 one-epoch digits trials on a study already holding N trials,
against the same 10 trials on an empty study, in one run.

Each case is `hpsearch.search.run.run` in this process (data loading included, as a run has it) on a copy
of its SQLite file, alternated over --repeats rounds so that a change in the machine's load hits both;
the figure is the ratio of the median wall seconds (the ratio of the median CPU seconds beside it
moves less with other jobs' load). The N stored trials are made once, like real ones: complete,
with the space's parameters and the attributes a trial stores, from an earlier run. With the random
sampler the ratio is hpsearch's own overhead; with TPE it adds the sampler's model of N trials.

    python bench/big_study.py --stored 8000 --out bench/results/big-study-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import alternated, provenance, ratios, write_result  # noqa: E402  (bench/provenance.py)

from hpsearch.record import keys as A  # noqa: E402
from hpsearch.search.options import RunOptions  # noqa: E402
from hpsearch.search.run import run  # noqa: E402
from hpsearch.search.studystore import open_study  # noqa: E402
from hpsearch.studyfile.schema import load_spec  # noqa: E402
from hpsearch.studyfile.types import StudySpec  # noqa: E402

STUDY = {"name": "big", "about": "10 one-epoch trials on a study of any size",
         "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
         "budget": {"epochs": 1, "trials": 10}, "pruner": {"name": "median", "min_epochs": 1},
         "space": {"width": {"int": [4, 16]}, "lr": {"float": [0.01, 0.2], "log": True}},
         "fixed": {"blocks": 1, "convs_per_block": 1, "batch_size": 64, "optimizer": "sgd_nesterov"}}


def written_study(folder: Path, **changes) -> tuple[Path, StudySpec]:
    """STUDY with `changes`, written as `folder`/big.yaml, and its spec: the study file the benchmarks of a big
    study run on."""
    path = folder / "big.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **changes}))
    return path, load_spec(path)


def stored_trials(count: int, rng: torch.Generator) -> list[optuna.trial.FrozenTrial]:
    """`count` completed trials of an earlier run, with the attributes a real trial stores."""
    widths = torch.randint(4, 17, (count,), generator=rng).tolist()
    lrs = (0.01 * 20 ** torch.rand(count, generator=rng)).tolist()
    values = (0.5 + 0.4 * torch.rand(count, generator=rng)).tolist()
    distributions = {"width": IntDistribution(4, 16), "lr": FloatDistribution(0.01, 0.2, log=True)}
    return [create_trial(state=TrialState.COMPLETE, value=value, params={"width": width, "lr": lr},
                         distributions=distributions, intermediate_values={1: value},
                         user_attrs={A.RUN: "earlier", A.CONFIG: {**STUDY["fixed"], "width": width, "lr": lr},
                                     A.PARAM_COUNT: 1000 + width, A.EPOCHS_TRAINED: 1, A.SECONDS: 0.5,
                                     A.TRAIN_SECONDS: 0.4, A.VAL_ACCURACY: value, A.TEST_ACCURACY: value})
            for width, lr, value in zip(widths, lrs, values)]


def timed_run(spec, template: Path, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, all threads) of one run of the study's 10 trials on a fresh copy
    of `template`. The CPU seconds move less with other jobs' load than the wall seconds do."""
    db = folder / "run.db"
    shutil.rmtree(folder / "run-files", ignore_errors=True)
    shutil.copy(template, db)
    started, cpu = time.perf_counter(), time.process_time()
    run(spec, f"sqlite:///{db}", RunOptions(device="cpu", n_trials=10, stop_at_target=False))
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stored", type=int, default=8000, help="trials the big study holds before the run")
    p.add_argument("--sampler", default="random", choices=("random", "tpe"))
    p.add_argument("--repeats", type=int, default=3, help="rounds of (empty, big), alternated")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    record = provenance(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, spec = written_study(folder, sampler={"name": args.sampler, "seed": 0})
        templates = {"empty": folder / "empty.db", "big": folder / "big.db"}
        for case, template in templates.items():
            study = open_study(spec, f"sqlite:///{template}")
            if case == "big":
                started = time.perf_counter()
                study.add_trials(stored_trials(args.stored, torch.Generator().manual_seed(0)))
                record["filling_s"] = round(time.perf_counter() - started, 1)
        rounds = alternated({case: functools.partial(timed_run, spec, template, folder)
                             for case, template in templates.items()}, args.repeats, digits=2)
    record.update(stored=args.stored, sampler=args.sampler, repeats=args.repeats, **ratios(rounds, "big", "empty"))
    medians = record["median_s"]
    write_result(args.out, record)
    print(f"10 trials: {medians['empty']:.2f} s on an empty study, {medians['big']:.2f} s on one holding "
          f"{args.stored:,} trials: {record['ratio']}x (CPU seconds: {record['cpu_ratio']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
