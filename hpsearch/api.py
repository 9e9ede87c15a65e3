"""hpsearch as a library: each `hpsearch` command is one call of this module, so a notebook or a script gets
what the command line does, as values.

    from hpsearch import api
    api.run("digits-quick", n_trials=5, device="cpu")
    api.best("digits-quick").val_accuracy
    model = api.load_model(study="digits-quick")

A study is a shipped study's name, a study file's path, or a dict holding a study file's keys; a storage is a
URL (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db in the current folder). Nothing here prints: results
come back as values, and expected problems raise hpsearch.errors.HpsearchError (SpecError for a study file) with
one line per problem that names the fix. A run, a confirmation or a retraining reports its progress only to the
`progress` it is given: a function called with the plan once it is made, returning a context manager whose value
receives the events (the command line's live displays are such context managers). Each function imports the
layers it uses when it runs: reading a study (summary, best, front, report, report_rows, export without
weights) never imports torch.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_HOST,
    DEFAULT_KEEP,
    DEFAULT_PORT,
)
from hpsearch.errors import HpsearchError
from hpsearch.studyfile import catalog
from hpsearch.studyfile.types import StudySpec

if TYPE_CHECKING:
    import optuna
    import torch

    from hpsearch.results.export import TrialConfig
    from hpsearch.results.status import StatusReader, StudyStatus
    from hpsearch.record import SeedResult
    from hpsearch.search.confirm import ConfirmPlan, Job
    from hpsearch.search.finish import RunEnd
    from hpsearch.search.options import RunOptions
    from hpsearch.search.slurm import ArrayJob
    from hpsearch.search.stop import StopDone
    from hpsearch.search.workers import WorkerSlot
    from hpsearch.training.devicedata import DeviceData
    from hpsearch.training.fetch import Source
    from hpsearch.training.retrain import Retrained, TrainPlan

__all__ = ["Confirmed", "Exported", "Report", "ReportTables", "RunPlan", "RunResult", "Submitted", "Table", "Trained",
           "Trial", "best", "confirm", "dashboard", "data_sources", "export", "fetch", "front", "load_data", "load_model",
           "load_study", "report", "report_rows", "run", "status", "status_reader", "stop", "studies", "submit", "summary",
           "train"]

Study = str | Path | Mapping[str, Any]  # a shipped study's name, a study file, or a study file's keys as a dict
DICT_PATH = "the study dict"  # what messages call a study given as a dict; relative paths in it start here


# --- the study ------------------------------------------------------------------------------------------------

def load_study(study: Study) -> StudySpec:
    """The study, validated: every problem of the file at once in one SpecError. Nothing is built (no sampler,
    no model), so this never imports torch; run() checks the rest before it trains."""
    if isinstance(study, Mapping):
        from hpsearch.studyfile.schema import parse_spec

        return parse_spec(dict(study), path=DICT_PATH, default_name=None)
    return catalog.load_study_spec(str(study))


def load_data(study: Study, *, device: str = "cpu", data_dir: Path | None = None) -> DeviceData:
    """The study's dataset split as its trials see it: train_x, train_y, val_x, val_y, test_x, test_y as tensors
    (uint8 images, class labels) on `device`, and normalize(images), which makes them a model's input."""
    from hpsearch.training import devicedata

    return devicedata.load(load_study(study).dataset, devicedata.resolve_device(device), data_dir)


def studies() -> list[StudySpec]:
    """The studies shipped with hpsearch (`hpsearch studies`), by name."""
    return [catalog.load_study_spec(str(path)) for path in catalog.shipped_study_files()]


def data_sources() -> list[Source]:
    """The datasets fetch() downloads (`hpsearch fetch`): each one's official files, size, sha256, licence, citation
    and the folder it becomes under the data folder."""
    from hpsearch.training.fetch import SOURCES

    return list(SOURCES.values())


