"""The `hpsearch` command: parse options, call the library, print. No training logic here.

Results go to stdout, progress and messages to stderr. Expected problems (a bad study file, a
missing dataset, an unreachable storage) end with one line per problem and exit status 2, at the
group's one error boundary (Commands). Commands import the library layers they use in their bodies:
torch, Optuna and scikit-learn take seconds to load, which `--help`, `studies`, `params` and a refused
option conflict do without.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import uuid
from pathlib import Path

import click

from hpsearch import __version__, escape
from hpsearch import record
from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_HOST, DEFAULT_KEEP, DEFAULT_PORT, DEFAULT_STORAGE
from hpsearch.errors import ClusterError, HpsearchError, Terminated, interruption
from hpsearch.files import make_folder, write_atomic
from hpsearch.paths import name_problem
from hpsearch.search.signals import raising_on_signals
from hpsearch.studyfile import catalog
from hpsearch.studyfile import params as params_module

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_ALL_FAILED = 1  # the run went as asked, and every trial it ran failed

storage_option = click.option(
    "--storage", metavar="URL", default=None,
    help=f"Optuna storage URL. Default: $HPSEARCH_STORAGE, else {DEFAULT_STORAGE} (a file in the current folder).")


def study_option(text: str = "A study name in the storage, a shipped study, or a study file."):
    """--study, declared once; `run` and `worker` say it more narrowly (they need a study file)."""
    return click.option("--study", "study_name", required=True, metavar="NAME|FILE", help=text)


mlflow_option = click.option(
    "--mlflow", "mlflow", is_flag=False, flag_value="", default=None, metavar="[URI]",
    help="Log the study and every trial to MLflow at URI. Default URI: $MLFLOW_TRACKING_URI, else "
         "sqlite:///mlflow.db (a file in the current folder). "
         "Needs mlflow: pip install \"hpsearch[mlflow]\".")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             help="Where to train; auto picks CUDA when available.")
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where datasets live or are downloaded. Default: $HPSEARCH_DATA_DIR, else ./data.")


class GpuList(click.ParamType):
    """'0,1,3' -> (0, 1, 3)."""

    name = "gpus"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            gpus = tuple(int(g) for g in value.split(",") if g.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of GPU indices such as 0,1,2", param, ctx)
        if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            self.fail(f"{value!r}: GPU indices must be distinct and >= 0", param, ctx)
        return gpus


GPU_LIST = GpuList()


class Commands(click.Group):
    """The group's one error boundary, around every command (option checks included), so none can forget it:
    expected errors end in one line each on stderr and exit status 2; Ctrl-C in 130, SIGTERM in 143."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HpsearchError as exc:
            for line in str(exc).rstrip("\n").split("\n"):  # one per problem; a newline of a value is escaped in it
                click.echo(f"error: {escape.terminal(line)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            click.echo(f"{interruption(exc)}: run the same command again to resume the study", err=True)
            sys.exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED)
        except Exception as exc:  # a database failing after it opened (damaged, full disk): one line too
            if "hpsearch.storage" not in sys.modules:  # nothing opened a storage: not a database error
                raise
            from hpsearch.storage import storage_failure

            if (failure := storage_failure(exc)) is None:
                raise
            click.echo(f"error: {escape.terminal(str(failure))}", err=True)
            sys.exit(2)


def stops_once(command):
    """While the command runs, Ctrl-C (SIGINT) and SIGTERM (SLURM, Kubernetes, `timeout`) stop it through one
    path: KeyboardInterrupt, or its subclass errors.Terminated, which records the running trial as failed and
    queues its copy (signals.py).

    Once the clean-up has begun (signals.hold_signals), further signals are ignored: a worker can hear one both
    directly (the terminal or a scheduler signals the whole process group) and from its parent, and the second
    must not cut the clean-up short.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with raising_on_signals():
            return command(*args, **kwargs)

    return wrapper


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, "--version", prog_name="hpsearch")
def main() -> None:
    """Hyperparameter search for image classifiers: study files in, pruned Optuna trials out."""


def _load_existing(name: str, url: str):
    """The stored study `name`, for the commands that read one; Optuna's own log lines are silenced first
    (hpsearch prints its own), and neither this nor the readers import torch. A name no study file could have
    is refused before the storage is opened, shown escaped: it may hold terminal escapes."""
    if why := name_problem(name):
        raise HpsearchError(f"--study {ascii(name[:60])}{'...' if len(name) > 60 else ''}: {why}")
    _quiet_optuna()
    from hpsearch.search.studystore import load_existing

    return load_existing(name, url)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _seconds(ctx, param, value: float | None) -> float | None:
    """A duration: finite and positive (nan would never time out, inf never either)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"give a finite number of seconds above 0 (got {value})")
    return value


