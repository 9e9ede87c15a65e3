"""The GPU suite: every CUDA path and GPU figure of hpsearch, in three stages of under 9 minutes each.

Made for a bare GPU machine with no network whose Python has torch and torchvision but not optuna:
it installs hpsearch from the checkout and wheels carried beside it (pip --no-index --find-links),
unpacks the carried CIFAR-10 archive, runs the stage asked for, and writes `STAGE.json` (device,
driver, CUDA, torch, optuna, commit, every command with its exit status and seconds, every figure)
and `STAGE.log` (everything the commands printed) into --out. bench/README.md says how to run it.

  check   pytest -m cuda (HPSEARCH_REQUIRE_CUDA=1: a skipped CUDA test fails the stage), then the
          README's demo study on the GPU.
  speed   bench/pipeline.py on CIFAR-10 against the usual DataLoader pipeline; a whole 25-epoch
          seed001-cnn trial (bench/trial_time.py, with one profiled epoch); finished trials per hour
          with K = 1, 2, 4 workers on the GPU (bench/trials_per_gpu.py) and the GPU memory each held.
  search  cifar10-75 from an empty storage until its target, then cifar10-94 (ResNet-9 and the
          speed-run recipes) for the rest of the stage, its best trial exported and trained again with 3 seeds.

--dry-run runs the same logic on the CPU with tiny budgets (a subset of the archive, 1-2 epochs; the
CUDA tests skip, as .ci/run runs them on the CPU on its own with HPSEARCH_TEST_DEVICE=cpu), so the
suite is tested between GPUs (tests/test_gpu_suite.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import os
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("check", "speed", "search")
STAGE_SECONDS = 540  # 9 minutes: a stage must end inside one 10-minute call of a lent GPU machine
DRY_STAGE_SECONDS = 240
STOP_GRACE_S = 30  # a command past its time gets SIGINT (its trial is recorded and requeued), then SIGKILL
DRY_RUN_SUBSET = ("train/*/00[0-3]?.jpg", "test/*/00[0-1]?.jpg")  # 40 + 20 images a class


@dataclass
class Stage:
    """One stage's run: where it writes, how long it may take, and what it has recorded so far."""

    name: str
    args: argparse.Namespace
    deadline: float
    log_path: Path
    commands: list[dict] = field(default_factory=list)

    @property
    def dry(self) -> bool:
        return self.args.dry_run

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        with self.log_path.open("a") as f:
            f.write(text.rstrip("\n") + "\n")
        print(f"[{self.name}] {text.splitlines()[0] if text else ''}", file=sys.stderr, flush=True)

    def run(self, name: str, argv: list[str], *, seconds: float | None = None, env: dict | None = None) -> int:
        """Run a command from the checkout's root, its output into the log; past `seconds` (or the stage's
        end) it is interrupted as Ctrl-C would, then killed. Returns its exit status (124: stopped).
        `env` adds to the environment; a None value removes that variable."""
        limit = max(1.0, min(seconds or self.left(), self.left()))
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log(f"$ {' '.join(argv)}   # {name}, at most {limit:.0f} s")
        started = time.monotonic()
        with self.log_path.open("a") as log:
            process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={k: v for k, v in environment.items() if v is not None},
                                       start_new_session=True)
            try:
                code = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                code = _stop(process)
        seconds_taken = round(time.monotonic() - started, 2)
        self.commands.append({"name": name, "command": argv, "exit": code, "seconds": seconds_taken})
        self.log(f"# {name}: exit {code} after {seconds_taken} s")
        return code


