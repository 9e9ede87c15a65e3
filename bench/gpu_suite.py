"""The GPU suite: every CUDA path and GPU figure of hpsearch in one command of at most 8 minutes.

Made for a lent GPU machine (an H200) that is held 15 minutes in all, start and transfers included, so
one call: a bare machine with no network whose Python has torch and torchvision but not optuna. The
stages run in priority order, each in its own time slice (SLICES); a stage that ends early passes its
leftover on, and the whole suite never runs past --seconds. Each stage writes `STAGE.json` (device,
driver, CUDA, torch, optuna, commit, every command with its exit status and seconds, every figure so
far) after each of its commands and when it ends, and `STAGE.log` (everything the commands printed),
into --out: a suite cut short still returns what it measured. bench/README.md says how to run it.

  setup   hpsearch from the checkout and the carried wheels (pip --no-index --find-links); the carried
          CIFAR-10 archive unpacked with a `tar -x` per core while xz decompresses (`unpack`).
  check   pytest -m cuda (HPSEARCH_REQUIRE_CUDA=1: a skipped CUDA test fails the stage), then the
          README's demo study on the GPU.
  speed   bench/pipeline.py on CIFAR-10 against the usual DataLoader pipeline; a whole 25-epoch
          seed001-cnn trial as `hpsearch run` trains it, with one profiled epoch (bench/trial_time.py);
          finished trials per hour with K = 1, 2, 4 workers on the GPU in one short window each
          (bench/trials_per_gpu.py) and the GPU memory each held.
  search  cifar10-75 from an empty storage until a sampled trial meets its target, then one fixed
          ResNet-9 recipe from cifar10-94's space (RESNET9) trained 20 epochs with `hpsearch train`.

`--stage NAME` runs setup (quick where it is done already) and NAME alone. --dry-run runs the same logic
on the CPU with tiny budgets (a subset of the archive, 1-2 epochs; the CUDA tests skip, as .ci/run runs
them on the CPU on its own with HPSEARCH_TEST_DEVICE=cpu), so the suite is tested between GPUs
(tests/e2e/test_gpu_suite.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))  # run as `python -I` on the bare machine, which leaves the script's folder out
from studyresults import study_summary, time_to_target  # noqa: E402

# Seconds per stage, in priority order: a suite cut short has measured the first ones. Estimates, not yet
# measured on a GPU: setup = pip (~15-25 s) + unpack (~2 s) + torch's import; check = the CUDA tests
# (~50 s) + the demo (CHECK_DEMO_S); speed = its three commands' own limits (SPEED_S); search = cifar10-75
# for what RESNET9_S leaves, then the ResNet-9 run.
SLICES = {"setup": 35, "check": 85, "speed": 195, "search": 165}  # 480 s: 8 minutes, inside a 540-s call
DRY_SLICES = {"setup": 10, "check": 40, "speed": 85, "search": 40}  # 175 s: under 3 minutes on 2 CPU cores
STOP_GRACE_S = 10  # a command past its time gets SIGINT (its trial is recorded and requeued), then SIGKILL
MIN_COMMAND_S = 5  # a command offered less than this is skipped, not started
CHECK_DEMO_S = (35, 15)  # (GPU, dry run): what the CUDA tests leave for the demo study
SPEED_S = {"pipeline": (35, 35), "trial": (70, 35)}  # the trials-per-GPU windows get the rest of the stage
K_OVERHEAD_S = 15  # one trials-per-GPU run beyond its window: imports, data, CUDA, the last trial's end
RESNET9_S = (75, 20)  # kept from cifar10-75 for the ResNet-9 run
DRY_RUN_SUBSET = ("train/*/00[0-3]?.jpg", "test/*/00[0-1]?.jpg")  # 40 + 20 images a class
UNPACK_PIECE = 4 << 20  # bytes of the tar stream per `tar -x`: CIFAR-10's 93 MB make ~23 pieces for 16 cores
TAR_BLOCK = 512
DRY_HOME = Path(tempfile.gettempdir()) / "hpsearch-gpu-dry"  # not .gpu/, which travels with the device call

# One fixed point of cifar10-94's space (studies/cifar10-94.yaml; its `fixed` adds family resnet9, SGD
# Nesterov, crop padding 4): Page's ResNet-9 at full width with airbench94's recipes, Page's lr and weight
# decay (lr 0.4 a batch of 512), the space's largest BatchNorm-bias lr scale (Page and airbench use 64).
RESNET9 = {"width_multiplier": 1.0, "whiten": 2, "dirac_init": True, "tta": "flip_translate", "ema": 0.99,
           "bn_bias_lr_scale": 16.0, "bn_weight_decay": False, "flip": "alternating", "lr_per_1024": 0.8,
           "weight_decay": 5.0e-4, "batch_size": 512, "label_smoothing": 0.2, "schedule": "warmup_linear",
           "augment": "flip_crop"}
RESNET9_EPOCHS = 20


@dataclass
class Stage:
    """One stage's run: its time, what it has recorded so far, and where it writes that."""

    name: str
    args: argparse.Namespace
    suite_start: float
    deadline: float
    slice_s: float
    machine: dict
    commands: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def dry(self) -> bool:
        return self.args.dry_run

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    @property
    def data_dir(self) -> Path:
        return Path(self.args.data_dir).resolve()

    @property
    def work(self) -> Path:
        return Path(self.args.work)

    def pick(self, seconds: tuple) -> float:
        """The GPU's or the dry run's figure of a (GPU, dry run) pair."""
        return seconds[self.dry]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        with (self.args.out / f"{self.name}.log").open("a") as f:
            f.write(text.rstrip("\n") + "\n")
        print(f"[{self.name}] {text.splitlines()[0] if text else ''}", file=sys.stderr, flush=True)

    def record(self, key: str, value) -> None:
        self.figures[key] = value
        self.save()

    def ok(self) -> bool:
        return self.error is None and all(c["exit"] == 0 for c in self.commands)

    def save(self, finished: bool = False) -> None:
        """STAGE.json as it stands: rewritten after every command, so a suite cut short returns it."""
        result = {"stage": self.name, "dry_run": self.dry, **self.machine, "slice_s": round(self.slice_s, 1),
                  "began_s": round(self.started - self.suite_start, 1),  # both from the suite's start
                  "deadline_s": round(self.deadline - self.suite_start, 1),
                  "finished": finished, "wall_s": round(time.monotonic() - self.started, 1),
                  "commands": self.commands, "figures": self.figures, **({"error": self.error} if self.error else {})}
        path = self.args.out / f"{self.name}.json"
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(result, indent=2, default=str) + "\n")
        partial.replace(path)  # never half a file, whenever the machine is taken back

    def run(self, name: str, argv: list[str], *, seconds: float | None = None, env: dict | None = None) -> int:
        """Run a command from the checkout's root, its output into the log; past `seconds` (or the stage's
        end, less STOP_GRACE_S to stop it) it is interrupted as Ctrl-C would, then killed. Returns its exit
        status (124: stopped or skipped). `env` adds to the environment; a None value removes that variable."""
        limit = min(seconds or self.left(), self.left() - STOP_GRACE_S)
        if limit < MIN_COMMAND_S:
            self.log(f"# {name}: skipped, {max(0, self.left()):.0f} s left in the stage")
            self.commands.append({"name": name, "command": argv, "exit": 124, "seconds": 0, "skipped": True})
            self.save()
            return 124
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log(f"$ {' '.join(argv)}   # {name}, at most {limit:.0f} s")
        started = time.monotonic()
        with (self.args.out / f"{self.name}.log").open("a") as log:
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
        self.save()
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
# Setup: hpsearch and its missing packages, the data, the device.