def trial_options(command):
    """The options `run` and `worker` share: which study, where, how many trials, on what; their conflicts are
    refused before the command body imports anything heavy."""
    options = [
        study_option("A shipped study (see `hpsearch studies`) or a path to a study file."),
        storage_option,
        click.option("--n-trials", type=click.IntRange(min=1), default=None,
                     help="Trials this run adds, over all its workers. Default: the study's budget.trials."),
        click.option("--until", type=click.IntRange(min=1), default=None,
                     help="Instead of --n-trials: run until the study holds this many finished (complete or "
                          "pruned) trials, whatever earlier runs did."),
        click.option("--timeout", type=float, default=None, callback=_seconds,
                     help="Stop starting new trials after this many seconds."),
        click.option("--seed", type=click.IntRange(0, params_module.MAX_SEED), default=None,
                     help="Sampler seed. Default: the study file's sampler.seed."),
        device_option,
        data_dir_option,
        click.option("--stop-at-target/--no-stop-at-target", default=True,
                     help="End the run once a sampled trial of this run reaches the study's target (a baseline that "
                          "meets it is noted and the search goes on)."),
        click.option("--heartbeat", type=click.IntRange(min=1), default=DEFAULT_HEARTBEAT_S,
                     help="Seconds between a running trial's heartbeats; a trial silent for two is failed "
                          "and retried (its worker died)."),
        click.option("--keep-weights", type=click.IntRange(min=0), default=DEFAULT_KEEP,
                     help="Keep the trained weights of the study's best this many completed trials as Optuna "
                          "artifacts beside the storage; 0 keeps none."),
        mlflow_option,
        click.option("--accept-change", is_flag=True,
                     help="Add trials to a study although the study file changed what decides its results since its "
                          "trials ran: budget.epochs, the dataset's images or classes, a parameter's range or fixed "
                          "value. Without it such a run is refused, naming the change. The change is recorded in the "
                          "study (accepted_changes, with the trial it starts from); best and report then rank old "
                          "and new trials together although they were not measured alike. A parameter's kind, log "
                          "scale or choices cannot change in one study at all."),
    ]

    @functools.wraps(command)
    def checked(*args, n_trials, until, mlflow, **kwargs):
        """Conflicting options refused before the command imports torch and Optuna (seconds)."""
        if n_trials is not None and until is not None:
            raise click.UsageError("give --n-trials (trials to add) or --until (a total to reach), not both")
        _check_mlflow(mlflow)
        return command(*args, n_trials=n_trials, until=until, mlflow=mlflow, **kwargs)

    for option in reversed(options):
        checked = option(checked)
    return checked


@main.command()
@trial_options
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes on this machine, all on one study. Default: 1.")
@click.option("--gpus", type=GPU_LIST, default="", metavar="0,1,...", show_default=False,
              help="One worker per listed GPU, each pinned with CUDA_VISIBLE_DEVICES.")
@click.option("--trials-per-gpu", type=click.IntRange(min=1), default=None,
              help="Workers per GPU (per listed GPU, or per visible GPU without --gpus).")
