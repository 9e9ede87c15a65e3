"""How fast `hpsearch status` answers on a big study (issue 35: under a second on 8,000 trials), against the same
command on an empty study and against `hpsearch best` on the big one, in one run.

Each command runs as a fresh process, as a user types it, on the same SQLite file; the cases alternate over
--repeats rounds so that a change in the machine's load hits all of them. The big study holds --stored completed
trials made as bench/big_study.py makes them, and one running trial with a heartbeat, as a live study has. With
--other (another checkout, say an earlier commit's), `status` on the big study runs from that tree too, in the
same rounds: the ratio before and after a change.

    git worktree add --detach ../before 5a1b2f4
    python bench/status.py --stored 8000 --other ../before --out bench/results/status-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from big_study import stored_trials, written_study  # noqa: E402  (bench/big_study.py)
from provenance import (  # noqa: E402  (bench/provenance.py)
    REPO,
    alternated,
    as_a_user_runs,
    git_commit,
    provenance,
    ratios,
    write_result,
)

from hpsearch.search.studystore import open_study  # noqa: E402
from hpsearch.storage import optuna_private  # noqa: E402


def timed(command: list[str], folder: Path, tree: Path = REPO) -> tuple[float, float]:
    """Wall seconds of the command as a fresh process of hpsearch from `tree`, and the CPU seconds it used (user
    and system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpsearch", *command], cwd=folder, capture_output=True, check=True,
                   env=as_a_user_runs(HPSEARCH_OFFLINE="1", PYTHONPATH=str(tree)))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def made(spec, url: str, stored: int) -> None:
    """A study of `stored` completed trials and one running trial that has sent a heartbeat."""
    study = open_study(spec, url)
    study.add_trials(stored_trials(stored, torch.Generator().manual_seed(0)))
    running = study.ask()
    optuna_private.storage_of(study).record_heartbeat(optuna_private.trial_id(running))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stored", type=int, default=8000, help="completed trials the big study holds")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the three commands, alternated")
    p.add_argument("--other", type=Path, help="another checkout whose `status` runs on the big study too")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    record = provenance(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study_file, spec = written_study(folder)
        urls = {"empty": f"sqlite:///{folder / 'empty.db'}", "big": f"sqlite:///{folder / 'big.db'}"}
        for case, url in urls.items():
            made(spec, url, args.stored if case == "big" else 0)
        commands = {
            "status_big": ["status", "--study", str(study_file), "--storage", urls["big"]],
            "status_empty": ["status", "--study", str(study_file), "--storage", urls["empty"]],
            "best_big": ["best", "--study", str(study_file), "--storage", urls["big"]],
        }
        cases = {case: functools.partial(timed, command, folder) for case, command in commands.items()}
        if args.other is not None:
            cases["status_big_other"] = functools.partial(timed, commands["status_big"], folder, args.other.resolve())
        for case in cases.values():  # once untimed: Python writes each tree's bytecode cache, as a user's first run does
            case()
        rounds = alternated(cases, args.repeats, digits=3)
    record.update(stored=args.stored, repeats=args.repeats, commands=commands,
                  other=git_commit(args.other) if args.other is not None else None,  # the other tree's commit
                  **ratios(rounds, "status_big", "status_empty"))
    medians = record["median_s"]
    record["ratio_status_to_best"] = round(medians["status_big"] / medians["best_big"], 2)
    if args.other is not None:
        record["ratio_status_to_other"] = round(medians["status_big"] / medians["status_big_other"], 2)
    write_result(args.out, record)
    print(f"status on {args.stored:,} trials: {medians['status_big']:.2f} s; on an empty study "
          f"{medians['status_empty']:.2f} s ({record['ratio']}x); best on the big one {medians['best_big']:.2f} s "
          f"(status {record['ratio_status_to_best']}x of it)"
          + (f"; the other tree's status {medians['status_big_other']:.2f} s (this one {record['ratio_status_to_other']}x"
             " of it)" if args.other is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