def _stop(process: subprocess.Popen) -> int:
    """Interrupt the command and everything it started; kill them if they do not stop in time."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return 124


# --------------------------------------------------------------------------------------------
# Setup, before any stage: hpsearch and its missing packages, the data, the device.


def install(stage: Stage) -> None:
    """Install hpsearch and what the machine lacks from the carried wheels, unless already importable."""
    if importlib.util.find_spec("optuna") is not None and importlib.util.find_spec("hpsearch") is not None:
        stage.log("hpsearch and optuna are importable: nothing to install")
        return
    if stage.dry:
        raise SystemExit("--dry-run expects hpsearch to be installed here (pip install -e '.[dev]')")
    wheels = Path(stage.args.wheels).resolve()
    if not any(wheels.glob("*.whl")):
        raise SystemExit(f"no wheels in {wheels}: run ../shared/tools/gpu-wheels setuptools before the call, "
                         "and carry .whl")
    code = stage.run("install", [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                                 str(wheels), str(REPO)], seconds=240)
    if code != 0:
        raise SystemExit(f"installing hpsearch from {wheels} failed (exit {code}): see {stage.log_path}")
    importlib.invalidate_caches()


def unpack_data(stage: Stage) -> Path:
    """The CIFAR-10 image folders under DATA/cifar10 (hpsearch's layout for the JPEG copy)."""
    data_dir = Path(stage.args.data_dir).resolve()
    target = data_dir / "cifar10"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return data_dir
    archive = Path(stage.args.archive)
    if not archive.is_file():
        raise SystemExit(f"no CIFAR-10 at {target} and no archive at {archive}: copy "
                         "../shared/data/cifar10-jpeg.tar.xz there and carry it")
    started = time.monotonic()
    target.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("cifar10.partial")
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and (not stage.dry or _in_dry_subset(m.name))]
        tar.extractall(partial, members=members, filter="data")
    for split in ("train", "test"):
        (partial / split).rename(target / split)
    partial.rmdir()
    stage.log(f"unpacked {len(members)} images of {archive} into {target} in {time.monotonic() - started:.1f} s")
    return data_dir


def _in_dry_subset(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name.removeprefix("./"), pattern) for pattern in DRY_RUN_SUBSET)


def describe_machine(stage: Stage) -> dict:
    """Device, driver, CUDA, versions and commit, recorded at the top of every stage's JSON."""
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from provenance import provenance

    if not stage.dry and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device: run the suite on a GPU machine, or with --dry-run on a CPU")
    info = provenance(torch.device(stage.device))
    info["git_commit"] = info["git_commit"] or stage.args.commit
    if stage.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["gpu_multiprocessors"] = props.multi_processor_count
    return info


# --------------------------------------------------------------------------------------------
# The stages. Each returns its figures; main() writes them with the machine and the commands.


def stage_check(stage: Stage, data_dir: Path) -> dict:
    junit = Path(stage.args.work) / "check-junit.xml"
    junit.unlink(missing_ok=True)
    # On a GPU a CUDA test that skips fails; on a CPU they skip (.ci/run runs them there on their own).
    env = {"HPSEARCH_TEST_DEVICE": None, "HPSEARCH_REQUIRE_CUDA": None if stage.dry else "1"}
    code = stage.run("pytest -m cuda", [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider",
                                        f"--junitxml={junit}", "tests"], seconds=stage.left() - 90, env=env)
    tests = _junit_outcomes(junit)
    demo_db = Path(stage.args.work) / "demo.db"
    demo_db.unlink(missing_ok=True)
    demo = ["--study", str(_dry_study(stage, "digits-quick")) if stage.dry else "digits-quick",
            "--storage", f"sqlite:///{demo_db}", "--device", stage.device]
    demo_code = stage.run("demo study", [sys.executable, "-m", "hpsearch", "run", *demo], seconds=stage.left() - 5)
    demo_seconds = stage.commands[-1]["seconds"]
    return {"pytest_exit": code, "tests": tests,
            "passed": sum(t["outcome"] == "passed" for t in tests),
            "failed": [t["name"] for t in tests if t["outcome"] in ("failed", "error")],
            "skipped": [t["name"] for t in tests if t["outcome"] == "skipped"],
            "demo": {"exit": demo_code, "wall_s": demo_seconds, **_study_summary(demo_db)},
            "ok": code == 0 and demo_code == 0}