def fetch(name: str, *, data_dir: Path | None = None, mirror: str | None = None,
          progress: Callable[[str, int, int], None] | None = None) -> Path:
    """`hpsearch fetch NAME`: dataset `name` downloaded from its official source (or `mirror`, default
    $HPSEARCH_DATA_MIRROR: a folder URL holding the same files), each file checked by size and sha256, and laid out
    in the data folder (default: $HPSEARCH_DATA_DIR, else ./data) where the studies read it; returns its folder.
    `progress(what, done, total)` hears of the bytes received and the files unpacked."""
    from hpsearch.defaults import default_data_dir
    from hpsearch.training import fetch as fetch_module

    if name not in fetch_module.SOURCES:
        raise HpsearchError(f"fetch {name!r}: not one of {', '.join(fetch_module.SOURCES)}")
    return fetch_module.fetch(fetch_module.SOURCES[name], Path(data_dir) if data_dir else default_data_dir(),
                              mirror=mirror, progress=progress or (lambda what, done, total: None))


# --- running ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """What a run is about to do, for its progress display to show: one process, or several workers."""

    spec: StudySpec
    storage: str  # the URL, as given (it may hold a password: storage.mask it before showing it)
    options: RunOptions
    slots: tuple[WorkerSlot, ...]  # one per process; a single slot without a GPU runs in this process
    total: int  # the trials the run counts to: --until's total, --n-trials, or the study's budget

    @property
    def in_workers(self) -> bool:
        return len(self.slots) > 1 or self.slots[0].gpu is not None


@dataclass(frozen=True)
class RunResult:
    """What run() did: the study as stored now, the run's own outcome, and the study's summary."""

    study: optuna.Study
    spec: StudySpec
    run_id: str
    end: RunEnd | None  # what the run did (None for a worker whose run finishes elsewhere: finish=False)
    summary: dict[str, Any]  # what `best --format json` prints

    @property
    def best(self) -> Trial | None:
        return None if self.summary["best"] is None else Trial(**self.summary["best"])


def run(study: Study, *, storage: str | None = None, n_trials: int | None = None, until: int | None = None,
        timeout: float | None = None, seed: int | None = None, device: str = "auto", data_dir: Path | None = None,
        stop_at_target: bool = True, heartbeat: int = DEFAULT_HEARTBEAT_S, keep_weights: int = DEFAULT_KEEP,
        mlflow: str | None = None, accept_change: bool = False, workers: int | None = None, gpus: tuple[int, ...] = (),
        trials_per_gpu: int | None = None, run_id: str | None = None, finish: bool = True,
        progress: Callable[[RunPlan], contextlib.AbstractContextManager] | None = None) -> RunResult:
    """`hpsearch run` (and `hpsearch worker`): add trials to the study, continuing it where it is stored already.

    Options as the command's, and submit()'s: n_trials trials, or `until` the study holds that many finished ones;
    `timeout` seconds; stop at the study's target unless stop_at_target=False; `workers`
    processes, or one per GPU of `gpus` times `trials_per_gpu`; mlflow="" logs to $MLFLOW_TRACKING_URI (else
    ./mlflow.db), a URI to that server. A run in this process reports to the value of progress(plan): the
    RunEvents methods and trial_finished(study, trial); a run in workers, polled(trials), trial_ended(trial,
    worker) and echo(line), told of a worker killed outright and started again. `finish=False` is for a worker of a larger run, which ends it: no dashboard
    note, no MLflow summary, no RunEnd.
    """
    spec = _checked(study, n_trials, until, mlflow)
    import torch

    from hpsearch.search import preflight
    from hpsearch.search import run as run_module
    from hpsearch.search.options import RunOptions
    from hpsearch.search.workers import plan_workers
    from hpsearch.storage import storage_url

    url = storage_url(storage)
    tracker = _tracker(mlflow, spec.name, url)
    options = RunOptions(n_trials=n_trials, until=until, timeout=timeout, device=device, seed=seed,
                         stop_at_target=stop_at_target, data_dir=data_dir, heartbeat=heartbeat,
                         keep_weights=keep_weights, run_id=run_id or uuid.uuid4().hex,
                         mlflow=tracker and tracker.uri, accept_change=accept_change)
    slots = plan_workers(workers, gpus, trials_per_gpu, device, torch.cuda.device_count())
    plan = RunPlan(spec, url, options, tuple(slots), until or n_trials or spec.budget.trials)
    if plan.in_workers:
        if isinstance(study, Mapping):
            raise HpsearchError("workers start from a study file: write the dict to a .yaml file and run that")
        preflight.check_storage(spec, url, heartbeat=heartbeat, accept_change=accept_change)  # before any starts
    with tracker or contextlib.nullcontext():
        with progress(plan) if progress else contextlib.nullcontext() as shown:
            if plan.in_workers:
                stored = _run_workers(plan, shown)
            else:
                stored = run_module.run(spec, url, options, **_events(shown, tracker))
        if tracker and finish:
            tracker.summarize(stored, spec)
    if not finish:
        from hpsearch.results.trials import summarize

        return RunResult(stored, spec, options.run_id, None, summarize(stored))
    from hpsearch.search.finish import finish as finish_run

    end = finish_run(stored, spec, options)
    return RunResult(stored, spec, options.run_id, end, end.summary)


