"""--mlflow against a real `mlflow server` (SQLite backend store, local artifact folder, on 127.0.0.1): a digits
study run by two workers and confirmed, then read back through MLflow's own client. No mock."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.search.tracking import experiment_name
from hpsearch.storage import mask

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason='no mlflow (pip install "hpsearch[mlflow]"; .ci/run installs it)')
TRIALS, EPOCHS = 4, 2


def hpsearch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` on a free port of 127.0.0.1, its runs in SQLite and its artifacts in a folder; its URI."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{folder / 'runs.db'}",
                                    "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                                    "--port", str(port), "--workers", "1"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # tens of seconds on a loaded machine
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield uri
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)


def test_without_mlflow_one_line(write_study, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = CliRunner().invoke(main, ["run", "--study", str(write_study()), "--mlflow"])
    assert result.exit_code == 2
    assert result.output.strip() == 'error: MLflow tracking (--mlflow) needs the mlflow package: pip install "hpsearch[mlflow]"'


@needs_mlflow
def test_tracking_uri_defaults(monkeypatch, tmp_path):
    from hpsearch.search.options import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert tracking_uri("") == "http://tracker:5000"
    assert tracking_uri("runs") == (tmp_path / "runs").as_uri()


@needs_mlflow
@pytest.mark.parametrize("uri", ["http://alice:s3cret@127.0.0.1:1", "postgresql://alice:s3cret@127.0.0.1:1/runs"])
def test_unreachable_server_costs_no_trial(write_study, storage, uri):
    """Nothing listens on port 1: one warning line, which shows no password, and every trial runs. MLflow alone
    would try a database for 100 s, with nine warnings of its own."""
    done = hpsearch("run", "--study", str(write_study(budget={"epochs": 1, "trials": 2})), "--storage", storage,
                    "--device", "cpu", "--mlflow", uri)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "mlflow" in line.lower() or "sqlalchemy" in line.lower()]
    assert len(said) == 1 and said[0].startswith(f"mlflow at {mask(uri)}: ") and "study goes on" in said[0]
    assert "s3cret" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


@needs_mlflow
@pytest.mark.parametrize("server", ["none", "silent"])
def test_a_database_tracking_uri_without_a_server_gives_up_in_seconds(storage, server):
    """No server on the port, or one that accepts the connection and never answers: the tracker is ready (and has
    said why it stopped) within seconds, not after MLflow's 100 s of retries or never."""
    from hpsearch.search.tracking import CONNECT_TIMEOUT_S, Tracker

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections for it; nobody ever reads them
        port = silent.getsockname()[1] if server == "silent" else 1
        started = time.monotonic()
        tracker = Tracker(f"postgresql://alice:s3cret@127.0.0.1:{port}/runs", "tiny-digits", storage)
        tracker.ready.result(timeout=120)
        waited = time.monotonic() - started
        tracker.close()
    assert tracker.failed
    assert waited < CONNECT_TIMEOUT_S + 10  # the one try, and importing nothing else


def test_a_long_mlflow_error_is_cut_at_a_word_and_never_shows_the_password():
    from hpsearch.search.tracking import WARNING_CHARS, _reason

    uri = "http://alice:s3cret%21@tracker:5000"
    said = RuntimeError(f"API request to {uri}/api/2.0/mlflow/runs/create failed with " + "exception after exception, "
                        * 20 + "\n<html>the server's page</html>")
    reason = _reason(said, uri)
    assert reason.startswith("API request to http://alice:***@tracker:5000/api/2.0/mlflow/runs/create failed")
    assert reason.endswith(" exception, …") and len(reason) <= WARNING_CHARS + 2 and "html" not in reason
    assert "s3cret" not in _reason(RuntimeError("auth failed for s3cret!"), uri)  # URL-decoded too


def with_password(server: str) -> str:
    """The server's URI with a user and password, which an MLflow server without authentication ignores."""
    return server.replace("http://", "http://alice:s3cret@")


@needs_mlflow
@pytest.mark.slow  # a server start (shared with the next test) and a run: about two minutes on 2 loaded cores
def test_mlflow_says_nothing_on_stdout_and_no_password_anywhere(server, write_study, storage):
    """MLflow prints "View run ... at URL" on stdout as each run ends, the URL with its password: not here."""
    from mlflow.tracking import MlflowClient

    done = hpsearch("run", "--study", str(write_study(name="quiet-digits", budget={"epochs": 1, "trials": 1})),
                    "--storage", storage, "--device", "cpu", "--mlflow", with_password(server))
    assert done.returncode == 0, done.stderr
    assert "View run" not in done.stdout + done.stderr and "View experiment" not in done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr and "mlflow at" not in done.stderr
    client = MlflowClient(tracking_uri=server)
    runs = client.search_runs([client.get_experiment_by_name(experiment_name("quiet-digits", storage)).experiment_id],
                              "tags.`hpsearch.role` = 'trial'")
    assert [r.info.status for r in runs] == ["FINISHED"]