@click.option("--run-id", default=None, hidden=True, help="Shared by the tasks of a `submit` job array.")
@stops_once
def run(study_name, storage, n_trials, until, timeout, seed, device, data_dir, stop_at_target, heartbeat,
        keep_weights, mlflow, accept_change, workers, gpus, trials_per_gpu, run_id):
    """Run trials of a study; running it again continues the same study."""
    import torch
    from rich.console import Console

    from hpsearch.search.progress import RunDisplay
    from hpsearch.search.workers import plan_workers
    from hpsearch.storage import mask, storage_url

    _quiet_optuna()
    from hpsearch.results.trials import baseline_note
    from hpsearch.search import run as run_module

    spec = catalog.load_study_spec(study_name)
    url = storage_url(storage)
    tracker = _tracker(mlflow, spec.name, url)
    options = run_module.RunOptions(n_trials=n_trials, until=until, timeout=timeout, device=device, seed=seed,
                                    stop_at_target=stop_at_target, data_dir=data_dir, heartbeat=heartbeat,
                                    keep_weights=keep_weights, run_id=run_id or uuid.uuid4().hex,
                                    mlflow=tracker and tracker.uri, accept_change=accept_change)
    slots = plan_workers(workers, gpus, trials_per_gpu, device, torch.cuda.device_count())
    console = Console(stderr=True)
    header = (f"study {spec.name} ({spec.describe_epochs()}, target {spec.describe_target()}"
              f"{_limits_and_objectives(spec)}) on {mask(url)}")
    total = until or n_trials or spec.budget.trials
    with tracker or contextlib.nullcontext():
        if len(slots) == 1 and slots[0].gpu is None:
            with RunDisplay(console, header, total, spec.budget.epochs, counting_study=until is not None,
                            note=lambda trial: baseline_note(trial, spec)) as display:
                study = run_module.run(spec, url, options, **_events(display, tracker))
        else:  # the workers log their trials; this process the summary
            study = _run_workers(spec, url, options, slots, console, header, total)
        if tracker:
            tracker.summarize(study, spec)
    _finish(study, spec, options, console)


def _check_mlflow(given: str | None) -> None:
    """--mlflow without the package: one line, before anything slow loads."""
    import importlib.util

    if given is not None and importlib.util.find_spec("mlflow") is None:
        raise HpsearchError('--mlflow needs the mlflow package: pip install "hpsearch[mlflow]"')


def _mlflow_uri(given: str) -> str:
    from hpsearch.search.tracking import tracking_uri

    return tracking_uri(given)


def _tracker(given: str | None, study: str, url: str):
    """The MLflow tracker of --mlflow [URI], or None without it."""
    if given is None:
        return None
    from hpsearch.search.tracking import Tracker

    return Tracker(_mlflow_uri(given), study, url)


def _events(display, tracker) -> dict:
    """run()'s events and callbacks: the display's, and the tracker's where there is one."""
    if tracker is None:
        return {"events": display, "callbacks": [display.trial_finished]}
    from hpsearch.search.objective import EventsTo

    return {"events": EventsTo(display, tracker), "callbacks": [display.trial_finished, tracker.trial_finished]}


def _limits_and_objectives(spec) -> str:
    """', limits params <= 100,000, objectives val_accuracy and params' for a run's header; '' for neither."""
    from hpsearch.studyfile.limits import describe

    limits = describe(spec.limits)
    return ((f", limits {limits}" if limits != "none" else "")
            + (f", objectives {' and '.join(spec.objectives)}" if len(spec.objectives) > 1 else ""))


def _finish(study, spec, options, console) -> None:
    """Say what the run did (finish.finish decides), then its summary and time to target; exit status 1 when
    every trial of the run failed."""
    from hpsearch.results.render import plural, render
    from hpsearch.results.trials import reached_line
    from hpsearch.search.finish import finish

    end = finish(study, spec, options)
    if end.nothing_to_do:
        console.print(f"nothing to do: the study already holds {plural(end.finished, 'finished trial')} "
                      f"(--until {options.until})", highlight=False, soft_wrap=True)
    elif end.reached is not None:
        console.print(reached_line(end.reached, spec), highlight=False, soft_wrap=True)
    click.echo(render(end.summary, "text"))
    click.echo("\n".join(end.pace))
    if end.all_failed is not None:
        reason, count = end.all_failed
        click.echo(f"error: every trial of this run failed ({plural(end.trials, 'trial')}); the most common reason "
                   f"({count} of {end.trials}): {escape.terminal(reason)}", err=True)
        sys.exit(EXIT_ALL_FAILED)