def _run_workers(plan: RunPlan, shown) -> optuna.Study:
    """Start the worker processes and report their trials from the storage until they all exit."""
    from hpsearch.search.workers import run_workers, watch

    pool = run_workers(plan.spec, plan.storage, plan.options, list(plan.slots))
    pool.supervise(lambda: watch(pool, plan.spec.name, plan.storage,
                                 shown.trial_ended if shown else lambda trial, worker: None,
                                 shown.polled if shown else lambda trials: None,
                                 on_lost=shown.echo if shown else lambda said: None))
    pool.remove_logs()
    return _stored(plan.spec.name, plan.storage)


def _events(shown, tracker) -> dict:
    """search.run.run's events and Optuna callbacks: the display's and the tracker's, where there are these."""
    from hpsearch.search.objective import EventsTo

    targets = [target for target in (shown, tracker) if target is not None]
    return {"events": EventsTo(*targets), "callbacks": [target.trial_finished for target in targets]}


def _checked(study: Study, n_trials: int | None, until: int | None, mlflow: str | None, *,
             models: bool = True) -> StudySpec:
    """What run() and submit() check before anything starts: their options, the MLflow extra where asked for, and
    the study with the checks that build its sampler, pruner and (with `models`, which loads torch) its models
    (search/preflight.py)."""
    if n_trials is not None and until is not None:
        raise HpsearchError("give n_trials (trials to add) or until (a total to reach), not both")
    _check_mlflow(mlflow)
    spec = load_study(study)
    from hpsearch.search import preflight

    preflight.check(spec, models=models)
    return spec


def _check_mlflow(given: str | None) -> None:
    """MLflow asked for without the package: one line, before anything slow loads."""
    import importlib.util

    if given is not None and importlib.util.find_spec("mlflow") is None:
        raise HpsearchError('MLflow tracking (--mlflow) needs the mlflow package: pip install "hpsearch[mlflow]"')


def _tracker(given: str | None, study: str, url: str):
    """The MLflow tracker of mlflow= (--mlflow [URI]), or None without it."""
    if given is None:
        return None
    from hpsearch.search.options import tracking_uri
    from hpsearch.search.tracking import Tracker

    return Tracker(tracking_uri(given), study, url)


@dataclass(frozen=True)
class Submitted:
    """What submit() handed to SLURM, or would have (a dry run)."""

    job: ArrayJob
    storage: str  # the URL its tasks run on (it may hold a password: storage.mask it before showing it)
    script: str  # the batch script
    job_id: str | None  # SLURM's, None for a dry run
    stops: str  # what ends the array, in words (RunOptions.stop_rules)