@needs_mlflow
@pytest.mark.slow  # a server start and three runs: about two minutes on 2 loaded cores
def test_study_two_workers_and_confirm(server, write_study, storage, tmp_path):
    """The workers of `run --workers` and `confirm --workers` find the URI in their environment, not on their
    command line."""
    from mlflow.tracking import MlflowClient

    study_file = write_study(budget={"epochs": EPOCHS, "trials": TRIALS}, baselines=["seed002-fc"])
    ran = hpsearch("run", "--study", str(study_file), "--storage", storage, "--device", "cpu", "--workers", "2",
                   "--mlflow", with_password(server))
    assert ran.returncode == 0, ran.stderr
    confirmed = hpsearch("confirm", "--study", str(study_file), "--storage", storage, "--device", "cpu", "--top", "1",
                         "--seeds", "2", "--workers", "2", "--mlflow", with_password(server))
    assert confirmed.returncode == 0, confirmed.stderr
    assert "mlflow at" not in ran.stderr + confirmed.stderr  # no warning
    assert "s3cret" not in ran.stdout + ran.stderr + confirmed.stdout + confirmed.stderr
    study = optuna.load_study(study_name="tiny-digits", storage=storage)

    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name(experiment_name("tiny-digits", storage))
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hpsearch.role") == "study"]
    assert len(parents) == 1, "one parent run, whichever worker came first"
    parent = parents[0].info.run_id
    children = {int(r.data.tags["hpsearch.trial"]): r for r in runs if r.data.tags.get("hpsearch.role") == "trial"}
    assert len(children) == len(runs) - 1 == len(study.trials)
    for trial in study.trials:
        child = children[trial.number]
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert child.info.status == "FINISHED" and child.data.tags["hpsearch.outcome"] == "complete"
        config = trial.user_attrs["config"]  # every resolved parameter, not only the sampled ones
        assert child.data.params == {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
        assert child.data.params["optimizer"] == "sgd_nesterov"
        assert {"device", "torch", "optuna", "hpsearch"} <= child.data.tags.keys()
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
        assert child.data.metrics["test_accuracy"] == trial.user_attrs["test_accuracy"]
        assert child.data.metrics["param_count"] == trial.user_attrs["param_count"]
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == EPOCHS
    assert [r.data.tags.get("hpsearch.baseline") for r in children.values()].count("seed002-fc") == 1

    artifacts = {a.path for a in client.list_artifacts(parent)} | {
        a.path for folder in ("best", "confirm") for a in client.list_artifacts(parent, folder)}
    assert {"report.md", "best/config.yaml", "best/config.safetensors"} <= artifacts
    best = int(client.get_run(parent).data.tags["hpsearch.best_trial"])
    assert {f"confirm/trial-{best}-seed-1.json", f"confirm/trial-{best}-seed-2.json"} <= artifacts
    seeds = client.get_metric_history(parent, f"confirm/trial_{best}/val_accuracy")
    assert sorted(m.step for m in seeds) == [1, 2]
    report = Path(client.download_artifacts(parent, "report.md", str(tmp_path)))
    assert "seed002-fc" in report.read_text() and "Confirmation" in report.read_text()

    # A later run finds the same parent again.
    again = hpsearch("run", "--study", str(study_file), "--storage", storage, "--device", "cpu", "--n-trials", "1",
                     "--mlflow", server)
    assert again.returncode == 0, again.stderr
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sum(r.data.tags.get("hpsearch.role") == "study" for r in runs) == 1
    assert len(runs) == len(study.trials) + 1  # one more child, on the same parent


@needs_mlflow
def test_submit_passes_mlflow_to_every_task_in_its_environment(write_study, storage):
    result = CliRunner().invoke(main, ["submit", "--study", str(write_study()), "--storage", storage, "--jobs", "2",
                                       "--one-node", "--mlflow", "--dry-run"],
                                env={"MLFLOW_TRACKING_URI": "http://alice:s3cret@tracker:5000"})
    assert result.exit_code == 0, result.output
    assert " --mlflow &" in result.output and ': "${MLFLOW_TRACKING_URI:?' in result.output
    assert "s3cret" not in result.output and "tracker:5000" not in result.output


@needs_mlflow
def test_a_retried_copy_logs_a_child_run_naming_the_trial_it_retries(write_study, storage, tmp_path):
    from mlflow.tracking import MlflowClient

    from hpsearch.search.retries import queue_retry

    study_file = write_study(budget={"epochs": 1, "trials": 1})
    assert hpsearch("run", "--study", str(study_file), "--storage", storage, "--device", "cpu").returncode == 0
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    queue_retry(study, study.trials[0])  # as a lost trial's copy is queued
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = hpsearch("run", "--study", str(study_file), "--storage", storage, "--device", "cpu", "--mlflow", uri)
    assert done.returncode == 0 and "mlflow at" not in done.stderr and "database tables" not in done.stderr, done.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment_name("tiny-digits", storage)).experiment_id],
                              "tags.`hpsearch.role` = 'trial'")
    assert [(r.data.tags["hpsearch.trial"], r.data.tags.get("hpsearch.retries")) for r in runs] == [("1", "0")]