def _run_workers(spec, url, options, slots, console, header, total):
    """Start the worker processes and show their trials in one view until they all exit."""
    from hpsearch.results.trials import baseline_note
    from hpsearch.search.progress import ParallelDisplay
    from hpsearch.search.studystore import check_existing
    from hpsearch.search.workers import run_workers, watch
    from hpsearch.storage import check_sqlite_folder, is_new_sqlite, open_storage, sqlite_file

    if is_new_sqlite(url):  # the workers make it once their data is read: a run that cannot start writes none
        check_sqlite_folder(sqlite_file(url))
    else:  # fail fast, before starting anyone
        check_existing(spec, open_storage(url, heartbeat=options.heartbeat), options.accept_change)
    gpus = sorted({s.gpu for s in slots if s.gpu is not None})
    where = f"GPUs {','.join(map(str, gpus))}" if gpus else slots[0].device
    pool = run_workers(spec, url, options, slots)

    def watched() -> None:
        with ParallelDisplay(console, f"{header}; {len(slots)} workers on {where}", total, spec.budget.epochs,
                             counting_study=options.until is not None, run_id=pool.run_id,
                             note=lambda trial: baseline_note(trial, spec)) as display:
            watch(pool, spec.name, url, display.trial_ended, display.polled)

    pool.supervise(watched)
    pool.remove_logs()
    return _load_existing(spec.name, url)


@main.command()
@trial_options
@click.option("--run-id", default=None, hidden=True, help="Shared by the workers that `run --workers` starts.")
@stops_once
def worker(study_name, storage, n_trials, until, timeout, seed, device, data_dir, stop_at_target, heartbeat,
           keep_weights, mlflow, accept_change, run_id):
    """Join a study as one more worker, from this or any machine that reaches its storage.

    Start it on each machine with the same --storage (PostgreSQL for several machines) and study;
    --until N makes all of them stop once the study holds N finished trials.
    """
    from rich.console import Console

    from hpsearch.results.render import render
    from hpsearch.search.progress import RunDisplay
    from hpsearch.storage import mask, storage_url

    _quiet_optuna()
    from hpsearch.results.trials import baseline_note, summarize
    from hpsearch.search import run as run_module

    spec = catalog.load_study_spec(study_name)
    url = storage_url(storage)
    tracker = _tracker(mlflow, spec.name, url)
    options = run_module.RunOptions(n_trials=n_trials, until=until, timeout=timeout, device=device, seed=seed,
                                    stop_at_target=stop_at_target, data_dir=data_dir, heartbeat=heartbeat,
                                    keep_weights=keep_weights, run_id=run_id or uuid.uuid4().hex,
                                    accept_change=accept_change)
    console = Console(stderr=True)
    header = f"worker on study {spec.name} ({spec.describe_epochs()}) on {mask(url)}"
    with tracker or contextlib.nullcontext():
        with RunDisplay(console, header, until or n_trials or spec.budget.trials, spec.budget.epochs,
                        counting_study=until is not None,
                        note=lambda trial: baseline_note(trial, spec)) as display:
            study = run_module.run(spec, url, options, **_events(display, tracker))
        if tracker and run_id is None:  # a worker of `run --workers` leaves the summary to that run
            tracker.summarize(study, spec)
    if run_id is None:  # started on its own; a worker of `run --workers` leaves the verdict to that run
        _finish(study, spec, options, console)
    else:
        click.echo(render(summarize(study), "text"))


@main.command()
@study_option("A shipped study (see `hpsearch studies`) or a path to a study file.")
@click.option("--storage", metavar="URL", default=None,
              help="Optuna storage URL, with no password (a URL with one goes in $HPSEARCH_STORAGE). Default: "
                   f"$HPSEARCH_STORAGE, else {DEFAULT_STORAGE} (with --one-node only).")
@click.option("--jobs", type=click.IntRange(min=1), required=True,
              help="Tasks in the job array: each one `hpsearch run` on an allocation of its own.")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=0,
              help="GPUs each task asks for (--gres=gpu:G); 0 trains on the task's CPUs.")
@click.option("--trials-per-gpu", type=click.IntRange(min=1), default=None,
              help="Workers on each of a task's GPUs. Default: 1.")
@click.option("--partition", default=None, help="The SLURM partition. Default: the cluster's.")
@click.option("--time", "time_limit", metavar="HH:MM:SS", default=None,
              help="Each task's time limit; a task near it records its trial and queues itself again to resume it.")
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="Trials the array adds, over all its tasks. Default: the study's budget.trials.")
@click.option("--until", type=click.IntRange(min=1), default=None,
              help="Instead of --n-trials: run until the study holds this many finished trials.")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="ARG",
              help="One more sbatch option for every task, such as --sbatch-arg=--cpus-per-task=4; repeatable.")