def submit(study: str | Path, *, jobs: int, storage: str | None = None, gpus_per_job: int = 0,
           trials_per_gpu: int | None = None, partition: str | None = None, time: str | None = None,
           n_trials: int | None = None, until: int | None = None, timeout: float | None = None,
           seed: int | None = None, data_dir: Path | None = None, stop_at_target: bool = True,
           heartbeat: int = DEFAULT_HEARTBEAT_S, keep_weights: int = DEFAULT_KEEP, mlflow: str | None = None,
           accept_change: bool = False, sbatch_args: tuple[str, ...] = (), one_node: bool = False,
           dry_run: bool = False) -> Submitted:
    """`hpsearch submit`: the study as a SLURM job array of `jobs` tasks, each `hpsearch run` on its storage with
    run()'s options, so that the array stops by a run's rules over all its tasks; with dry_run, the batch script
    only. The study file, the folders the tasks use and the storage are checked here, not in every task's log.
    Torch-free, so that a login node submits in a second or two: whether the models fit the data each task checks
    as it starts."""
    spec = _checked(study, n_trials, until, mlflow, models=False)
    from hpsearch.search import preflight, slurm
    from hpsearch.search.options import RunOptions, tracking_uri
    from hpsearch.storage import storage_url

    url = storage_url(storage)
    options = RunOptions(n_trials=n_trials, until=until, timeout=timeout, seed=seed, data_dir=data_dir,
                         stop_at_target=stop_at_target, heartbeat=heartbeat, keep_weights=keep_weights,
                         mlflow=None if mlflow is None else tracking_uri(mlflow), accept_change=accept_change)
    job = slurm.plan(str(study), spec, url, options, jobs=jobs, gpus_per_job=gpus_per_job,
                     trials_per_gpu=trials_per_gpu or 1, partition=partition, time=time,
                     sbatch_args=tuple(sbatch_args), one_node=one_node)
    script, stops = slurm.batch_script(job), options.stop_rules(spec)
    if dry_run:
        return Submitted(job, url, script, None, stops)
    storage = preflight.check_storage(spec, url)
    job_id = slurm.submit(job, url)
    if storage is not None:
        from hpsearch.search.stop import record_submitted

        record_submitted(storage, spec.name, job.run_id, {**options.record(spec), "slurm_job": job_id})
    return Submitted(job, url, script, job_id, stops)


# --- reading a study --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """One trial as `best --format json` shows it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    val_accuracy: float | None  # of a completed trial
    test_accuracy: float | None
    param_count: int | None
    epochs: int | None  # epochs trained
    seconds: float | None  # wall time
    train_seconds: float | None  # the sum of its epochs
    device: str | None
    baseline: str | None  # the baseline's name, for a trial of one of the reports' models
    params: Mapping[str, Any]  # the sampled parameters
    config: Mapping[str, Any]  # every parameter it trained with, defaults filled in
    confirm: Mapping[str, Any] | None  # its confirmation seeds and their spread, once `confirm` trained them


def summary(study: Study, *, storage: str | None = None) -> dict[str, Any]:
    """`hpsearch best`: the study's counts by state, its limits and its best trial (with two objectives, its
    Pareto front), as `best --format json` prints it. HpsearchError if no trial has completed within limits."""
    from hpsearch.results.trials import summarize

    stored = _opened(study, storage)[0]
    said = summarize(stored)
    if said["best"] is None:
        within = " within its limits" if said["limits"] else ""
        raise HpsearchError(f"study {stored.study_name!r} has no completed trial{within} yet: "
                            f"`hpsearch run --study {_argument(study)}`")
    return said


def best(study: Study, *, storage: str | None = None) -> Trial:
    """The study's best trial: the confirmed winner once `confirm` has run, else the most accurate completed trial
    within limits (with two objectives, the most accurate point of the front)."""
    return Trial(**summary(study, storage=storage)["best"])


def front(study: Study, *, storage: str | None = None, against: str | None = None) -> list[Trial]:
    """The Pareto front of validation accuracy against `against` ("params" or "train_seconds"; default: the
    study's second objective, else params), most accurate first."""
    from hpsearch.results import ranking
    from hpsearch.results.trials import objectives, summarize_trial
    from hpsearch.studyfile.limits import MEASURES

    stored = _opened(study, storage)[0]
    names = objectives(stored)
    against = against or (names[1] if len(names) > 1 else "params")
    if against not in MEASURES:
        raise HpsearchError(f"against={against!r}: give one of {', '.join(MEASURES)}")
    return [Trial(**summarize_trial(t)) for t in ranking.front(ranking.study_trials(stored), against=against)]


