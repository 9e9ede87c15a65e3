"""How long the reading commands take to start and answer, in this tree against another (say, an earlier commit's
checkout), in one run: each command runs as a fresh process, alternating between the trees over --repeats
rounds so that a change in the machine's load hits both; the figure per command is the ratio of the medians.

Each tree reads the same copy of tests/fixtures/old.db, its study `tiny` renamed to a shipped study's name
(digits-quick), so that the commands look the study file up as a user's would. Whether a command imported torch is read from
`python -X importtime` in a separate run, so the timed runs carry no tracing.

    git worktree add --detach ../before a48f232
    python bench/startup.py --other ../before --out bench/results/startup-cpu.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402  (the provenance record only; the timed commands are separate processes)
from provenance import REPO, as_a_user_runs, load_average, provenance, write_result  # noqa: E402  (bench/provenance.py)

SHIPPED_STUDY = "digits-quick"
COMMANDS = {  # what a user types to read a study; {storage} is the fixture copy
    "studies": ["studies"],
    "params": ["params"],
    "baselines": ["baselines"],
    "best": ["best", "--study", "{study}", "--storage", "{storage}"],
    "report": ["report", "--study", "{study}", "--storage", "{storage}"],
    "export": ["export", "--study", "{study}", "--storage", "{storage}", "-o", "t.yaml"],
}


def command_line(name: str, storage: str) -> list[str]:
    return [sys.executable, "-m", "hpsearch", *(a.format(storage=storage, study=SHIPPED_STUDY) for a in COMMANDS[name])]


def timed(tree: Path, name: str, storage: str, folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command_line(name, storage), cwd=folder, env=as_a_user_runs(PYTHONPATH=str(tree)),
                   capture_output=True, check=True)
    return time.perf_counter() - start


def imports_torch(tree: Path, name: str, storage: str, folder: Path) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", *command_line(name, storage)[1:]], cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True)
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="another checkout to compare with (e.g. before)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    trees = {"this": REPO, "other": args.other.resolve()}
    result = {"benchmark": "startup", **provenance(torch.device("cpu")), "trees": {k: str(v) for k, v in trees.items()},
              "repeats": args.repeats, "load_before": load_average(), "commands": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(REPO / "tests" / "fixtures" / "old.db", folder / "old.db")
        with sqlite3.connect(folder / "old.db") as db:
            db.execute("UPDATE studies SET study_name = ? WHERE study_name = 'tiny'", (SHIPPED_STUDY,))
        storage = f"sqlite:///{folder / 'old.db'}"
        for name in COMMANDS:
            for path in trees.values():  # once untimed: Python writes each tree's bytecode cache, as a user's first run does
                timed(path, name, storage, folder)
            seconds = {tree: [] for tree in trees}
            for _ in range(args.repeats):
                for tree, path in trees.items():
                    seconds[tree].append(timed(path, name, storage, folder))
            medians = {tree: statistics.median(s) for tree, s in seconds.items()}
            result["commands"][name] = {
                "seconds": {tree: [round(s, 3) for s in values] for tree, values in seconds.items()},
                "median_s": {tree: round(m, 3) for tree, m in medians.items()},
                "ratio_this_to_other": round(medians["this"] / medians["other"], 3),
                "imports_torch": {tree: imports_torch(path, name, storage, folder) for tree, path in trees.items()},
                "load": load_average()}
            print(f"{name:10s} this {medians['this']:.2f} s, other {medians['other']:.2f} s, "
                  f"ratio {result['commands'][name]['ratio_this_to_other']:.2f}, "
                  f"torch {result['commands'][name]['imports_torch']}", flush=True)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
