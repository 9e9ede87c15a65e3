"""Every study and trial in MLflow (`--mlflow [URI]`): one experiment and one parent run for the study, one child
run per trial with its config, its curve and its outcome.

A study is known by its storage as well as its name (storage_identity): two studies named alike in two storages
(another SQLite file, another database; two people's digits-quick on one tracking server) are two studies. Both
the experiment's name and the parent's tags say which storage the study is in, its password masked.

The parent run is found again by its tags (TAG_STUDY, TAG_STORAGE, TAG_ROLE) by every later run and every worker,
on any machine: each looks for it under the study lock (storage.shared_lock) and makes it only if none
exists, then looks again, so that two makers without a shared lock (storages that have none) settle on
the oldest and remove their own.

The tracker never costs a trial. Every call to MLflow runs on one background thread, in the order the
events came, so a slow server adds nothing to an epoch; a trial's epoch metrics go out together at most
every SEND_EVERY_S, as many short epochs would otherwise keep that thread busy beside the training. The
first call that fails says so in one warning line and the tracker stops there for the rest of the process,
while the study goes on. MLflow's HTTP client retries for minutes by default; TIMEOUTS shorten that unless
the environment sets its own. A database tracking URI's server is tried once, waiting at most CONNECT_TIMEOUT_S,
before MLflow opens it (MLflow alone retries for 100 s).

What the tracker says never holds the URI's password (storage.mask, storage.scrub), and MLflow's own "View run
at URL" lines are switched off: stdout is for results. Processes started to share the work get the URI in
their environment ($MLFLOW_TRACKING_URI, workers.worker_environment), not on their command line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.search.objective import RunEvents, device_name
from hpsearch.storage import mask, optuna_private, scrub, shared_lock, sqlite_file
from hpsearch.studyfile import catalog
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.train import EpochStats

log = logging.getLogger(__name__)

TIMEOUTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # seconds; at most about half a minute to give up on a server
QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # MLflow's "View run at URL" lines: stdout, with a password
CONNECT_TIMEOUT_S = 5  # a database tracking URI's one try (the drivers of PostgreSQL and MySQL take this argument)
DATABASES = ("postgresql", "mysql")
WARNING_CHARS = 300  # of an MLflow error's first line, which may hold a whole HTTP response
TAG_STUDY, TAG_ROLE, TAG_TRIAL, TAG_RETRIES = "hpsearch.study", "hpsearch.role", "hpsearch.trial", "hpsearch.retries"
TAG_STORAGE = "hpsearch.storage"  # storage_identity: which storage the study is in
TAG_OUTCOME, TAG_BASELINE = "hpsearch.outcome", "hpsearch.baseline"
PARENT_TAG = "mlflow.parentRunId"  # what makes a run nested in MLflow's UI
EPOCH_METRICS = ("val_accuracy", "train_loss", "epoch_seconds")  # a child run's metrics at every epoch (step)
SEND_EVERY_S = 5.0  # a trial's epoch metrics go out at most this often, and at its end: a digits epoch lasts 0.1 s


class Tracker(RunEvents):
    """A run's events and Optuna's trial-finished callback, sent to MLflow; `close()` waits for what is queued."""

    def __init__(self, uri: str, study_name: str, storage_url: str):
        for name, value in TIMEOUTS.items():
            os.environ.setdefault(name, value)
        os.environ.update(QUIET)
        self.uri = uri
        self.study_name = study_name
        self.storage_url = storage_url
        self.storage = storage_identity(storage_url)
        self.experiment_name = experiment_name(study_name, storage_url)
        self.client = None  # made on the tracker's thread: even a bad URI must not end the run
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self.failed = False
        self.study: optuna.Study | None = None
        self.experiment_id: str | None = None
        self.parent: str | None = None
        self.children: dict[int, str] = {}  # trial number -> its child run, while it runs
        self.unsent: dict[int, list] = {}  # trial number -> epoch metrics not yet sent
        self.sent_at: dict[int, float] = {}  # trial number -> when its epoch metrics last went out
        self.tags: dict[str, str] = {}  # the worker's device and versions, on every child run
        # Importing mlflow and opening its store take seconds of CPU: begun now, while torch loads and the data
        # is read, and awaited before the first trial, so that none of it lands in a trial's time.
        self.ready = self.pool.submit(self._guarded, self._opened)

    # Everything the main thread calls only queues work.

    def _queue(self, action, *args) -> None:
        if not self.failed:
            self.pool.submit(self._guarded, action, *args)

    def _guarded(self, action, *args) -> None:
        if self.failed:
            return
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - a tracker's failure must never end a trial
            self.failed = True
            log.warning("mlflow at %s: %s; tracking stops here, the study goes on", mask(self.uri),
                        _reason(exc, self.uri, self.storage_url))

    def study_opened(self, study: optuna.Study, data: DeviceData | None = None) -> None:
        import torch

        self.study = study
        if data is not None:
            self.tags = {"device": device_name(data.train_x.device), "dataset_source": data.source}
        self.tags |= {"torch": torch.__version__, "optuna": optuna.__version__, "hpsearch": version("hpsearch")}
        self.ready.result()  # at most TIMEOUTS' half minute, then a warning

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self._queue(self._start_trial, number, dict(params))

    def epoch_finished(self, number: int, stats: EpochStats) -> None:
        self._queue(self._log_epoch, number, stats, int(time.time() * 1000))

    def trial_resumed(self, number: int, copy_of: int | None, epoch: int, restored: list[EpochStats]) -> None:
        """The copy's run carries the trial's whole curve: the epochs its checkpoint restored, then its own."""
        self._queue(self._carry_curve, number, list(restored), int(time.time() * 1000))

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback: the trial's outcome and final figures, and its child run ended."""
        self._queue(self._end_trial, trial)

    def confirmed(self, trial: FrozenTrial, result: record.SeedResult) -> None:
        """A confirm seed's result, on the parent run as it arrives, with the trial's interval so far."""
        self._queue(self._log_confirmed, trial.number, result)

    def summarize(self, study: optuna.Study, spec=None) -> None:
        """On the parent run: the baselines-versus-search table (with confirm's, once there is one), the best trial's
        exported config and its kept weights. Every process that ends a run or a confirm writes them again."""
        self._queue(self._summarize, study, spec)

    def close(self) -> None:
        """Wait for what is queued; a child run still open (its trial interrupted) ends as KILLED."""
        self._queue(self._end_open_children)
        self.pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Below, on the tracker's thread.

    def _opened(self) -> None:
        """The experiment and the parent run, found or made once per process."""
        if self.parent is None:
            self._open()

    def _open(self) -> None:
        _reach_database(self.uri)
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its "creating initial database tables" lines
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name, tags={TAG_STUDY: self.study_name, TAG_STORAGE: self.storage})
            except MlflowException:  # another worker made it first
                self.experiment_id = self.client.get_experiment_by_name(self.experiment_name).experiment_id
        else:
            self.experiment_id = experiment.experiment_id
        lock = shared_lock(self.storage_url, self.study_name)
        lock.acquire()
        try:
            found = self._parents()
            if not found:
                made = self.client.create_run(self.experiment_id, run_name=self.study_name,
                                              tags={TAG_STUDY: self.study_name, TAG_STORAGE: self.storage,
                                                    TAG_ROLE: "study"})
                found = self._parents()
                for loser in found[1:]:  # two makers without a shared lock: the oldest stays
                    if loser.info.run_id == made.info.run_id:
                        self.client.delete_run(loser.info.run_id)
        finally:
            lock.release()
            lock.close()
        self.parent = found[0].info.run_id

    def _parents(self) -> list:
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{TAG_ROLE}` = 'study' and tags.`{TAG_STUDY}` = '{_quoted(self.study_name)}' "
                                  f"and tags.`{TAG_STORAGE}` = '{_quoted(self.storage)}'",
            order_by=["attributes.start_time ASC"], max_results=10)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def _start_trial(self, number: int, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._opened()
        trial = optuna_private.trial_by_number(self.study, number)
        baseline, retried = record.baseline(trial), record.retry_history(trial)
        tags = {PARENT_TAG: self.parent, TAG_STUDY: self.study_name, TAG_STORAGE: self.storage, TAG_ROLE: "trial",
                TAG_TRIAL: str(number), **self.tags, "worker": record.worker(trial) or ""}
        if baseline:
            tags[TAG_BASELINE] = baseline
        if retried:
            tags[TAG_RETRIES] = str(retried[-1])
        name = f"trial {number}" + (f" {baseline}" if baseline else "")
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.children[number] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, _text(v)) for k, v in sorted(params.items())])

    def _log_epoch(self, number: int, stats: EpochStats, at_ms: int) -> None:
        if (run_id := self.children.get(number)) is None:
            return
        self.unsent.setdefault(number, []).extend(_epoch_metrics(stats, at_ms))
        if time.monotonic() - self.sent_at.get(number, float("-inf")) >= SEND_EVERY_S:
            self.client.log_batch(run_id, metrics=self.unsent.pop(number))
            self.sent_at[number] = time.monotonic()

    def _carry_curve(self, number: int, restored: list[EpochStats], at_ms: int) -> None:
        if (run_id := self.children.get(number)) is not None:
            self.client.log_batch(run_id, metrics=[m for stats in restored for m in _epoch_metrics(stats, at_ms)])

    def _end_trial(self, trial: FrozenTrial) -> None:
        from mlflow.entities import Metric, RunTag

        if (run_id := self.children.pop(trial.number, None)) is None:
            return
        did, now = record.outcome(trial), int(time.time() * 1000)
        figures = {"final_val_accuracy": did.val_accuracy, "test_accuracy": did.test_accuracy,
                   "param_count": did.param_count, "train_seconds": did.train_seconds, "seconds": did.seconds,
                   "epochs": did.epochs_trained}
        metrics = [*self.unsent.pop(trial.number, []), *(
            Metric(name, float(value), now, 0) for name, value in figures.items() if isinstance(value, (int, float)))]
        self.sent_at.pop(trial.number, None)
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(TAG_OUTCOME, outcome(trial))])
        self.client.set_terminated(run_id, "FAILED" if trial.state == TrialState.FAIL else "FINISHED")

    def _log_confirmed(self, number: int, result: record.SeedResult) -> None:
        from mlflow.entities import Metric

        self._opened()
        now, seed, prefix = int(time.time() * 1000), result.seed, f"confirm/trial_{number}"
        metrics = [Metric(f"{prefix}/{key}", value, now, seed) for key, value in
                   (("val_accuracy", result.val_accuracy), ("test_accuracy", result.test_accuracy)) if value is not None]
        summary = record.study_record(self.study).confirmations.get(number)
        spreads = {"val": summary.val, "test": summary.test} if summary is not None else {}
        for split, spread in spreads.items():
            spread = spread or {}
            if spread.get("mean") is not None:
                metrics.append(Metric(f"{prefix}/{split}_mean", spread["mean"], now, seed))
            if spread.get("ci95"):
                metrics += [Metric(f"{prefix}/{split}_ci95_low", spread["ci95"][0], now, seed),
                            Metric(f"{prefix}/{split}_ci95_high", spread["ci95"][1], now, seed)]
        self.client.log_batch(self.parent, metrics=metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{number}-seed-{seed}.json"
            path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
            self.client.log_artifact(self.parent, str(path), "confirm")

    def _summarize(self, study: optuna.Study, spec) -> None:
        from hpsearch.results import export, ranking, report
        from hpsearch.results.artifacts import trial_weights_path

        self._opened()
        spec = spec or catalog.remembered_spec(study.study_name, record.study_record(study).spec_path)  # as report
        best = ranking.best_trial(ranking.study_trials(study))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "report.md").write_text(report.markdown(
                study, spec.baselines if spec else (), epochs=spec.budget.epochs if spec else None, spec=spec))
            if best is not None:
                (folder / "best").mkdir()
                export.write_config(export.trial_config(study, best, self.storage_url, spec),
                                    folder / "best" / "config.yaml", trial_weights_path(self.storage_url, best))
                self.client.set_tag(self.parent, "hpsearch.best_trial", str(best.number))
            self.client.log_artifacts(self.parent, str(folder))

    def _end_open_children(self) -> None:
        for number, run_id in self.children.items():
            if unsent := self.unsent.pop(number, None):
                self.client.log_batch(run_id, metrics=unsent)
            self.client.set_tag(run_id, TAG_OUTCOME, "interrupted: its copy resumes in a later run")
            self.client.set_terminated(run_id, "KILLED")
        self.children.clear()


def _epoch_metrics(stats: EpochStats, at_ms: int) -> list:
    """An epoch's metrics on a trial's child run, the epoch as their step."""
    from mlflow.entities import Metric

    return [Metric(key, value, at_ms, stats.epoch)
            for key, value in zip(EPOCH_METRICS, (stats.val_accuracy, stats.train_loss, stats.seconds))]


def storage_identity(storage_url: str) -> str:
    """The storage a study is in, as MLflow records it: an SQLite file by its absolute path (the same file from any
    folder), a server's URL with its password masked."""
    db = sqlite_file(storage_url)
    return f"sqlite:///{db.resolve()}" if db is not None else mask(storage_url)


def experiment_name(study_name: str, storage_url: str) -> str:
    """The study's MLflow experiment: 'NAME in STORAGE' (storage_identity)."""
    return f"{study_name} in {storage_identity(storage_url)}"


def _reach_database(uri: str) -> None:
    """Connect once to the server of a database tracking URI (PostgreSQL, MySQL), waiting at most CONNECT_TIMEOUT_S,
    or raise the driver's error. MLflow would try ten times over 100 s, a warning each time, and wait without end
    on a server that accepts the connection and never answers."""
    if uri.partition(":")[0].partition("+")[0] not in DATABASES:
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        engine.connect().close()
    finally:
        engine.dispose()


def _reason(exc: BaseException, *urls: str) -> str:
    """An MLflow error's first line, without the passwords of `urls`, cut at a word to at most WARNING_CHARS."""
    text = str(exc)
    for url in urls:
        text = scrub(text, url)
    first = next(iter(text.strip().splitlines()), type(exc).__name__)
    return first if len(first) <= WARNING_CHARS else first[:WARNING_CHARS].rsplit(" ", 1)[0] + " …"


def outcome(trial: FrozenTrial) -> str:
    """complete, pruned at epoch N, over a limit (which), stopped (why), or failed (why), in a few words."""
    did = record.outcome(trial)
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if did.over_limit is not None:
        return f"over a limit: {did.over_limit}"
    if did.stopped is not None:
        return f"stopped: {did.stopped}"
    if trial.state == TrialState.PRUNED:
        return f"pruned at epoch {'?' if did.epochs_trained is None else did.epochs_trained}"
    return f"failed: {did.failure or 'no reason recorded'}"


def _text(value: Any) -> str:
    """A parameter's value as MLflow stores it (text, at most 6,000 characters)."""
    return (value if isinstance(value, str) else json.dumps(value))[:6000]


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