def stage_setup(stage: Stage) -> None:
    install(stage)
    stage.record("unpack", unpack_data(stage))
    stage.machine.update(describe_machine(stage))
    stage.save()


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
                                 str(wheels), str(REPO)])
    if code != 0:
        raise SystemExit(f"installing hpsearch from {wheels} failed (exit {code}): see {stage.name}.log")
    importlib.invalidate_caches()


def unpack_data(stage: Stage) -> dict:
    """The CIFAR-10 image folders under DATA/cifar10 (hpsearch's layout for the JPEG copy)."""
    target = stage.data_dir / "cifar10"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return {"already_unpacked": str(target)}
    archive = Path(stage.args.archive)
    if not archive.is_file():
        raise SystemExit(f"no CIFAR-10 at {target} and no archive at {archive}: copy "
                         "../shared/data/cifar10-jpeg.tar.xz there and carry it")
    started = time.monotonic()
    partial = target.with_name("cifar10.partial")
    shutil.rmtree(partial, ignore_errors=True)
    files = unpack(archive, partial, _in_dry_subset if stage.dry else None)
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (partial / split).rename(target / split)
    partial.rmdir()
    seconds = round(time.monotonic() - started, 2)
    stage.log(f"unpacked {files} images of {archive} into {target} in {seconds} s")
    return {"archive": str(archive), "files": files, "seconds": seconds, "cores": os.cpu_count()}