@click.option("--one-node", is_flag=True,
              help="Every task runs on one node (a one-node cluster, or --sbatch-arg=--nodelist=NODE): allows an "
                   "SQLite storage and checkpoints on that node's disk.")
@mlflow_option
@click.option("--dry-run", is_flag=True, help="Print the batch script and submit nothing.")
def submit(study_name, storage, jobs, gpus_per_job, trials_per_gpu, partition, time_limit, n_trials, until,
           sbatch_args, one_node, mlflow, dry_run):
    """Run a study as a SLURM job array of workers on its storage, preemption-safe.

    Each task records its running trial when SLURM stops it (scancel, preemption, a time limit) and comes back
    after a preemption or near its time limit; the trial's copy resumes from its checkpoint.
    """
    from hpsearch.search import slurm
    from hpsearch.storage import mask, secrets, storage_url

    if n_trials is not None and until is not None:
        raise click.UsageError("give --n-trials (trials to add) or --until (a total to reach), not both")
    if trials_per_gpu is not None and not gpus_per_job:
        raise click.UsageError("--trials-per-gpu needs --gpus-per-job")
    _check_mlflow(mlflow)
    if storage is not None and secrets(storage):
        raise ClusterError("--storage holds a password, which `ps` and shell history show: export "
                           "HPSEARCH_STORAGE=URL instead; it travels to the tasks in their environment")
    if mlflow and secrets(mlflow):
        raise ClusterError("--mlflow holds a password, which `ps` and shell history show: export "
                           "MLFLOW_TRACKING_URI=URI and give --mlflow alone; it travels to the tasks in their "
                           "environment")
    spec = catalog.load_study_spec(study_name)
    url = storage_url(storage)
    job = slurm.plan(study_name, spec, url, jobs=jobs, gpus_per_job=gpus_per_job,
                     trials_per_gpu=trials_per_gpu or 1, partition=partition, time=time_limit, n_trials=n_trials,
                     until=until, sbatch_args=sbatch_args, one_node=one_node,
                     mlflow=None if mlflow is None else _mlflow_uri(mlflow))
    if dry_run:
        click.echo(slurm.batch_script(job), nl=False)
        return
    job_id = slurm.submit(job, url)
    click.echo(f"submitted job {job_id}: {jobs} tasks of `hpsearch run` on study {spec.name}, storage {mask(url)}"
               + (f", MLflow {mask(job.mlflow)}" if job.mlflow is not None else "") + "\n"
               f"follow: squeue -j {job_id}; each task's log: {job.log(job_id)}\n"
               f"stop:   scancel {job_id} (running trials are recorded as failed; submit again to resume them)")


@main.command()
def studies():
    """List the shipped studies: name, dataset, epoch budget, target."""
    rows = [("name", "dataset", "epochs", "target", "baselines")]
    for path in catalog.shipped_study_files():
        spec = catalog.load_study_spec(str(path), deep=False)  # the shipped files pass the deep checks in the tests
        rows.append((spec.name, spec.dataset.name, str(spec.budget.epochs), spec.describe_target(),
                     ", ".join(spec.baselines) or "none"))
    _echo_columns(rows)


@main.command()
def baselines():
    """List the reports' models that studies run as fixed trials, with what the reports say of them."""
    from hpsearch.studyfile.baselines import BASELINES

    rows = [("name", "dataset", "params", "reported", "source")]
    for b in BASELINES.values():
        count = f"{b.built_count:,}" + (" (as stated)" if b.param_count == b.built_count else "")
        rows.append((b.name, b.dataset, count, b.reported, f"report {b.report}"))
    _echo_columns(rows)


