"""bench/gpu_suite.py on the CPU (--dry-run): every stage runs and records its figures, so the suite a
lent GPU machine runs has not rotted since the last GPU."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import time
from itertools import accumulate
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "bench" / "gpu_suite.py"
sys.path.insert(0, str(SUITE.parent))
import gpu_suite  # noqa: E402

STAGES = ("setup", "check", "speed", "search")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def tiny_cifar10_archive(folder: Path) -> Path:
    """An archive laid out as ../shared/data/cifar10-jpeg.tar.xz (split/class/NNNN.jpg), with just the
    images the dry run unpacks: 40 training and 20 test images a class, each class its own tint."""
    rng = np.random.default_rng(0)
    archive = folder / "cifar10-jpeg.tar.xz"
    folder.mkdir(parents=True)
    with tarfile.open(archive, "w:xz") as tar:
        for split, count in (("train", 40), ("test", 20)):
            for label, name in enumerate(CIFAR10_CLASSES):
                (folder / split / name).mkdir(parents=True)
                for i in range(count):
                    pixels = rng.normal(90, 40, (32, 32, 3))
                    pixels[..., label % 3] += 25 * (label // 3 + 1)
                    path = folder / split / name / f"{i:04d}.jpg"
                    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
                    tar.add(path, arcname=f"{split}/{name}/{i:04d}.jpg")
    return archive


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def suite(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow  # about 100 s on 2 cores: some 15 processes that each import torch
def test_the_dry_run_runs_every_stage_in_its_slice_and_records_its_figures(tmp_path):
    archive = tiny_cifar10_archive(tmp_path / "made")
    out = tmp_path / "out"
    done = suite("--dry-run", "--out", str(out), "--archive", str(archive), "--data-dir", str(tmp_path / "data"),
                 "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # What comes back from a lent machine: at most 8 files, none of them large.
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{ext}" for s in STAGES for ext in ("json", "log"))
    assert all(p.stat().st_size < 2**20 for p in out.iterdir())
    results = {stage: json.loads((out / f"{stage}.json").read_text()) for stage in STAGES}
    # In priority order, each in its slice, a stage's leftover passed on: the suite within its total.
    assert [r["slice_s"] for r in results.values()] == list(gpu_suite.DRY_SLICES.values())
    assert [r["deadline_s"] for r in results.values()] == list(accumulate(gpu_suite.DRY_SLICES.values()))
    began = [r["began_s"] for r in results.values()]
    assert began == sorted(began) and all(r["began_s"] + r["wall_s"] <= r["deadline_s"] + 1 for r in results.values())
    for stage, result in results.items():
        assert result["dry_run"] is True and result["stage"] == stage and result["finished"] is True
        assert {"device", "driver", "cuda", "torch", "optuna", "git_commit", "date"} <= result.keys()
        assert all(c["exit"] == 0 for c in result["commands"]), result["commands"]
        assert "error" not in result
    unpacked = results["setup"]["figures"]["unpack"]
    assert unpacked["files"] == 600 and unpacked["seconds"] > 0

    check = results["check"]["figures"]
    assert len(check["tests"]) >= 7 and not check["failed"]  # the CUDA tests, skipped without a GPU
    assert check["demo"]["complete"] >= 1 and check["ok"]

    speed = results["speed"]["figures"]["headline"]
    assert speed["pipeline_speedup"] > 0 and speed["trial_25_epochs_s"] > 0 and speed["trial_with_study_s"] > 0
    assert set(speed["trials_per_hour"]) == {"1", "2"} and speed["trials_per_hour_ratio"]["1"] == 1.0
    assert "aten::" in results["speed"]["figures"]["trial_time"]["profile"]["top_operators"]

    search = results["search"]["figures"]
    assert search["cifar10-75"]["reached"] is True and search["cifar10-75"]["wall_s_to_target"] > 0
    assert sum(search["cifar10-75"]["trials_until_then"].values()) >= 1
    resnet9 = search["resnet9"]
    assert resnet9["params"] == gpu_suite.RESNET9 and resnet9["epochs"] == 1
    assert 0 <= resnet9["test_accuracy"] <= 1 and resnet9["wall_s"] > 0


@pytest.mark.parametrize("missing", ["data", "wheels"])
def test_a_machine_without_its_carried_files_gets_one_line_naming_them(tmp_path, missing):
    args = ["--stage", "search", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
            "--data-dir", str(tmp_path / "data"), "--archive", str(tmp_path / "none.tar.xz")]
    if missing == "wheels":  # what a GPU machine's Python without optuna meets first
        done = subprocess.run([sys.executable, "-I", "-S", str(SUITE), *args, "--wheels", str(tmp_path / "none")],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert "no wheels in" in done.stderr and "gpu-wheels" in done.stderr
    else:
        done = suite(*args, "--dry-run", cwd=tmp_path)
        assert "no CIFAR-10 at" in done.stderr and "cifar10-jpeg.tar.xz" in done.stderr
    assert done.returncode != 0 and "Traceback" not in done.stderr
    setup = json.loads((tmp_path / "out" / "setup.json").read_text())
    assert setup["finished"] and setup["error"] in done.stderr


def test_a_stage_out_of_time_skips_what_it_cannot_start_and_still_writes_its_json(tmp_path):
    archive = tiny_cifar10_archive(tmp_path / "made")
    # 12 s for setup and check: check's slice cannot hold the CUDA tests and the demo.
    done = suite("--dry-run", "--stage", "check", "--seconds", "12", "--out", str(tmp_path / "out"),
                 "--archive", str(archive), "--data-dir", str(tmp_path / "data"), "--work", str(tmp_path / "work"),
                 cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "check" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["check.json", "check.log", "setup.json",
                                                                    "setup.log"]
    check = json.loads((tmp_path / "out" / "check.json").read_text())
    assert check["finished"] and check["deadline_s"] == 12 and "torch" in check
    assert [(c["name"], c["exit"], c.get("skipped")) for c in check["commands"]] == [
        ("pytest -m cuda", 124, True), ("demo study", 124, True)]


@pytest.mark.parametrize(("stage", "seconds", "expected"), [
    ("all", None, gpu_suite.SLICES),
    ("speed", None, {"setup": 35, "speed": 195}),
    ("setup", 70, {"setup": 70}),
    ("all", 240, {name: seconds / 2 for name, seconds in gpu_suite.SLICES.items()}),
])
def test_the_schedule_runs_setup_first_and_splits_the_time_in_the_slices_proportions(stage, seconds, expected):
    args = argparse.Namespace(stage=stage, seconds=seconds, dry_run=False)
    assert gpu_suite.schedule(args) == expected
    assert sum(gpu_suite.SLICES.values()) == 480 and sum(gpu_suite.DRY_SLICES.values()) < 180


def test_unpack_writes_what_tar_writes_and_only_what_it_keeps(tmp_path, monkeypatch):
    """Pax headers (tarfile writes one per file for its mtime) and names over 100 characters included."""
    archive = tmp_path / "a.tar.xz"
    names = [f"train/cat/{i:04d}.jpg" for i in range(300)] + ["test/" + "long-" * 30 + "name.jpg", "test/empty"]
    with tarfile.open(archive, "w:xz") as tar:
        for i, name in enumerate(names):
            data = bytes([i % 256]) * (i * 37 % 5000) if name != "test/empty" else b""
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1.5e9 + 0.25  # a fractional mtime: a pax header each
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(gpu_suite, "UNPACK_PIECE", 64 << 10)  # many pieces, many `tar -x` at once
    assert gpu_suite.unpack(archive, tmp_path / "all") == len(names)
    assert gpu_suite.unpack(archive, tmp_path / "some", lambda name: name.startswith("test/")) == 2
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "tarfile", filter="data")
    assert files(tmp_path / "all") == files(tmp_path / "tarfile") and set(files(tmp_path / "some")) == set(names[-2:])


def test_a_baseline_at_the_target_is_recorded_but_only_a_sampled_trial_reaches_it(tmp_path):
    study_file = tmp_path / "s.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "s", "dataset": {"name": "digits"}, "budget": {"epochs": 1, "trials": 5},
        "target": {"metric": "val_accuracy", "value": 0.9}, "space": {"lr": {"float": [0.01, 0.1]}}}))
    storage = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{storage}", direction="maximize")
    started = time.time()
    for accuracy, attrs in ((0.95, {"baseline": "seed002-fc"}), (0.5, {}), (0.92, {}), (0.97, {})):
        test = {"test_accuracy": accuracy - 0.1}
        study.add_trial(optuna.trial.create_trial(value=accuracy, user_attrs={**test, **attrs}))
    result = gpu_suite.time_to_target(storage, str(study_file), started)
    assert result["reached"] is True and result["trial"] == 2  # judged on validation, test beside it
    assert (result["trial_val_accuracy"], result["trial_test_accuracy"]) == (0.92, pytest.approx(0.82))
    assert result["baselines_at_target"] == [{"baseline": "seed002-fc", "trial": 0, "val_accuracy": 0.95,
                                              "test_accuracy": pytest.approx(0.85)}]
    assert result["trials_until_then"] == {"complete": 3, "pruned": 0, "fail": 0}
    # A run stopped before it made its study: nothing to read, no error.
    assert gpu_suite.time_to_target(tmp_path / "none.db", str(study_file), started) == {"trials": 0}


def test_the_resnet9_recipe_is_a_point_of_cifar10_94s_space():
    space = yaml.safe_load((REPO / "studies" / "cifar10-94.yaml").read_text())["space"]
    for name, value in gpu_suite.RESNET9.items():
        axis = space[name]
        if "choice" in axis:
            assert value in axis["choice"], name
        else:
            low, high = axis["float"]
            assert low <= value <= high, name