@dataclass(frozen=True)
class Table:
    """A table of the report: text cells, as the Markdown shows them."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def as_dicts(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, row)) for row in self.rows]


@dataclass(frozen=True)
class ReportTables:
    """The report's tables as rows: report_rows()."""

    trials: Table  # the study file's baselines beside the best searched trials
    confirmation: Table  # the confirmed trials, best mean first (no rows before `confirm`)
    verdict: tuple[str, ...]  # what the confirmation says of the winner


def report_rows(study: Study, *, storage: str | None = None) -> ReportTables:
    """The report's tables as rows (`pandas.DataFrame(t.rows, columns=t.header)` reads one)."""
    from hpsearch import record
    from hpsearch.results import ranking
    from hpsearch.results import report as report_module

    stored, spec = _opened(study, storage, remembered=True)
    rows = report_module.rows(stored, spec.baselines if spec else (), dataset=record.study_record(stored).dataset)
    confirmed, verdict = report_module.confirmation(ranking.study_trials(stored))
    return ReportTables(Table(report_module.HEADER, tuple(rows)),
                        Table(report_module.CONFIRM_HEADER, tuple(confirmed)), tuple(verdict))


@dataclass(frozen=True)
class Report:
    """The report as report() wrote it."""

    markdown: str  # the report, as `hpsearch report` prints it
    written: tuple[Path, ...]  # what `out` wrote: the .md file, or report.md, the plots and index.html


def report(study: Study, *, storage: str | None = None, out: Path | None = None) -> Report:
    """`hpsearch report`: the baselines beside the best searched trials, the confirmed trials and the time to
    target, as Markdown; with `out` also written to that .md file, or else into that folder with the study's
    plots and an index.html."""
    from hpsearch.files import make_folder, write_atomic
    from hpsearch.results import report as report_module

    stored, spec = _opened(study, storage, remembered=True)
    listed, epochs = (spec.baselines, spec.budget.epochs) if spec else ((), None)
    text = report_module.markdown(stored, listed, epochs=epochs, spec=spec)
    if out is None:
        return Report(text, ())
    out = Path(out)
    if out.suffix == ".md":
        make_folder(out.parent, "--out")
        write_atomic(out, text)
        return Report(text, (out,))
    if out.exists() and not out.is_dir():
        raise HpsearchError(f"--out {out}: a file of that name exists; give a folder, or a name ending in .md")
    make_folder(out, "--out")
    written = report_module.write_directory(stored, listed, epochs=epochs, spec=spec, out=out)
    return Report(text, tuple(out / name for name in written))


@dataclass(frozen=True)
class Exported:
    """What export() wrote, and of which trial."""

    trial: Trial
    config: Path  # the config file written
    weights: Path | None  # the trial's stored weights copied beside it, if it kept any and they were asked for
    front: tuple[int, tuple[str, ...]] | None  # the best of two objectives: the front's size and the objectives
    no_weights_why: str | None  # why no weights were copied where they were asked for and the trial has none
    chosen: tuple[str, ...]  # without `trial`: how the trial was chosen, and a baseline said to be one


def export(study: Study, out: Path, *, storage: str | None = None, trial: int | None = None,
           weights: bool = True) -> Exported:
    """`hpsearch export`: trial `trial` (default: the best) as a config file that stands alone (.yaml, .yml or
    .json), its stored weights copied beside it as .safetensors where it kept some and `weights` asks."""
    from hpsearch.files import make_folder
    from hpsearch.results import export as export_module
    from hpsearch.results import ranking
    from hpsearch.results.trials import objectives, summarize_trial
    from hpsearch.storage import storage_url

    url = storage_url(storage)
    stored, spec = _opened(study, url)
    out = Path(out)
    make_folder(out.parent, "-o")
    picked, copied = export_module.export_trial(stored, url, trial, out, spec=spec, include_weights=weights)
    on_front = None
    if trial is None and len(names := objectives(stored)) > 1:
        on_front = (len(ranking.front(stored.get_trials(deepcopy=False), against=names[1])), tuple(names))
    from hpsearch.results.artifacts import why_no_weights

    no_weights_why = why_no_weights(picked) if weights and copied is None else None
    chosen = tuple(export_module.picked_notes(stored, picked)) if trial is None else ()
    return Exported(Trial(**summarize_trial(picked)), out, copied, on_front, no_weights_why, chosen)