def _echo_columns(rows: list[tuple[str, ...]]) -> None:
    """Aligned columns; the last one runs free."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


@main.command()
def params():
    """List every parameter a study file can search or fix, with its default and allowed values."""
    from hpsearch.studyfile.families import FAMILIES, MODEL_PARAMS

    for param in params_module.PARAMS:
        allowed = ", ".join(map(str, param.choices)) if param.kind == "choice" else (
            "true, false" if param.kind == "bool" else
            f"list of integers >= {param.low:g}" if param.kind == "ints" else f"{param.kind} in {param.bounds_text()}")
        own = "".join(f" ({f.name}: {f.defaults[param.name]!r})" for f in FAMILIES.values() if param.name in f.defaults)
        takes = [f.name for f in FAMILIES.values() if param.name in f.params]
        families = f"; families: {', '.join(takes)}" if param.name in MODEL_PARAMS else ""
        click.echo(f"{param.name:<16} {param.help}\n{'':<16} default {param.default!r}{own}; {allowed}{families}")


@main.command()
@study_option()
@storage_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text")
def best(study_name, storage, fmt):
    """Print the best trial of a study: parameters, validation and test accuracy, size, time; for a study with two
    objectives, its Pareto front."""
    from hpsearch.results.render import render
    from hpsearch.results.trials import summarize
    from hpsearch.storage import storage_url

    study = _load_existing(_study_name(study_name), storage_url(storage))
    summary = summarize(study)
    if summary["best"] is None:
        within = " within its limits" if summary["limits"] else ""
        raise HpsearchError(f"study {study.study_name!r} has no completed trial{within} yet: "
                            f"`hpsearch run --study {study_name}`")
    click.echo(render(summary, fmt))


@main.command()
@study_option()
@storage_option
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the table to this Markdown file (a name ending in .md), or else make this folder "
                   "and write report.md, PNG plots and an index.html showing both into it.")
def report(study_name, storage, out):
    """Print the baselines beside the best searched trials, as one Markdown table."""
    from hpsearch.results import report as report_module
    from hpsearch.storage import storage_url

    spec = catalog.load_study_spec(study_name) if catalog.find_study_file(study_name) else None
    study = _load_existing(spec.name if spec else study_name, storage_url(storage))
    spec = spec or _remembered_spec(study)
    listed, epochs = (spec.baselines, spec.budget.epochs) if spec else ((), None)
    text = report_module.markdown(study, listed, epochs=epochs, spec=spec)
    click.echo(text, nl=False)
    if out is not None and out.suffix == ".md":
        make_folder(out.parent, "--out")
        write_atomic(out, text)
        click.echo(f"wrote {out}", err=True)
    elif out is not None:
        if out.exists() and not out.is_dir():
            raise HpsearchError(f"--out {out}: a file of that name exists; give a folder, or a name ending in .md")
        make_folder(out, "--out")
        written = report_module.write_directory(study, listed, epochs=epochs, spec=spec, out=out)
        click.echo(f"wrote {', '.join(written)} in {out}", err=True)


@main.command()
@study_option()
@storage_option
@click.option("--host", default=DEFAULT_HOST,
              help="Address to listen on; 0.0.0.0 opens the dashboard to the network, with no password.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, help="Port to listen on.")
def dashboard(study_name, storage, host, port):
    """Serve optuna-dashboard on the study's storage and weights until Ctrl-C; prints the study's address."""
    from hpsearch.results import dashboard as dashboard_module
    from hpsearch.storage import storage_url

    url = storage_url(storage)
    name = _load_existing(_study_name(study_name), url).study_name

    def announce(address: str) -> None:
        click.echo(address)
        sys.stdout.flush()  # a script reading the address through a pipe gets it now

    try:
        dashboard_module.serve(url, name, host=host, port=port, announce=announce)
    except KeyboardInterrupt:
        click.echo("dashboard stopped", err=True)


@main.command()
@study_option()
@storage_option
@click.option("--trial", "number", type=click.IntRange(min=0), default=None,
              help="The trial number to export. Default: the best completed trial within the study's limits (with two "
                   "objectives, the most accurate point of the front).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The config file to write: .yaml, .yml or .json. Stored weights go beside it as .safetensors.")
@click.option("--weights/--no-weights", default=True,
              help="Copy the trial's stored weights (if it kept any) beside the config.")
def export(study_name, storage, number, out, weights):
    """Write a trial's config as a file that stands alone: parameters, data split, epochs, seed, metrics, versions."""
    from hpsearch.results import export as export_module
    from hpsearch.results import ranking
    from hpsearch.results.render import or_nan, plural
    from hpsearch.results.trials import objectives as trial_objectives
    from hpsearch.storage import storage_url

    spec = catalog.load_study_spec(study_name) if catalog.find_study_file(study_name) else None
    url = storage_url(storage)
    study = _load_existing(spec.name if spec else study_name, url)
    make_folder(out.parent, "-o")
    trial, copied = export_module.export_trial(study, url, number, out, spec=spec, include_weights=weights)
    click.echo(f"wrote {out} (trial #{trial.number}, val {ranking.val_accuracy(trial):.4f}, "
               f"test {or_nan(record.outcome(trial).test_accuracy):.4f})", err=True)
    if number is None and len(objectives := trial_objectives(study)) > 1:
        size = len(ranking.front(study.get_trials(deepcopy=False), against=objectives[1]))
        click.echo(f"note: trial #{trial.number} is the most accurate of {plural(size, 'trial')} on the front of "
                   f"{' and '.join(objectives)}; `hpsearch best` lists them, --trial N exports another", err=True)
    if copied is not None:
        click.echo(f"wrote {copied} (the trial's stored weights)", err=True)
    elif weights:
        click.echo(f"trial #{trial.number} has no stored weights (only the best trials keep theirs): "
                   f"`hpsearch train --config {out}` trains it again", err=True)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A config written by `hpsearch export`.")