def unpack(archive: Path, target: Path, keep: Callable[[str], bool] | None = None) -> int:
    """Unpack the regular files (those `keep` takes) of a .tar.xz into `target`; returns how many.

    The archive is a single xz block, so its decompression (about 1.3 s for CIFAR-10 on one core) cannot be
    split, but writing the 60,000 files can: one thread decompresses, this one cuts the stream at headers
    into pieces of whole entries, and every core runs a `tar -x` on a piece. `tar xJf` has one writer.
    """
    target.mkdir(parents=True, exist_ok=True)
    piece, files, pieces, folders = bytearray(), 0, [], set()
    try:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            for name, entry in _tar_entries(_decompressed(archive)):
                if keep is None or keep(name):
                    if (folder := os.path.dirname(name)) not in folders:  # made here: two `tar -x` making one
                        (target / folder).mkdir(parents=True, exist_ok=True)  # folder at once can both fail
                        folders.add(folder)
                    piece += entry
                    files += 1
                if len(piece) >= UNPACK_PIECE:
                    pieces.append(pool.submit(_untar, piece, target))
                    piece = bytearray()
            pieces.append(pool.submit(_untar, piece, target))
            for done in pieces:
                done.result()
    except (lzma.LZMAError, ValueError) as exc:
        raise SystemExit(f"{archive} is not a .tar.xz archive ({exc})") from None
    return files


def _decompressed(archive: Path) -> Iterator[bytes]:
    """The archive's tar stream in chunks, the next one decompressed by a thread of its own while the
    caller reads this one (lzma lets go of the GIL)."""
    with lzma.open(archive) as stream, ThreadPoolExecutor(1) as reader:
        ahead = reader.submit(stream.read, 1 << 20)
        while chunk := ahead.result():
            ahead = reader.submit(stream.read, 1 << 20)
            yield chunk


def _tar_entries(chunks: Iterator[bytes]) -> Iterator[tuple[str, memoryview]]:
    """Each regular file of a tar stream as (its name, its blocks with the extended headers before them),
    from the ustar headers alone: a fraction of tarfile's time, so the reading keeps up with xz."""
    data, start, offset = b"", 0, 0
    for chunk in chunks:
        data, offset, start = data[start:] + chunk, offset - start, 0
        view = memoryview(data)
        while offset + TAR_BLOCK <= len(data):
            header = data[offset:offset + TAR_BLOCK]
            if not any(header):  # the end-of-archive blocks
                return
            size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            end = offset + TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK
            if end > len(data):
                break
            kind = header[156:157]
            if kind in (b"0", b"\0"):
                prefix, name = header[345:500].rstrip(b"\0"), header[:100].rstrip(b"\0")
                yield (prefix + b"/" + name if prefix else name).decode(), view[start:end]
            if kind not in (b"x", b"L", b"K"):  # a pax or GNU long-name header belongs to the entry after it
                start = end
            offset = end


