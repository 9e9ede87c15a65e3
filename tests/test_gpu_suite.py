"""bench/gpu_suite.py on the CPU (--dry-run): every stage runs and records its figures, so the suite a
lent GPU machine runs has not rotted since the last GPU."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "bench" / "gpu_suite.py"
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


def suite(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow  # about 100 s on 2 quiet cores: some 15 processes that each import torch
def test_the_dry_run_runs_every_stage_and_records_its_figures(tmp_path):
    archive = tiny_cifar10_archive(tmp_path / "made")
    out = tmp_path / "out"
    done = suite("--stage", "all", "--dry-run", "--out", str(out), "--archive", str(archive),
                 "--data-dir", str(tmp_path / "data"), "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # What comes back from a lent machine: at most 8 files, none of them large.
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.{ext}" for s in ("check", "search", "speed")
                                                     for ext in ("json", "log")]
    assert all(p.stat().st_size < 2**20 for p in out.iterdir())
    results = {stage: json.loads((out / f"{stage}.json").read_text()) for stage in ("check", "speed", "search")}
    for stage, result in results.items():
        assert result["dry_run"] is True and result["stage"] == stage
        assert {"device", "driver", "cuda", "torch", "optuna", "git_commit", "date"} <= result.keys()
        assert result["commands"] and all(c["exit"] == 0 for c in result["commands"]), result["commands"]
        assert "error" not in result

    check = results["check"]["figures"]
    assert len(check["tests"]) >= 7 and not check["failed"]  # the CUDA tests, skipped without a GPU
    assert check["demo"]["complete"] >= 1 and check["ok"]

    speed = results["speed"]["figures"]["headline"]
    assert speed["pipeline_speedup"] > 0 and speed["trial_25_epochs_s"] > 0 and speed["trial_as_run_s"] > 0
    assert set(speed["trials_per_hour_ratio"]) == {"1", "2"} and speed["trials_per_hour_ratio"]["1"] == 1.0
    assert "aten::" in results["speed"]["figures"]["trial_time"]["profile"]["top_operators"]

    search = results["search"]["figures"]
    assert search["cifar10-75"]["reached"] is True and search["cifar10-75"]["wall_s_to_target"] > 0
    assert sum(search["cifar10-75"]["trials_until_then"].values()) >= 1
    retrained = search["cifar10-94"]["retrained"]
    assert [s["seed"] for s in retrained["seeds"]] == [0, 1, 2] and "test_accuracy_std" in retrained


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
