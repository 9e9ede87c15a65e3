"""Ctrl-C and SIGTERM ask for a stop that the work takes at a safe point (a training step, a decoded image, a poll),
never inside a database call; a second Ctrl-C stops at once; a run stopped by either records its trial so the next
run resumes it: real signals, a real SQLite storage, real training, a real process."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time

import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState

from hpsearch import stopping
from hpsearch.errors import Terminated
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import datasets, devicedata, imagefolder
from hpsearch.training.models import build_model
from hpsearch.training.space import model_config, train_config
from hpsearch.training.train import fit
from tests.conftest import write_image_folder
from tests.helpers import SLOW, finish, first_epochs_done, hpsearch, load, wait_for


def signal_after(seconds: float, sig: int = signal.SIGTERM) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), sig))
    timer.start()
    return timer


def can_write_at_once(db: str) -> bool:
    """Whether another process could commit now, or would wait for a lock this one still holds."""
    other = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_a_signal_during_storage_reads_leaves_no_lock_and_a_working_storage(tmp_path):
    """Raised mid-query, an interrupt kept a half-read cursor (and its SQLite lock) alive in its traceback: a run's
    workers then waited on the lock past their grace and were killed with their trials RUNNING. Sixty signals at
    random moments of a polling loop that checks for a stop between polls, as `run --workers` polls."""
    db = str(tmp_path / "signals.db")
    study = optuna.create_study(study_name="polled", storage=f"sqlite:///{db}", direction="maximize")
    for value in range(40):
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("note", "x" * 50)
        trial.report(value / 40, 1)
        study.tell(trial, value / 40)
    rng = random.Random(0)
    for attempt in range(60):  # a block each, as each command stopped by a signal has its own
        with stopping.on_signals():
            signal_after(rng.uniform(0.0005, 0.02))
            deadline = time.monotonic() + 30  # the loop ends with the signal; the margin is for a loaded machine,
            # where a timer firing after the deadline would stop the block outside pytest.raises
            with pytest.raises(Terminated):
                while time.monotonic() < deadline:
                    study.get_trials(deepcopy=False)
                    stopping.check()  # between polls
                    time.sleep(0.01)
        assert can_write_at_once(db), f"signal {attempt}: a lock outlived the interrupted query"
        study.set_user_attr("attempt", attempt)  # the interrupted process's own session still works
    assert study.user_attrs["attempt"] == 59 and len(study.get_trials()) == 40


def test_a_stop_no_safe_point_took_is_raised_where_the_block_ends_not_lost(tmp_path):
    """A SIGTERM that arrives during the last query lets the query finish, is raised when the block ends, and never
    reaches the handler put back afterwards (here the default one, which would end the test process)."""
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'slow.db'}")
    slow = sqlalchemy.text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
                           "SELECT count(*) FROM c")
    counted = []
    with engine.connect() as connection:
        with pytest.raises(Terminated):
            with stopping.on_signals():
                signal_after(0.02)
                counted.append(connection.execute(slow).scalar())
    assert counted == [2000000]  # the query ran to its end
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    stopping.check()  # the block's stop went with it


def test_a_second_sigterm_is_the_same_request_and_leaves_the_clean_up_whole():
    """A worker under SLURM hears SIGTERM twice within milliseconds (from SLURM and from its batch script). The
    second, raised as the `except` that records the trial began, skipped the record (the trial failed with no
    reason). It asks for nothing more: the clean-up runs to its end, and its own lock waits (stopping.check) do not
    raise the stop again."""
    recorded = []
    with pytest.raises(Terminated):
        with stopping.on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)
                stopping.check()  # the first safe point
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGTERM)  # another, as the clean-up begins
                time.sleep(0.1)  # the handler runs here
                stopping.check()
                recorded.append("the trial's failure")
                raise
    assert recorded == ["the trial's failure"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.fixture
def ctrl_c_reaches_us():
    """Python's own Ctrl-C handler, as in a terminal: a suite started in the background inherits SIGINT ignored,
    which the block would leave ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_asks_once_and_says_so_and_a_second_stops_at_once(ctrl_c_reaches_us, capfd):
    said = []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with stopping.on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # no safe point: the first Ctrl-C only asks
            said.append(capfd.readouterr().err)
            signal_after(0.2, signal.SIGINT)
            time.sleep(30)  # the second raises here, at once
    assert time.monotonic() - started < 10
    assert said == ["stopping after the current step; Ctrl-C again to stop at once\n"]
    assert capfd.readouterr().err == ""  # said once
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def test_training_stops_before_its_next_step_and_a_library_caller_may_ask_too():
    """A signal during an epoch stops fit at its next step (the epoch never ends). Without the handler, as a
    library, a caller's request() does the same, once: the next fit trains to its end."""
    data = devicedata.load(DatasetSpec("digits"), torch.device("cpu"))
    params = {"blocks": 1, "convs_per_block": 1, "width": 8, "batch_size": 32}
    epochs = []

    def fit_asking(ask) -> None:
        """fit, asking for a stop once its pace is measured, a few steps into the first epoch (on_pace)."""
        epochs.clear()
        torch.manual_seed(0)
        model = build_model(model_config(params, data.shape, data.num_classes))
        fit(model, data, train_config(params, epochs=2, seed=0), on_epoch=epochs.append, on_pace=lambda s: ask())

    with pytest.raises(Terminated), stopping.on_signals():
        fit_asking(lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert epochs == []
    with pytest.raises(KeyboardInterrupt):
        fit_asking(stopping.request)
    assert epochs == []
    fit_asking(lambda: None)
    assert [stats.epoch for stats in epochs] == [1, 2]


def test_decoding_an_image_folder_stops_between_images_and_writes_no_cache(tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=20)
    decoded = []

    def progress(what, done, total) -> None:
        decoded.append(done)
        if done == 3:
            stopping.request(signal.SIGTERM)

    with pytest.raises(Terminated):
        imagefolder.read_image_folder(root, (16, 16), progress=progress)
    assert decoded == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets"]  # no cache, no partial file


def test_a_download_has_no_safe_point_so_a_signal_stops_it_at_once_and_its_files_go(tmp_path):
    """torchvision downloads without a safe point to check: there a SIGTERM stops at once (not after the whole
    archive), and what the download left is removed."""
    data_dir = tmp_path / "data"

    def fetch() -> None:
        data_dir.mkdir()
        (data_dir / "cifar-10-python.tar.gz").write_bytes(b"the first megabytes")
        time.sleep(30)

    started = time.monotonic()
    with pytest.raises(Terminated), stopping.on_signals():
        signal_after(0.2)
        datasets._download("cifar10", fetch, data_dir, "put the files there by hand")
    assert time.monotonic() - started < 10
    assert not data_dir.exists()


@pytest.mark.parametrize("sig, status, reason", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                 (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_records_the_trial_and_the_next_run_resumes_it(write_study, storage, sig, status, reason):
    # 20 epochs: the signal must land inside a trial even when a quiet machine trains one in a second
    path = write_study(budget={"epochs": 20, "trials": 3}, **SLOW)
    process = hpsearch("run", "--study", str(path), "--storage", storage, "--device", "cpu")
    wait_for(first_epochs_done(process, storage))
    process.send_signal(sig)
    code, _, err = finish(process)
    assert code == status and "Traceback" not in err, err
    assert err.count(stopping.SAID[sig]) == 1
    assert f"{reason}: run the same command again to resume the study" in err
    trials = load(storage).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["failure"].startswith(reason)
    assert trials[-1].state == TrialState.WAITING and trials[-1].params == trials[0].params

    study = run(load_spec(path), storage, RunOptions(device="cpu", n_trials=1))
    resumed = study.trials[len(trials) - 1]
    assert resumed.state == TrialState.COMPLETE and resumed.user_attrs["resumed_from_epoch"] >= 1