def _untar(piece: bytearray, target: Path) -> None:
    piece += bytes(2 * TAR_BLOCK)  # the end-of-archive blocks
    done = subprocess.run(["tar", "-x", "-m", "--no-same-owner", "-f", "-", "-C", str(target)],
                          input=piece, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"tar could not unpack into {target}: "
                         f"{(done.stderr.decode(errors='replace').strip().splitlines() or ['?'])[0]}")


def _in_dry_subset(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name.removeprefix("./"), pattern) for pattern in DRY_RUN_SUBSET)


def describe_machine(stage: Stage) -> dict:
    """Device, driver, CUDA, versions and commit, recorded at the top of every stage's JSON."""
    import torch
    from provenance import provenance  # imports torch: here, once setup has installed what it needs

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
# The measuring stages. Each records its figures as it gets them.


def stage_check(stage: Stage) -> None:
    junit = stage.work / "check-junit.xml"
    junit.unlink(missing_ok=True)
    # On a GPU a CUDA test that skips fails; on a CPU they skip (.ci/run runs them there on their own).
    env = {"HPSEARCH_TEST_DEVICE": None, "HPSEARCH_REQUIRE_CUDA": None if stage.dry else "1"}
    code = stage.run("pytest -m cuda", [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider",
                                        f"--junitxml={junit}", "tests"],
                     seconds=stage.left() - stage.pick(CHECK_DEMO_S), env=env)
    tests = _junit_outcomes(junit)
    stage.record("tests", tests)
    stage.figures.update({"pytest_exit": code, "passed": sum(t["outcome"] == "passed" for t in tests),
                          "failed": [t["name"] for t in tests if t["outcome"] in ("failed", "error")],
                          "skipped": [t["name"] for t in tests if t["outcome"] == "skipped"]})
    demo_db = stage.work / "demo.db"
    demo_db.unlink(missing_ok=True)
    demo = ["--study", _study_arg(stage, "digits-quick"), "--storage", f"sqlite:///{demo_db}", "--device", stage.device]
    demo_code = stage.run("demo study", [sys.executable, "-m", "hpsearch", "run", *demo])
    stage.figures["ok"] = code == 0 and demo_code == 0
    stage.record("demo", {"exit": demo_code, "wall_s": stage.commands[-1]["seconds"], **study_summary(demo_db)})


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


def stage_speed(stage: Stage) -> None:
    dry, bench, data = stage.dry, REPO / "bench", str(stage.data_dir)
    pipeline_json, trial_json, per_gpu_json = (stage.work / f"{name}.json"
                                               for name in ("pipeline", "trial-time", "trials-per-gpu"))
    for stale in (pipeline_json, trial_json, per_gpu_json):
        stale.unlink(missing_ok=True)
    stage.run("pipeline", [sys.executable, str(bench / "pipeline.py"), "--dataset", "cifar10", "--model", "seed001-cnn",
                           "--device", stage.device, "--epochs", "2" if dry else "3", "--data-dir", data,
                           "--out", str(pipeline_json)], seconds=stage.pick(SPEED_S["pipeline"]))
    pipeline = _read_json(pipeline_json)
    stage.record("pipeline", pipeline)
    stage.run("25-epoch trial", [sys.executable, str(bench / "trial_time.py"), "--model", "seed001-cnn",
                                 "--dataset", "cifar10", "--device", stage.device, "--data-dir", data,
                                 "--repeats", "0", "--profile", "--out", str(trial_json),
                                 *(["--epochs", "1", "--validation", "0.2"] if dry else [])],
              seconds=stage.pick(SPEED_S["trial"]))
    trial = _read_json(trial_json)
    stage.record("trial_time", trial)
    ks = ["1", "2"] if dry else ["1", "2", "4"]
    window = 2 if dry else max(10, int((stage.left() - STOP_GRACE_S) / len(ks) - K_OVERHEAD_S))
    study = _dry_study(stage, "cifar10-small") if dry else bench / "studies" / "cifar10-small.yaml"
    stage.run("trials per GPU", [sys.executable, str(bench / "trials_per_gpu.py"), "--study", str(study),
                                 "--device", stage.device, "--ks", *ks, "--seconds", str(window),
                                 "--data-dir", data, "--out", str(per_gpu_json)])
    per_gpu = _read_json(per_gpu_json)
    stage.figures["trials_per_gpu"] = per_gpu
    stage.record("headline", {
        "pipeline_speedup": pipeline and pipeline["speedup_steady"],
        "pipeline_test_accuracy_points": pipeline and round(100 * pipeline["test_accuracy_difference"], 2),
        "trial_25_epochs_s": trial and trial["trial"]["trial_seconds"],
        "trial_with_study_s": trial and trial["trial"]["run_s"],
        "device_busy_fraction": trial and trial["profile"]["device_busy_fraction"],
        "trials_per_hour": per_gpu and {row["k"]: row["finished_per_hour"] for row in per_gpu["rows"]},
        "trials_per_hour_ratio": per_gpu and {row["k"]: row["ratio"] for row in per_gpu["rows"]},
        "gpu_memory_mib_per_process": per_gpu and {row["k"]: row["gpu_memory_mib_per_process"]
                                                   for row in per_gpu["rows"]},
    })