def test_a_trial_hpsearch_stopped_says_why_in_mlflow():
    from hpsearch.search.tracking import outcome

    stopped = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
                                        user_attrs={"stopped": "at chance after epoch 1", "epochs": 1})
    assert outcome(stopped) == "stopped: at chance after epoch 1"


@needs_mlflow
def test_a_same_named_study_in_another_storage_never_joins_the_first_ones_parent(write_study, tmp_path):
    """Two SQLite files, one study name, one tracking store: two experiments and two parents, each saying its
    storage; after `confirm` each parent's report.md is what `hpsearch report` prints (the target known)."""
    from mlflow.tracking import MlflowClient

    from hpsearch import api

    study_file = write_study(budget={"epochs": 1, "trials": 2}, target={"metric": "val_accuracy", "value": 0.99})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stores = [f"sqlite:///{tmp_path / name}" for name in ("first.db", "second.db")]
    for storage in stores:  # in this process, as a notebook would: the tracker keys each study by its storage
        api.run(study_file, storage=storage, device="cpu", mlflow=uri)
    api.confirm(study_file, storage=stores[0], device="cpu", top=1, seeds=1, mlflow=uri)
    client = MlflowClient(tracking_uri=uri)
    for storage in stores:
        experiment = client.get_experiment_by_name(experiment_name("tiny-digits", storage))
        assert experiment.tags["hpsearch.storage"] == storage
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "study"]
        assert parent.data.tags["hpsearch.storage"] == storage
        children = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
        assert sorted(int(r.data.tags["hpsearch.trial"]) for r in children) == [0, 1]  # one child each, not two
        assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
        folder = tmp_path / Path(storage).stem
        folder.mkdir()
        shown = Path(client.download_artifacts(parent.info.run_id, "report.md", str(folder))).read_text()
        report = hpsearch("report", "--study", "tiny-digits", "--storage", storage)
        assert shown.rstrip("\n") == report.stdout.rstrip("\n")
        assert "target unknown" not in shown and ("Confirmed winner" in shown) == (storage == stores[0])


@needs_mlflow
def test_a_copy_resumed_from_its_checkpoint_carries_the_trials_whole_curve(write_study, storage, tmp_path):
    from mlflow.tracking import MlflowClient

    from hpsearch import api
    from tests.search.test_run import InterruptAfterEpoch

    class Interrupting(InterruptAfterEpoch):
        """Ctrl-C after trial #0's second epoch, as the display (the first to hear of it) would see it."""

        def trial_finished(self, study, trial) -> None: ...

    study_file = write_study(budget={"epochs": 3, "trials": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        api.run(study_file, storage=storage, device="cpu", mlflow=uri,
                progress=lambda plan: contextlib.nullcontext(Interrupting(0, 2)))
    api.run(study_file, storage=storage, device="cpu", mlflow=uri, n_trials=1)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment_name("tiny-digits", storage)).experiment_id],
                              "tags.`hpsearch.role` = 'trial'")
    copy = next(r for r in runs if r.data.tags["hpsearch.trial"] == "1")
    assert copy.data.tags["hpsearch.retries"] == "0" and copy.data.tags["hpsearch.outcome"] == "complete"
    for key in ("val_accuracy", "train_loss", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(copy.info.run_id, key)) == [1, 2, 3]
