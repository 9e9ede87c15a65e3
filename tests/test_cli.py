"""The command line through click's runner: results on stdout, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import hpsearch
from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.catalog import shipped_study_files
from tests.helpers import assert_clean_error, invoke, outcome


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
    assert "fashion-mnist-93" in result.stdout and "val_accuracy >= 93.00%" in result.stdout


def test_invalid_study_file_exits_2_and_writes_nothing(write_study, storage):
    path = write_study(budget={"epochs": 0}, space={"lr": {"float": [0.5, 0.1]}})
    result = invoke("run", "--study", str(path), "--storage", storage)
    assert_clean_error(result, f"{path}: budget.epochs:", f"{path}: space.lr.float: inverted range")
    assert not Path(storage.removeprefix("sqlite:///")).exists()


def test_unknown_study_name_lists_the_shipped_ones():
    assert_clean_error(invoke("run", "--study", "cifar11"), "no study file 'cifar11'", "digits-quick")


def test_best_of_a_study_that_is_not_there(storage, write_study):
    invoke("run", "--study", str(write_study()), "--storage", storage, "--n-trials", "1")
    assert_clean_error(invoke("best", "--study", "nope", "--storage", storage),
                       "no study named 'nope'", "studies there: tiny-digits")


def test_a_dashboard_host_that_is_no_address_is_one_line(shared_study):
    url, _, _ = shared_study
    result = invoke("dashboard", "--study", "shared-digits", "--storage", url, "--host", "no such host")
    assert result.exit_code == 2 and "Traceback" not in result.output  # Bottle's banner comes before the bind
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: cannot listen on no such host: not an address or a known host name (")


def test_missing_dataset_offline_is_one_line_and_writes_nothing(write_study, storage, isolated):
    path = write_study(dataset={"name": "cifar10"})
    before = sorted(isolated.rglob("*"))
    assert_clean_error(invoke("run", "--study", str(path), "--storage", storage),
                       "cifar10 not found: put torchvision's cifar-10-batches-py")
    assert sorted(isolated.rglob("*")) == before  # no database, no folders
    assert_clean_error(invoke("best", "--study", "tiny-digits", "--storage", storage), "no storage")
    # Several workers: each says so; the logs stay for reading, and no database is made.
    result = invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu", "--workers", "2")
    assert result.exit_code == 2 and "cifar10 not found" in result.output and "Traceback" not in result.output
    assert not Path(storage.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("args", [["--n-trials", "0"], ["--device", "tpu"], ["--seed", "-1"], ["--seed", "4294967296"]])
def test_bad_options_are_usage_errors(args, write_study):
    result = invoke("run", "--study", str(write_study()), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --gpus is allowed here")
@pytest.mark.parametrize("flags", [("--gpus", "0,1"), ("--trials-per-gpu", "2")])
def test_gpu_workers_on_a_machine_without_cuda_start_nothing(write_study, storage, flags):
    result = invoke("run", "--study", str(write_study()), "--storage", storage, *flags)
    assert_clean_error(result, f"{flags[0]}: torch sees no CUDA device")
    assert not Path(storage.removeprefix("sqlite:///")).exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_workers_on_a_machine_without_cuda_are_refused_before_any_starts(write_study, storage, tmp_path):
    result = invoke("run", "--study", str(write_study()), "--storage", storage, "--workers", "2", "--device", "cuda")
    assert_clean_error(result, "--device cuda: no CUDA device is visible to torch (use --device cpu or auto)")
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("*-logs"))


def test_a_run_whose_every_trial_failed_exits_1_naming_the_reason(write_study, storage):
    path = write_study(space={"lr": {"choice": [100.0]}}, budget={"epochs": 2, "trials": 2},
                       fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False, "optimizer": "sgd",
                              "momentum": 0.0})
    result = invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "study tiny-digits: 2 trials (0 complete, 0 pruned, 2 failed)" in result.stdout
    assert "error: every trial of this run failed (2 trials); the most common reason (2 of 2): training loss became" \
        in result.stderr


def test_until_a_total_the_study_already_holds_says_so(write_study, storage):
    path = str(write_study(target={"metric": "val_accuracy", "value": 0.05}, budget={"epochs": 1, "trials": 5}))
    assert invoke("run", "--study", path, "--storage", storage, "--device", "cpu", "--until", "1").exit_code == 0
    result = invoke("run", "--study", path, "--storage", storage, "--device", "cpu", "--until", "1")
    assert result.exit_code == 0, result.output
    assert "nothing to do: the study already holds 1 finished trial (--until 1)" in result.stderr
    assert "reached" not in result.stderr and "study tiny-digits: 1 trial (1 complete, 0 pruned, 0 failed)" in result.stdout


def test_every_command_is_in_the_readme_s_command_list():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = readme.split("## Commands", 1)[1].split("```")[1]
    assert {line.split()[1] for line in listed.strip().splitlines()} == set(main.commands)


def test_a_signal_that_lands_inside_a_destructor_is_not_lost():
    """Python runs a signal handler wherever the main thread is, a __del__ included (torch's weakref callbacks),
    and drops what it raises there: an interrupt raised by the handler was lost. The stop asked for there is
    raised at the command's next safe point, with no second signal."""
    from hpsearch import stopping
    from hpsearch.cli import stops_once
    from hpsearch.errors import Terminated

    class SlowToDie:
        def __del__(self):
            time.sleep(1.0)  # the SIGTERM (at 0.2 s) lands here

    @stops_once
    def command():
        SlowToDie()
        for _ in range(500):  # ten seconds of safe points
            stopping.check()
            time.sleep(0.02)
        return "finished"

    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    with pytest.raises(Terminated):
        command()
    assert time.monotonic() - started < 8  # at the first safe point after the destructor, not at the command's end
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back as it was


@pytest.mark.parametrize("overrides, says", [
    ({"limits": {"params": -5}}, "limits.params: must be a whole number of parameters >= 1, such as 1000000, got -5"),
    ({"objectives": ["val_accuracy", "size"]}, "objectives: must be [val_accuracy, params] or [val_accuracy, "
                                               "train_seconds]")])
def test_bad_limits_or_objectives_exit_2_with_one_line(write_study, storage, overrides, says):
    path = write_study(**overrides)
    result = invoke("run", "--study", str(path), "--storage", storage)
    assert_clean_error(result, f"{path}: {says}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path(storage.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_ends_an_expected_error_in_one_line_and_ctrl_c_in_130(name, monkeypatch):
    """The boundary is the group's: a command cannot forget it, today's or tomorrow's."""
    command = main.commands[name]
    monkeypatch.setattr(command, "params", [])

    def broken():
        raise HpsearchError("the environment is broken: mend it")

    monkeypatch.setattr(command, "callback", broken)
    assert_clean_error(invoke(name), "error: the environment is broken: mend it")

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "callback", interrupted)
    result = invoke(name)
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_params_given_an_argument_is_a_usage_error():
    result = invoke("params", "lr")
    assert result.exit_code == 2 and "Got unexpected extra argument" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["run", "worker"])
def test_n_trials_with_until_is_refused_before_torch_or_optuna_is_imported(command):
    """A mistyped command line is answered at once, not after seconds of imports."""
    code = ("import sys\nfrom hpsearch.cli import main\ntry:\n    main()\n"
            "finally:\n    print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, command, "--study", "digits-quick", "--n-trials", "1",
                           "--until", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not both" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "[]"


def test_n_trials_and_until_together_is_a_usage_error(write_study):
    code, _, err = outcome(invoke("run", "--study", str(write_study()), "--n-trials", "2", "--until", "3"))
    assert code == 2 and "not both" in err and "Traceback" not in err


def test_baselines_command_lists_every_baseline():
    result = CliRunner().invoke(main, ["baselines"])
    assert result.exit_code == 0
    for b in BASELINES.values():
        assert b.name in result.stdout
    assert "890,410 (as stated)" in result.stdout and "report 001 §1.2" in result.stdout


def test_version_is_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hpsearch, version {hpsearch.__version__}"