def stage_search(stage: Stage) -> None:
    work = stage.work / "search"
    shutil.rmtree(work, ignore_errors=True)  # from an empty storage, every time
    work.mkdir(parents=True)
    storage = work / "cifar10-75.db"
    common = ["--data-dir", str(stage.data_dir), "--device", stage.device]
    study = _study_arg(stage, "cifar10-75")
    seconds = stage.left() - STOP_GRACE_S - stage.pick(RESNET9_S)
    started = time.time()
    stage.run("cifar10-75", [sys.executable, "-m", "hpsearch", "run", "--study", study, "--storage",
                             f"sqlite:///{storage}", *common, "--timeout", str(int(max(MIN_COMMAND_S, seconds)))],
              seconds=seconds)
    stage.record("cifar10-75", time_to_target(storage, study, started))
    epochs = 1 if stage.dry else RESNET9_EPOCHS
    config = _resnet9_config(stage, work / "resnet9.yaml", epochs)
    out = work / "resnet9"
    stage.run("resnet9", [sys.executable, "-m", "hpsearch", "train", "--config", str(config), "--seeds", "1",
                          "--out", str(out), *common])
    results = _read_json(out / "results.json")
    (seed,) = results["seeds"] if results else [{}]
    stage.record("resnet9", {"params": RESNET9, "epochs": epochs,
                             "test_accuracy": seed.get("test_accuracy"), "val_accuracy": seed.get("val_accuracy"),
                             "train_s": seed.get("seconds"), "wall_s": stage.commands[-1]["seconds"]})


def _resnet9_config(stage: Stage, path: Path, epochs: int) -> Path:
    """RESNET9 as `hpsearch export` writes a trial's config: cifar10-94's split, seed and fixed values."""
    from hpsearch.results.export import FORMAT, write_config
    from hpsearch.studyfile import params as P
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(REPO / "studies" / "cifar10-94.yaml")
    dataset = {**spec.dataset.recorded(), **({"validation": 0.2} if stage.dry else {})}
    params = {**spec.fixed, **RESNET9, **({"width_multiplier": 0.125} if stage.dry else {})}
    write_config({"format": FORMAT, "study": spec.name, "dataset": dataset,
                  "epochs": epochs, "seed": spec.seed, "params": P.complete(params)}, path)
    return path


# --------------------------------------------------------------------------------------------
# Tiny copies of the studies for --dry-run: the same files, budgets cut to seconds on a CPU.


DRY_OVERRIDES = {
    "digits-quick": {"budget": {"epochs": 1, "trials": 1}},
    # No baselines: whether one meets the target must not decide, between hpsearch versions, when the run stops.
    "cifar10-75": {"budget": {"epochs": 1, "trials": 3}, "target": {"metric": "val_accuracy", "value": 0.01},
                   "dataset": {"name": "cifar10", "validation": 0.2}, "baselines": [],
                   "space": {"width": {"int": [4, 8]}, "lr": {"float": [0.01, 0.2], "log": True}}},
    "cifar10-small": {"budget": {"epochs": 1, "trials": 1000}, "dataset": {"name": "cifar10", "validation": 0.2},
                      "space": {"width": {"int": [4, 8]}, "lr": {"float": [0.01, 0.2], "log": True}}},
}


