"""The command line through click's runner: results on stdout, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from hpsearch.catalog import shipped_study_files
from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch.workers import plan_workers


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_run_then_best_in_every_format(write_study, storage):
    path = str(write_study())
    result = invoke("run", "--study", path, "--storage", storage, "--device", "cpu", "--n-trials", "2")
    assert result.exit_code == 0, result.output
    assert "best trial #" in result.stdout and "test accuracy" in result.stdout
    assert "[2/2] trial #1 complete: val" in result.stderr
    as_json = json.loads(invoke("best", "--study", "tiny-digits", "--storage", storage, "--format", "json").stdout)
    as_yaml = yaml.safe_load(invoke("best", "--study", path, "--storage", storage, "--format", "yaml").stdout)
    assert as_json == as_yaml
    assert as_json["trials"] == 2 and as_json["best"]["params"]["lr"] == as_json["best"]["config"]["lr"]


def test_default_storage_is_an_sqlite_file_in_the_current_folder(write_study, isolated):
    result = invoke("run", "--study", str(write_study()), "--n-trials", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (isolated / "hpsearch.db").is_file()
    assert invoke("best", "--study", "tiny-digits").exit_code == 0


def test_studies_lists_every_shipped_study():
    result = invoke("studies")
    assert result.exit_code == 0
    for path in shipped_study_files():
        assert path.stem in result.stdout
    assert "fashion-mnist-93" in result.stdout and "test_accuracy >= 93.00%" in result.stdout


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    for fragment in fragments:
        assert fragment in result.stderr


def test_invalid_study_file_exits_2_and_writes_nothing(write_study, storage):
    path = write_study(budget={"epochs": 0}, space={"lr": {"float": [0.5, 0.1]}})
    result = invoke("run", "--study", str(path), "--storage", storage)
    assert_clean_error(result, f"{path}: budget.epochs:", f"{path}: space.lr.float: inverted range")
    assert not Path(storage.removeprefix("sqlite:///")).exists()


def test_unknown_study_name_lists_the_shipped_ones():
    assert_clean_error(invoke("run", "--study", "cifar11"), "no study file 'cifar11'", "digits-quick")


def test_unwritable_sqlite_path(write_study):
    result = invoke("run", "--study", str(write_study()), "--storage", "sqlite:////nonexistent/dir/x.db")
    assert_clean_error(result, "cannot write the SQLite storage", "--storage")


def test_unreachable_storage_masks_the_password(write_study):
    result = invoke("run", "--study", str(write_study()), "--storage", "mysql://alice:s3cret@127.0.0.1:1/db")
    assert_clean_error(result, "cannot open storage mysql://alice:***@127.0.0.1:1/db")
    assert "s3cret" not in result.output


def test_best_of_a_study_that_is_not_there(storage, write_study):
    invoke("run", "--study", str(write_study()), "--storage", storage, "--n-trials", "1")
    assert_clean_error(invoke("best", "--study", "nope", "--storage", storage),
                       "no study named 'nope'", "studies there: tiny-digits")


def test_missing_dataset_offline_is_one_line_and_creates_no_study(write_study, storage):
    path = write_study(dataset={"name": "cifar10"})
    assert_clean_error(invoke("run", "--study", str(path), "--storage", storage),
                       "cifar10 not found: put torchvision's cifar-10-batches-py")
    assert_clean_error(invoke("best", "--study", "tiny-digits", "--storage", storage), "studies there: none")


@pytest.mark.parametrize("args", [["--n-trials", "0"], ["--device", "tpu"]])
def test_bad_options_are_usage_errors(args, write_study):
    result = invoke("run", "--study", str(write_study()), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_gpu_workers_are_refused_where_torch_sees_no_cuda():
    for flags in [((0, 1), None), ((), 2)]:
        with pytest.raises(HpsearchError, match="torch sees no CUDA device.*use --workers N --device cpu"):
            plan_workers(None, *flags, "auto", visible_gpus=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --gpus is allowed here")
@pytest.mark.parametrize("flags", [("--gpus", "0,1"), ("--trials-per-gpu", "2")])
def test_gpu_workers_on_a_machine_without_cuda_start_nothing(write_study, storage, flags):
    result = invoke("run", "--study", str(write_study()), "--storage", storage, *flags)
    assert_clean_error(result, f"{flags[0]}: torch sees no CUDA device")
    assert not Path(storage.removeprefix("sqlite:///")).exists()