@click.option("--seeds", type=click.IntRange(min=1), default=1,
              help="Train this many times, with the config's seed, seed + 1, and so on.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the weights (seed-S.safetensors), a copy of the config and results.json. "
                   "Default: the config's name without its suffix, plus -trained.")
@device_option
@data_dir_option
@stops_once
def train(config_path, seeds, out, device, data_dir):
    """Train an exported config again; print validation and test accuracy per seed, and the mean and spread."""
    from hpsearch.files import output_folder
    from hpsearch.results.export import read_config
    from hpsearch.training.devicedata import resolve_device

    _quiet_optuna()
    config = read_config(config_path)
    torch_device = resolve_device(device)
    out = out or config_path.with_name(config_path.stem + "-trained")
    with output_folder(out, "--out", kept_if=lambda folder: any(folder.glob("seed-*"))):
        _train_seeds(config, config_path, seeds, out, torch_device, data_dir)


def _train_seeds(config, config_path: Path, seeds: int, out: Path, torch_device, data_dir) -> None:
    """`train`'s work in its output folder: each seed trained, saved and reported, then the summary."""
    from rich.console import Console

    from hpsearch.search.progress import RetrainDisplay
    from hpsearch.training import retrain as retrain_module

    retrain_module.start_out_dir(out, config_path)
    for note in retrain_module.differences(config, torch_device):
        click.echo(f"note: {note}", err=True)
    metrics = config.metrics
    runs = []
    with RetrainDisplay(Console(stderr=True), seeds, config.record.epochs) as display:
        for seed in range(config.record.seed, config.record.seed + seeds):
            display.seed_started(seed)
            retrained = retrain_module.retrain(config, seed, torch_device, data_dir=data_dir,
                                              on_epoch=display.epoch_finished, on_batches=display.batches_done,
                                              progress=display.loading)
            retrain_module.save_retrained(retrained, out, config_path)
            display.seed_finished()
            runs.append(retrained)
            line = f"seed {seed}: val {retrained.val_accuracy:.4f}, test {retrained.test_accuracy:.4f}"
            if seed == config.record.seed and None not in (metrics.get("val_accuracy"), metrics.get("test_accuracy")):
                same = (retrained.val_accuracy, retrained.test_accuracy) == (metrics["val_accuracy"], metrics["test_accuracy"])
                line += (f" (the trial reached val {metrics['val_accuracy']:.4f}, test {metrics['test_accuracy']:.4f}"
                         f"{': identical' if same else ''})")
            click.echo(line)
    summary = retrain_module.results(runs, torch_device)
    write_atomic(out / "results.json", json.dumps(summary, indent=2) + "\n")
    click.echo(f"test accuracy {summary['test_accuracy_mean']:.4f} ± {summary['test_accuracy_std']:.4f} "
               f"(mean ± sample std over {seeds} seed{'s' if seeds > 1 else ''})")
    click.echo(f"wrote {out}/: config{config_path.suffix}, "
               f"{', '.join(f'seed-{r.seed}.safetensors' for r in runs)}, results.json", err=True)


@main.command()
@study_option()
@storage_option
@click.option("--top", type=click.IntRange(min=1), default=3,
              help="Confirm the best this many trials (by single-run validation accuracy, limits respected).")
@click.option("--seeds", type=click.IntRange(min=1), default=3,
              help="New seeds per trial: the study's seed + 1, + 2, ... (never the seed the trial ran with).")