def _dry_study(stage: Stage, name: str) -> Path:
    import yaml

    source = REPO / ("bench/studies" if name == "cifar10-small" else "studies") / f"{name}.yaml"
    body = {**yaml.safe_load(source.read_text()), **DRY_OVERRIDES[name]}
    path = stage.work / "studies" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _study_arg(stage: Stage, name: str) -> str:
    return str(_dry_study(stage, name)) if stage.dry else name


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------


RUNNERS = {"setup": stage_setup, "check": stage_check, "speed": stage_speed, "search": stage_search}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=(*SLICES, "all"), default="all",
                   help="one stage (after setup, quick where it is done already), or all in order (the default)")
    p.add_argument("--out", type=Path, required=True, help="folder for STAGE.json and STAGE.log")
    p.add_argument("--dry-run", action="store_true", help="the same logic on the CPU with tiny budgets")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"time for the stages run, split in their slices' proportions (default: their slices, "
                        f"{sum(SLICES.values())} s for all; {sum(DRY_SLICES.values())} s with --dry-run)")
    p.add_argument("--wheels", default=str(REPO / ".whl"), help="wheels of what the machine lacks (default: .whl)")
    p.add_argument("--archive", default=str(REPO / ".gpu" / "cifar10-jpeg.tar.xz"),
                   help="the CIFAR-10 JPEG archive (default: .gpu/cifar10-jpeg.tar.xz)")
    p.add_argument("--data-dir", help="where CIFAR-10 is unpacked (default: .gpu/data; with --dry-run, "
                                      f"{DRY_HOME}/data: its subset must never pass for the whole set in .gpu/)")
    p.add_argument("--work", help=f"storages, configs and scratch files (default: .gpu/work; with --dry-run, "
                                  f"{DRY_HOME}/work)")
    p.add_argument("--commit", default=_carried_commit(),
                   help="the commit measured, where the checkout has no .git (default: .gpu/COMMIT's)")
    args = p.parse_args()
    if args.seconds is not None and args.seconds <= 0:
        p.error(f"--seconds must be positive, got {args.seconds:g}")
    home = DRY_HOME if args.dry_run else REPO / ".gpu"
    args.data_dir, args.work = args.data_dir or str(home / "data"), args.work or str(home / "work")
    return args


def _carried_commit() -> str | None:
    path = REPO / ".gpu" / "COMMIT"
    return path.read_text().strip() if path.is_file() else None


def schedule(args: argparse.Namespace) -> dict[str, float]:
    """Each stage to run and its slice of seconds, in order."""
    slices = DRY_SLICES if args.dry_run else SLICES
    names = list(slices) if args.stage == "all" else list(dict.fromkeys(("setup", args.stage)))
    scale = (args.seconds or sum(slices[n] for n in names)) / sum(slices[n] for n in names)
    return {name: slices[name] * scale for name in names}


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    machine, failed = {}, []
    start = end = time.monotonic()
    for name, seconds in schedule(args).items():
        end += seconds  # a stage that ends early leaves its time to the next ones
        stage = Stage(name, args, start, end, seconds, machine)
        (args.out / f"{name}.log").write_text("")
        stage.log(f"{name}: until {stage.left():.0f} s from now (its slice: {seconds:.0f} s)")
        try:
            RUNNERS[name](stage)
        except SystemExit as exc:  # setup without what it needs: nothing after it can run
            stage.error = str(exc)
            stage.save(finished=True)
            raise
        except Exception as exc:  # figures that could not be read; the commands and the log still count
            stage.log(f"reading the stage's figures failed: {exc!r}")
            stage.error = repr(exc)
        stage.save(finished=True)
        stage.log(f"wrote {args.out / (name + '.json')} after {time.monotonic() - stage.started:.1f} s")
        if not stage.ok():
            failed.append(name)
    if failed:
        print(f"stages with a failed or stopped command: {', '.join(failed)} (see their .log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
