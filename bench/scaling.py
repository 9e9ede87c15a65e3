"""Finished trials per minute with 1, 2 and 4 workers on one PostgreSQL study, and what the study lock costs.

For each worker count N, N independent `hpsearch worker` processes (as on N machines: no shared run
id, the URL only in $HPSEARCH_STORAGE) start together on an empty database (a new schema) and run
a small digits study (bench/studies/digits-small.yaml) for the same wall time (--timeout), then
finish their trial. Trials per minute = finished (complete + pruned) trials / wall minutes from
the start of the processes to the exit of the last one, start-up included. Each worker shares the
cores: OMP_NUM_THREADS = cores // N, as `run --workers` sets it.

Lock overhead, measured in the same runs: each worker wraps its study lock (the one
hpsearch.search.run.run takes) and records, per acquisition, the seconds spent waiting for it and
holding it (failing lost trials, counting, starting the trial). Reported per trial started:
(total wait + total hold) / trials started, and the median hold.

    python bench/scaling.py --postgres postgresql://USER:PASSWORD@127.0.0.1:5432/DB --seconds 60 \\
        --out bench/results/scaling-postgresql.json

The password never reaches a command line (workers get the URL in their environment) nor the JSON.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402

from hpsearch.storage import driver_url, mask  # noqa: E402

STUDY = Path(__file__).resolve().parent / "studies" / "digits-small.yaml"


def timed_worker(record: Path, args: list[str]) -> None:
    """`hpsearch worker ARGS`, with its study lock timed; the timings go to `record` as JSON at exit."""
    from hpsearch import cli
    from hpsearch.search import run as study

    timings: list[tuple[float, float]] = []  # (seconds waiting, seconds holding) per acquisition
    make_lock = study.shared_lock

    class TimedLock:
        def __init__(self, lock):
            self.lock, self.asked, self.got = lock, None, None

        def acquire(self):
            if self.got is None:
                self.asked = time.perf_counter()
                self.lock.acquire()
                self.got = time.perf_counter()

        def release(self):
            if self.got is not None:
                self.lock.release()
                timings.append((self.got - self.asked, time.perf_counter() - self.got))
                self.got = None

        def close(self):
            self.release()
            self.lock.close()

    study.shared_lock = lambda url, name=None: TimedLock(make_lock(url, name))
    atexit.register(lambda: record.write_text(json.dumps(timings)))
    cli.main(["worker", *args])


def empty_schema(postgres: str) -> tuple[str, sqlalchemy.Engine, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(driver_url(postgres), poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    return f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}", engine, schema


def measure(postgres: str, workers: int, seconds: float) -> dict:
    url, engine, schema = empty_schema(postgres)
    try:
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_CHECKPOINTS": f"{folder}/checkpoints",
                   "HPSEARCH_ARTIFACTS": f"{folder}/artifacts",
                   "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
            records = [Path(folder) / f"lock-{i}.json" for i in range(workers)]
            load_before = load_average()
            started = time.perf_counter()
            processes = [subprocess.Popen(
                [sys.executable, __file__, "--timed-worker", str(record), "--study", str(STUDY), "--device", "cpu",
                 "--timeout", str(seconds), "--n-trials", "100000", "--no-stop-at-target", "--heartbeat", "10"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for record in records]
            errors = [p.communicate()[1] for p in processes]
            wall = time.perf_counter() - started
            if any(p.returncode for p in processes):
                raise SystemExit("a worker failed:\n" + "\n".join(mask(e) for e in errors if e))
            timings = [t for record in records for t in json.loads(record.read_text())]
        trials = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url).trials
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    states = [t.state for t in trials]
    finished = states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
    params = [tuple(sorted(t.params.items())) for t in trials]
    waits, holds = [w for w, _ in timings], [h for _, h in timings]
    return {"workers": workers, "wall_s": round(wall, 1), "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL),
            "repeated_params": len(params) - len(set(params)),
            "finished_per_minute": round(finished * 60 / wall, 2),
            "lock_acquisitions": len(timings),
            "lock_ms_per_trial": round(1000 * (sum(waits) + sum(holds)) / max(1, len(states)), 1),
            "lock_wait_ms_median": round(1000 * statistics.median(waits), 1) if waits else None,
            "lock_hold_ms_median": round(1000 * statistics.median(holds), 1) if holds else None,
            "lock_hold_ms_max": round(1000 * max(holds), 1) if holds else None,
            "load_average": [load_before, load_average()]}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--timed-worker":
        timed_worker(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("HPSEARCH_STORAGE"),
                        help="a PostgreSQL URL whose user may create schemas (default $HPSEARCH_STORAGE)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=60, help="--timeout of every worker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not (args.postgres or "").startswith("postgresql"):
        parser.error("--postgres URL (or $HPSEARCH_STORAGE) must name a PostgreSQL database")
    header = provenance(torch.device("cpu"))
    rows = []
    print(f"{'N':>2} {'wall s':>7} {'finished':>9} {'failed':>6} {'repeats':>7} {'trials/min':>10} "
          f"{'vs N=1':>6} {'lock ms/trial':>13} {'hold ms med':>11} {'load 1m':>7}")
    for n in args.workers:
        row = measure(args.postgres, n, args.seconds)
        row["ratio"] = round(row["finished_per_minute"] / (rows[0]["finished_per_minute"] if rows else
                                                           row["finished_per_minute"]), 2)
        rows.append(row)
        print(f"{n:>2} {row['wall_s']:>7} {row['complete'] + row['pruned']:>9} {row['failed']:>6} "
              f"{row['repeated_params']:>7} {row['finished_per_minute']:>10} {row['ratio']:>6} "
              f"{row['lock_ms_per_trial']:>13} {row['lock_hold_ms_median']:>11} {row['load_average'][1][0]:>7}",
              flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {**header, "command": mask(header["command"]), "storage": mask(args.postgres),
                  "study": str(STUDY.relative_to(Path(__file__).resolve().parent.parent)),
                  "seconds": args.seconds, "load_average_end": load_average(), "rows": rows}
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