def _junit_outcomes(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    outcomes = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        outcomes.append({"name": case.get("name"), "outcome": {"failure": "failed"}.get(outcome, outcome),
                         "seconds": float(case.get("time", 0))})
    return outcomes


def stage_speed(stage: Stage, data_dir: Path) -> dict:
    work = Path(stage.args.work)
    dry = stage.dry
    pipeline_json, trial_json, per_gpu_json = work / "pipeline.json", work / "trial-time.json", work / "trials-per-gpu.json"
    for stale in (pipeline_json, trial_json, per_gpu_json):
        stale.unlink(missing_ok=True)
    bench = REPO / "bench"
    stage.run("pipeline", [sys.executable, str(bench / "pipeline.py"), "--dataset", "cifar10", "--model", "seed001-cnn",
                           "--device", stage.device, "--epochs", "2" if dry else "10", "--data-dir", str(data_dir),
                           "--out", str(pipeline_json)], seconds=60 if dry else 150)
    stage.run("25-epoch trial", [sys.executable, str(bench / "trial_time.py"), "--model", "seed001-cnn",
                                 "--dataset", "cifar10", "--device", stage.device, "--data-dir", str(data_dir),
                                 "--profile", "--out", str(trial_json),
                                 *(["--epochs", "1", "--repeats", "1", "--validation", "0.2"] if dry else [])],
              seconds=60 if dry else 150)
    ks = ["1", "2"] if dry else ["1", "2", "4"]
    seconds_each = 5 if dry else max(30, int((stage.left() - 60) / len(ks)))
    study = _dry_study(stage, "cifar10-small") if dry else bench / "studies" / "cifar10-small.yaml"
    stage.run("trials per GPU", [sys.executable, str(bench / "trials_per_gpu.py"), "--study", str(study),
                                 "--device", stage.device, "--ks", *ks, "--seconds", str(seconds_each),
                                 "--data-dir", str(data_dir), "--out", str(per_gpu_json)])
    pipeline, trial, per_gpu = (_read_json(p) for p in (pipeline_json, trial_json, per_gpu_json))
    figures = {"pipeline": pipeline, "trial_time": trial, "trials_per_gpu": per_gpu}
    figures["headline"] = {
        "pipeline_speedup": pipeline and pipeline["speedup_steady"],
        "pipeline_test_accuracy_points": pipeline and round(100 * pipeline["test_accuracy_difference"], 2),
        "trial_25_epochs_s": trial and trial["fit"][-1]["total_s"],
        "trial_as_run_s": trial and trial["trial"]["trial_seconds"],
        "device_busy_fraction": trial and trial.get("profile", {}).get("device_busy_fraction"),
        "trials_per_hour_ratio": per_gpu and {row["k"]: row["ratio"] for row in per_gpu["rows"]},
    }
    return figures


def stage_search(stage: Stage, data_dir: Path) -> dict:
    work = Path(stage.args.work) / "search"
    shutil.rmtree(work, ignore_errors=True)  # from an empty storage, every time
    work.mkdir(parents=True)
    storage = work / "search.db"
    url = f"sqlite:///{storage}"
    common = ["--storage", url, "--data-dir", str(data_dir), "--device", stage.device]
    reserve = 40 if stage.dry else 150  # what exporting and training the best again with 3 seeds needs
    first, rest = "cifar10-75", "cifar10-94"
    started = time.time()
    stage.run(first, [sys.executable, "-m", "hpsearch", "run", "--study", _study_arg(stage, first), *common,
                      "--timeout", str(int(max(10, (stage.left() - reserve) / 2)))])
    to_target = _time_to_target(storage, first, started)
    stage.run(rest, [sys.executable, "-m", "hpsearch", "run", "--study", _study_arg(stage, rest), *common,
                     "--timeout", str(int(max(10, stage.left() - reserve - (20 if stage.dry else 120))))])
    best = work / f"{rest}-best.yaml"
    retrained = work / f"{rest}-retrained"
    stage.run("export", [sys.executable, "-m", "hpsearch", "export", "--study", rest, "--storage", url, "-o", str(best)],
              seconds=60)
    stage.run("train --seeds 3", [sys.executable, "-m", "hpsearch", "train", "--config", str(best), "--seeds", "3",
                                  "--device", stage.device, "--data-dir", str(data_dir), "--out", str(retrained)])
    return {first: to_target, rest: {**_study_summary(storage, rest), "retrained": _read_json(retrained / "results.json")}}


def _time_to_target(storage: Path, name: str, started: float) -> dict:
    """Wall time from the command's start to the end of the first trial that met the target, and what
    ran until then."""
    import datetime

    import optuna

    from hpsearch.catalog import load_study_spec
    from hpsearch.study import first_reaching

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    trials = study.get_trials(deepcopy=False)
    spec = load_study_spec(study.user_attrs.get("spec_path") or name)
    reached = first_reaching(sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete), spec)
    summary = _study_summary(storage, name)
    if reached is None:
        return {**summary, "target": spec.describe_target(), "reached": False}
    until = [t for t in trials if t.datetime_complete and t.datetime_complete <= reached.datetime_complete]
    start = datetime.datetime.fromtimestamp(started)
    return {**summary, "target": spec.describe_target(), "reached": True, "trial": reached.number,
            "trial_params": reached.params, "trial_test_accuracy": reached.user_attrs.get("test_accuracy"),
            "wall_s_to_target": round((reached.datetime_complete - start).total_seconds(), 1),
            "trials_until_then": {state: sum(t.state.name.lower() == state for t in until)
                                  for state in ("complete", "pruned", "fail")}}