def status_reader(study: Study, *, storage: str | None = None) -> StatusReader:
    """`hpsearch status`: a reader of what the study is doing now; each read() gives a results.status.StudyStatus
    (running trials with their epoch, worker and SLURM task, queued copies, counts by state, stale trials, each
    working run's progress, the target). Torch-free and light, so that --watch can read a study of thousands of
    trials every few seconds. The target and budget come from the study file given, else the one the study was
    made from, where it still reads."""
    from hpsearch import record
    from hpsearch.results.status import StatusReader
    from hpsearch.storage import storage_url

    spec = load_study(study) if isinstance(study, Mapping) or catalog.find_study_file(str(study)) else None
    name = spec.name if spec is not None else _checked_name(str(study))
    reader = StatusReader(storage_url(storage), name)
    if spec is None:
        spec = catalog.remembered_spec(name, record.stored_study_record(reader.storage, reader.study_id).spec_path)
    reader.spec = spec
    return reader


def status(study: Study, *, storage: str | None = None) -> StudyStatus:
    """The study as `hpsearch status` shows it once (status_reader)."""
    return status_reader(study, storage=storage).read()


def stop(study: Study, *, storage: str | None = None, discard_queued: bool = False) -> StopDone:
    """`hpsearch stop`: every run of the study recorded so far (a SLURM array's pending tasks too) starts no new
    trial; its running trials stop at their next epoch end, failed with the reason "stopped by hpsearch stop" and
    queued to resume in a later run. With discard_queued, the queued copies are failed as "discarded by hpsearch
    stop" (their checkpoints removed), and so are the trials it stops. From any machine that reaches the storage;
    torch-free."""
    from hpsearch.search.stop import request_stop
    from hpsearch.storage import storage_url

    name = load_study(study).name if isinstance(study, Mapping) or catalog.find_study_file(str(study)) else \
        _checked_name(str(study))
    return request_stop(storage_url(storage), name, discard_queued=discard_queued)


def dashboard(study: Study, *, storage: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
              announce: Callable[[str], None] | None = None) -> None:
    """`hpsearch dashboard`: optuna-dashboard on the study's storage and weights until interrupted; `announce` gets
    the study's page address once it is known."""
    from hpsearch.results import dashboard as dashboard_module
    from hpsearch.storage import storage_url

    url = storage_url(storage)
    dashboard_module.serve(url, _opened(study, url)[0].study_name, host=host, port=port,
                           announce=announce or (lambda address: None))


def _argument(study: Study) -> str:
    """How a command names `study` (a dict by its name)."""
    return str(study.get("name", DICT_PATH)) if isinstance(study, Mapping) else str(study)


def _opened(study: Study, storage: str | None, *, remembered: bool = False) -> tuple[optuna.Study, StudySpec | None]:
    """The stored study `study` means, and its study file where the argument names one (a study name alone
    names none): with `remembered`, else the file the stored study was made from, where it still reads."""
    from hpsearch import record
    from hpsearch.storage import storage_url

    if isinstance(study, Mapping) or catalog.find_study_file(str(study)):
        spec = load_study(study)
        return _stored(spec.name, storage_url(storage)), spec
    stored = _stored(str(study), storage_url(storage))
    spec = catalog.remembered_spec(stored.study_name, record.study_record(stored).spec_path) if remembered else None
    return stored, spec


def _stored(name: str, url: str) -> optuna.Study:
    """The stored study `name` (_checked_name)."""
    from hpsearch.search.studystore import load_existing

    return load_existing(_checked_name(name), url)


def _checked_name(name: str) -> str:
    """`name`, or HpsearchError where no study file could have it: refused before the storage is opened, shown
    escaped, since it may hold terminal escapes."""
    from hpsearch.paths import name_problem

    if why := name_problem(name):
        raise HpsearchError(f"--study {ascii(name[:60])}{'...' if len(name) > 60 else ''}: {why}")
    return name


# --- training again ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trained:
    """What train() trained and wrote."""

    out: Path  # the folder: the config's copy, seed-S.safetensors each, results.json
    runs: tuple[Retrained, ...]  # each seed's record, model, history and accuracies
    results: dict[str, Any]  # results.json: per seed, and the test accuracy's mean and sample std


