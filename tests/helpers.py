"""Helpers the test modules import (fixtures live in conftest.py): the command line in-process, and
hpsearch as real processes on a real storage for the tests that need a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hpsearch.cli import main


def invoke(*args: str):
    """`hpsearch ARGS` in this process, through click's runner."""
    return CliRunner().invoke(main, list(args))


def outcome(result) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of an invoke() result, as finish() gives them for a process."""
    return result.exit_code, result.stdout, result.stderr


def assert_clean_error(result, *fragments: str) -> None:
    """Exit 2, no traceback, every stderr line an `error: ` line, each fragment said."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    for fragment in fragments:
        assert fragment in result.stderr


def files_in(folder):
    """Every path under `folder`, relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def stored_trial(value: float, params: dict | None = None, **attrs) -> optuna.trial.FrozenTrial:
    """A completed trial as a run stores it, for summaries that need no training."""
    params = {"lr": 0.1} if params is None else params
    dists = {"lr": FloatDistribution(0.01, 0.2), "head_widths": CategoricalDistribution(["[]", "[256]"])}
    return optuna.trial.create_trial(
        value=value, params=params, distributions={k: dists[k] for k in params},
        user_attrs={"test_accuracy": value, "param_count": 1000, "epochs": 3, "seconds": 1.0, "device": "cpu", **attrs})


FRONT_DIGITS = {"name": "front-digits", "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
                "objectives": ["val_accuracy", "params"], "budget": {"epochs": 4, "trials": 10},
                "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                "space": {"lr": {"float": [1.0e-5, 0.2], "log": True}, "width": {"int": [4, 16]}},
                "fixed": {"blocks": 1, "convs_per_block": 1, "batchnorm": False, "batch_size": 128}}


class WritesAFile:
    """A pickled object that an unsafe load (torch.load without weights_only) would run code for: unpickling
    calls open(path, "w"), which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


# --- real processes -------------------------------------------------------------------------------

POSTGRES = os.environ.get("HPSEARCH_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="set HPSEARCH_TEST_POSTGRES to a PostgreSQL URL "
                                                          "(.ci/run starts a server and sets it)")
# Slow enough per epoch to be caught mid-trial, still seconds in all.
SLOW = {"fixed": {"blocks": 1, "convs_per_block": 2, "width": 32, "batch_size": 16, "batchnorm": False,
                  "optimizer": "sgd_nesterov"},
        "space": {"lr": {"float": [0.01, 0.1], "log": True}}}


def _as_a_foreground_job() -> None:
    """Ctrl-C reaches the command: a suite started in the background by a shell without job control
    (`cmd &`, as some CI runners and nohup wrappers do) inherits SIGINT ignored, which survives exec,
    and hpsearch, like any well-behaved program, leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hpsearch(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m hpsearch ARGS` as a process of its own, its output piped unless `kwargs` say where."""
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], preexec_fn=_as_a_foreground_job,
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kwargs})


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def load(storage: str, name: str = "tiny-digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def trial_in_training(worker: subprocess.Popen, storage: str) -> optuna.trial.FrozenTrial | None:
    """The trial the hpsearch process `worker` is training on `storage`, once it has reported an epoch."""
    assert worker.poll() is None, worker.communicate()
    try:
        trials = load(storage).trials
    except KeyError:
        return None
    return next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values
                 and t.user_attrs.get("worker", "").endswith(f":{worker.pid}")), None)


def first_epochs_done(process: subprocess.Popen, storage: str, trials: int = 1):
    """A condition for wait_for: the first `trials` trials have each reported an epoch."""

    def done() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            started = load(storage).trials
            return len(started) >= trials and all(t.intermediate_values for t in started[:trials])
        except KeyError:
            return False

    return done


def assert_exact_total(study: optuna.Study, total: int) -> None:
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials].count(TrialState.FAIL) == 0, [t.user_attrs.get("failure") for t in trials]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len(trials) == total
    assert sorted(t.number for t in trials) == list(range(total))