@click.option("--workers", type=click.IntRange(min=1), default=1,
              help="Worker processes on this machine; more can join from other machines with the same command.")
@device_option
@data_dir_option
@mlflow_option
@click.option("--worker", "as_worker", is_flag=True, hidden=True, help="Started by confirm --workers N.")
@stops_once
def confirm(study_name, storage, top, seeds, workers, device, data_dir, mlflow, as_worker):
    """Train the best trials again with new seeds; the best mean validation accuracy becomes the study's winner.

    Results are stored on each trial (its `confirm` attribute) as each seed finishes; running the command
    again trains only what is missing, so --seeds 5 after --seeds 3 trains two more seeds per trial.
    """
    from hpsearch.storage import storage_url

    _check_mlflow(mlflow)
    url = storage_url(storage)
    study = _load_existing(_study_name(study_name), url)
    with _tracker(mlflow, study.study_name, url) or contextlib.nullcontext() as tracker:
        _confirm(study, url, top, seeds, workers, device, data_dir, as_worker, tracker)


def _confirm(study, url, top, seeds, workers, device, data_dir, as_worker, tracker) -> None:
    """confirm's work, its seeds' results sent to `tracker` (or None) as they arrive."""
    from hpsearch.results import report as report_module
    from hpsearch.results.render import plural
    from hpsearch.search import confirm as confirm_module
    from hpsearch.training.devicedata import resolve_device

    def on_seed(job, result) -> None:
        click.echo(_seed_line(job, result))
        if tracker:
            tracker.confirmed(job.trial, result)

    if tracker:
        tracker.study_opened(study)
    torch_device = resolve_device(device)
    chosen = confirm_module.chosen(study, top)
    wanted = confirm_module.seeds_for(confirm_module.base_seed(study), seeds)
    todo = confirm_module.missing(study, top, seeds)
    seed_list = f"seed{'s' if seeds > 1 else ''} {', '.join(map(str, wanted))}"
    if as_worker:
        confirm_module.Confirmation(study, url, top, seeds, torch_device, data_dir=data_dir).work(on_seed=on_seed)
        return
    if not todo:
        click.echo(f"nothing to do: the best {plural(len(chosen), 'trial')} each hold {seed_list} already "
                   f"(--seeds or --top larger confirms further)", err=True)
    else:
        click.echo(f"confirming the best {plural(len(chosen), 'trial')} of study {study.study_name} with {seed_list} "
                   f"on {torch_device}: {plural(len(todo), 'training run')} to go"
                   + (f", {len(chosen) * seeds - len(todo)} stored already" if len(todo) < len(chosen) * seeds else "")
                   + (f", {workers} workers" if workers > 1 else ""), err=True)
        if workers == 1:
            confirm_module.Confirmation(study, url, top, seeds, torch_device, data_dir=data_dir).work(on_seed=on_seed)
        else:
            for said in confirm_module.run_workers(study.study_name, url, top, seeds, workers, device, data_dir,
                                                   mlflow=tracker and tracker.uri):
                click.echo(said, nl=False)
    study = _load_existing(study.study_name, url)  # a fresh read: the results are on finished trials
    if tracker:
        tracker.summarize(study)
    table, verdict = report_module.confirmation(study.get_trials(deepcopy=False))
    click.echo("\n".join(report_module.markdown_table(report_module.CONFIRM_HEADER, table) + ["", *verdict]))


def _seed_line(job, result: record.SeedResult) -> str:
    if not result.trained:
        return f"trial #{job.trial.number} seed {job.seed}: {escape.terminal(result.failure)}"
    return (f"trial #{job.trial.number} seed {job.seed}: val {result.val_accuracy:.4f}, "
            f"test {result.test_accuracy:.4f} ({result.seconds:.1f} s)")


def _remembered_spec(study):
    """The study file the study was made from, if it is still where it was and still reads (its target and
    limits are not stored with the study); else None."""
    from hpsearch.errors import SpecError

    path = record.study_record(study).spec_path
    try:
        spec = catalog.load_study_spec(path) if path and Path(path).is_file() else None
    except SpecError:
        return None
    return spec if spec is not None and spec.name == study.study_name else None


def _study_name(name_or_path: str) -> str:
    """The Optuna study name a --study argument means: a study file's name, else the argument."""
    return catalog.load_study_spec(name_or_path).name if catalog.find_study_file(name_or_path) else name_or_path
