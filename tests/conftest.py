"""Shared fixtures: every test runs in its own folder with its own SQLite file and no network."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from PIL import Image

from hpsearch.studyfile import plugins
from hpsearch.training import usercode
from tests.helpers import FRONT_DIGITS

TINY_DIGITS = {
    "name": "tiny-digits",
    "about": "a few seconds of real training for tests",
    "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
    "budget": {"epochs": 3, "trials": 3},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "space": {"lr": {"float": [0.01, 0.2], "log": True}, "width": {"int": [4, 16]}},
    "fixed": {"blocks": 1, "convs_per_block": 1, "batch_size": 64, "optimizer": "sgd_nesterov"},
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder, no inherited storage, and downloads switched off."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.setenv("HPSEARCH_OFFLINE", "1")
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "data"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return tmp_path


@pytest.fixture(autouse=True)
def cuda_or_skip(request: pytest.FixtureRequest) -> None:
    """Tests marked `cuda` skip without a GPU, fail without one under HPSEARCH_REQUIRE_CUDA=1 (the GPU
    suite sets it, so a GPU that torch cannot see is never a silent pass), and run on the CPU under
    HPSEARCH_TEST_DEVICE=cpu (the suite's --dry-run, so their logic is checked between GPUs)."""
    if request.node.get_closest_marker("cuda") is None or os.environ.get("HPSEARCH_TEST_DEVICE") == "cpu":
        return
    if torch.cuda.is_available():
        return
    if os.environ.get("HPSEARCH_REQUIRE_CUDA") == "1":
        pytest.fail("HPSEARCH_REQUIRE_CUDA=1 but torch sees no CUDA device")
    pytest.skip("needs a CUDA GPU (bench/gpu_suite.py --stage check runs these)")


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def write_study(tmp_path: Path):
    """write_study(**overrides) -> path of a study file: TINY_DIGITS with top-level keys replaced."""

    def write(filename: str = "study.yaml", **overrides) -> Path:
        body = {**TINY_DIGITS, **overrides}
        path = tmp_path / filename
        path.write_text(yaml.safe_dump({k: v for k, v in body.items() if v is not None}, sort_keys=False))
        return path

    return write


SHARED_DIGITS = {**TINY_DIGITS, "name": "shared-digits", "budget": {"epochs": 3, "trials": 6},
                 "pruner": {"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                 "space": {"lr": {"float": [0.001, 0.3], "log": True}, "width": {"int": [4, 12]}}}


def _finished_study(factory: pytest.TempPathFactory, body: dict, keep_weights: int):
    """(storage URL, study file, study) of the study `body` run once to its budget in a folder of its own."""
    from hpsearch.search.run import RunOptions, run
    from hpsearch.studyfile.schema import load_spec

    folder = factory.mktemp(body["name"])
    path = folder / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    url = f"sqlite:///{folder / 'study.db'}"
    return url, path, run(load_spec(path), url, RunOptions(device="cpu", keep_weights=keep_weights))


@pytest.fixture(scope="session")
def shared_study(tmp_path_factory: pytest.TempPathFactory):
    """One finished digits study (6 trials, weights of the best 2 kept), run once for the tests that only read it.

    Returns (storage URL, study file, study). Tests must not add trials to it.
    """
    return _finished_study(tmp_path_factory, SHARED_DIGITS, keep_weights=2)


@pytest.fixture(scope="session")
def front_study(tmp_path_factory: pytest.TempPathFactory):
    """One finished two-objective study (10 trials, median pruner), for the tests that only read it.

    Returns (storage URL, study file, study). Tests must not add trials to it.
    """
    return _finished_study(tmp_path_factory, FRONT_DIGITS, keep_weights=10)


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 6, seed: int = 0) -> Path:
    """<class>/<n>.png under root: noisy images of two sizes, each class tinted its own colour."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.normal(60, 30, (12, 20, 3) if i % 2 else (20, 14, 3))
            pixels[..., label % 3] += 120
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder():
    """image_folder(root, classes, per_class, seed) -> root, a generated <class>/<image> tree."""
    return write_image_folder


LAB_PLUGIN = Path(__file__).parent / "fixtures" / "labplugin"


def install_lab_plugin(folder: Path) -> Path:
    """A copy of the test-only package lab_models in folder/site, put on sys.path: hpsearch imports its builders by
    path, and its dist-info's entry points register its family (labnet) and dataset (lab-digits). Returns the site."""
    site = folder / "site"
    shutil.copytree(LAB_PLUGIN, site)
    sys.path.insert(0, str(site))
    forget_user_code()
    return site


def forget_user_code() -> None:
    """As a new process would: no plugin table read, no builder imported, lab_models not loaded."""
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m == "lab_models" or m.startswith("lab_models.")]:
        del sys.modules[name]
    for cached in (plugins.plugin_families, plugins.plugin_datasets, usercode._loaded):
        cached.cache_clear()


@pytest.fixture
def lab_plugin(tmp_path: Path):
    """The test-only package lab_models on sys.path for one test (install_lab_plugin); gone again after it."""
    site = install_lab_plugin(tmp_path)
    yield site
    sys.path.remove(str(site))
    forget_user_code()