def _study_summary(storage: Path, name: str | None = None) -> dict:
    """hpsearch's own summary (counts by state, the best trial) of a study in an SQLite file, with its
    finished trials per hour."""
    if not storage.is_file():
        return {"trials": 0}
    import optuna

    from hpsearch.study import FINISHED, summarize

    url = f"sqlite:///{storage}"
    study = optuna.load_study(study_name=name or optuna.get_all_study_names(url)[0], storage=url)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.datetime_complete]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds() if done else 0
    finished = sum(t.state in FINISHED for t in trials)
    return {**summarize(study), "finished_per_hour": round(finished * 3600 / span, 1) if span else None}


# --------------------------------------------------------------------------------------------
# Tiny copies of the studies for --dry-run: the same files, budgets cut to seconds on a CPU.


DRY_OVERRIDES = {
    "digits-quick": {"budget": {"epochs": 1, "trials": 1}},
    "cifar10-75": {"budget": {"epochs": 1, "trials": 3}, "target": {"metric": "test_accuracy", "value": 0.01},
                   "dataset": {"name": "cifar10", "validation": 0.2}, "baselines": ["seed003-tutorial"]},
    "cifar10-94": {"budget": {"epochs": 1, "trials": 1}, "dataset": {"name": "cifar10", "validation": 0.2},
                   "baselines": [], "space": {"width_multiplier": {"choice": [0.125]}, "whiten": {"choice": [2]},
                                              "tta": {"choice": ["flip_translate"]}, "ema": {"choice": [0.9]},
                                              "lr_per_1024": {"float": [1.0, 10.0], "log": True}}},
    "cifar10-small": {"budget": {"epochs": 1, "trials": 1000}, "dataset": {"name": "cifar10", "validation": 0.2},
                      "space": {"width": {"int": [4, 8]}, "lr": {"float": [0.01, 0.2], "log": True}}},
}


def _dry_study(stage: Stage, name: str) -> Path:
    import yaml

    source = REPO / ("bench/studies" if name == "cifar10-small" else "studies") / f"{name}.yaml"
    body = {**yaml.safe_load(source.read_text()), **DRY_OVERRIDES[name]}
    path = Path(stage.args.work) / "studies" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _study_arg(stage: Stage, name: str) -> str:
    return str(_dry_study(stage, name)) if stage.dry else name


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------


RUNNERS = {"check": stage_check, "speed": stage_speed, "search": stage_search}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stage", choices=(*STAGES, "all"), required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for STAGE.json and STAGE.log")
    p.add_argument("--dry-run", action="store_true", help="the same logic on the CPU with tiny budgets")
    p.add_argument("--wheels", default=str(REPO / ".whl"), help="wheels of what the machine lacks")
    p.add_argument("--archive", default=str(REPO / ".gpu" / "cifar10-jpeg.tar.xz"), help="the CIFAR-10 JPEG archive")
    p.add_argument("--data-dir", default=str(REPO / ".gpu" / "data"), help="where CIFAR-10 is unpacked")
    p.add_argument("--work", default=str(REPO / ".gpu" / "work"), help="storages, configs and scratch files")
    p.add_argument("--stage-seconds", type=float, default=None,
                   help=f"time for each stage (default {STAGE_SECONDS}; {DRY_STAGE_SECONDS} with --dry-run)")
    p.add_argument("--commit", default=_carried_commit(), help="the commit measured, where the checkout has no .git")
    return p.parse_args()


def _carried_commit() -> str | None:
    path = REPO / ".gpu" / "COMMIT"
    return path.read_text().strip() if path.is_file() else None


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    budget = args.stage_seconds or (DRY_STAGE_SECONDS if args.dry_run else STAGE_SECONDS)
    failed = []
    for name in STAGES if args.stage == "all" else (args.stage,):
        stage = Stage(name, args, time.monotonic() + budget, args.out / f"{name}.log")
        stage.log_path.write_text("")
        started = time.monotonic()
        install(stage)
        data_dir = unpack_data(stage)
        result = {"stage": name, "dry_run": args.dry_run, **describe_machine(stage), "stage_seconds": budget}
        try:
            result["figures"] = RUNNERS[name](stage, data_dir)
        except Exception as exc:  # figures that could not be read; the commands and the log still count
            stage.log(f"reading the stage's figures failed: {exc!r}")
            result["figures"], result["error"] = None, repr(exc)
        result["commands"] = stage.commands
        result["wall_s"] = round(time.monotonic() - started, 1)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        stage.log(f"wrote {args.out / (name + '.json')} after {result['wall_s']} s")
        if "error" in result or any(c["exit"] != 0 for c in stage.commands):
            failed.append(name)
    if failed:
        print(f"stages with a failed or stopped command: {', '.join(failed)} (see their .log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