def train(config: Path, *, seeds: int = 1, out: Path | None = None, device: str = "auto",
          data_dir: Path | None = None, progress: Callable[[TrainPlan], contextlib.AbstractContextManager] | None = None,
          on_seed: Callable[[Retrained, TrialConfig], None] | None = None) -> Trained:
    """`hpsearch train`: an exported config trained again with `seeds` seeds (its own, then one more each);
    `out` defaults to the config's name plus -trained. on_seed(run, config) gets each seed's result as it is
    saved (config.metrics: what the trial reached); the value
    of progress(plan) gets the training's events (training.retrain.RetrainEvents)."""
    from hpsearch.training import retrain

    done = retrain.train_seeds(Path(config), seeds, device, out=out, data_dir=data_dir, progress=progress,
                               on_seed=on_seed)
    return Trained(done.out, done.runs, done.results)


@dataclass(frozen=True)
class Confirmed:
    """The confirmed trials once every seed asked for is stored: confirm()."""

    table: Table  # the confirmed trials, best mean validation accuracy first
    verdict: tuple[str, ...]  # what they say of the winner
    said: tuple[str, ...]  # with several workers, what each said (a line per seed), in worker order


def confirm(study: Study, *, storage: str | None = None, top: int = 3, seeds: int = 3, workers: int = 1,
            device: str = "auto", data_dir: Path | None = None, mlflow: str | None = None, as_worker: bool = False,
            progress: Callable[[ConfirmPlan], contextlib.AbstractContextManager] | None = None,
            on_seed: Callable[[Job, SeedResult], None] | None = None) -> Confirmed | None:
    """`hpsearch confirm`: the best `top` trials trained again with `seeds` new seeds each, in this process or in
    `workers` processes on this machine (more may join from others), each result stored as it is trained and
    given to on_seed; running it again trains only what is missing. The best mean validation accuracy becomes
    the study's winner. `as_worker`: this process is one of those workers; it returns None."""
    from hpsearch.results.report import CONFIRM_HEADER
    from hpsearch.search import confirm as confirm_module
    from hpsearch.storage import storage_url

    _check_mlflow(mlflow)
    url = storage_url(storage)
    stored = _opened(study, url)[0]
    with _tracker(mlflow, stored.study_name, url) or contextlib.nullcontext() as tracker:
        done = confirm_module.confirm(stored, url, top, seeds, workers=workers, device=device, data_dir=data_dir,
                                      tracker=tracker, as_worker=as_worker, progress=progress, on_seed=on_seed)
    if done is None:
        return None
    return Confirmed(Table(CONFIRM_HEADER, tuple(done.table)), tuple(done.verdict), tuple(done.said))


def load_model(*, study: Study | None = None, trial: int | str = "best", storage: str | None = None,
               config: Path | None = None, weights: Path | None = None) -> torch.nn.Module:
    """A trained model, on the CPU in eval mode, from one of: a stored trial of `study` (`trial`: its number, or
    "best", the best-ranked trial that kept its weights), an exported `config` (the weights `export` copied
    beside it), or a `weights` file hpsearch wrote (`train`'s seed-S.safetensors, say)."""
    from hpsearch.training.retrain import load_trained

    if sum(given is not None for given in (study, config, weights)) != 1:
        raise HpsearchError("give one of study= (a stored trial), config= (an exported config) or weights= (a "
                            "weights file hpsearch wrote)")
    if study is not None:
        from hpsearch.results.artifacts import stored_weights
        from hpsearch.storage import storage_url

        url = storage_url(storage)
        weights = stored_weights(url, _opened(study, url)[0].study_name, trial)
    elif config is not None:
        weights = Path(config).with_suffix(".safetensors")
        if not weights.is_file():
            raise HpsearchError(f"{config}: no weights beside it ({weights.name}); export a trial that kept its "
                                f"weights, or train it again (`hpsearch train --config {config}`) and give "
                                "weights= one of the seed-S.safetensors it writes")
    return load_trained(Path(weights))
