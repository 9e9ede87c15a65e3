"""The `hpsearch` command: each command parses its options, calls one function of hpsearch.api, and prints
what it returns. No decision is made here that a test could not reach through the api.

Results go to stdout, progress and messages to stderr. Expected problems (a bad study file, a missing dataset, an
unreachable storage) end with one line per problem and exit status 2, at the group's one error boundary
(Commands). The api imports the layers a command uses when it runs: torch, Optuna and scikit-learn take seconds
to load, which `--help`, `studies`, `params`, a refused option conflict and the commands that only read do without.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shlex
import sys
from pathlib import Path

import click

from hpsearch import __version__, api, escape, stopping
from hpsearch.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_HOST,
    DEFAULT_KEEP,
    DEFAULT_PORT,
    DEFAULT_STORAGE,
)
from hpsearch.errors import ClusterError, HpsearchError, Terminated, interruption
from hpsearch.studyfile import catalog
from hpsearch.studyfile import params as params_module
from hpsearch.training.fetch import SOURCES, EveryFewSeconds
from hpsearch.words import plural, yaml_value

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_ALL_FAILED = 1  # the run went as asked, and every trial it ran failed
WATCH_S = 5.0  # status --watch: seconds between readings

storage_option = click.option(
    "--storage", metavar="URL", default=None,
    help=f"Optuna storage URL. Default: $HPSEARCH_STORAGE, else {DEFAULT_STORAGE} (a file in the current folder).")


def study_option(text: str = "A study file (a path, ./studies/NAME.yaml, or a shipped study NAME: the study its name "
                              "gives), else the name of a study in the storage."):
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
            then = ("its copy resumes as this SLURM task starts again (preempted, requeued, near its time limit) or in "
                    "a later submission (cancelled)" if os.environ.get("SLURM_JOB_ID") else
                    "run the same command again to resume the study")
            click.echo(f"{interruption(exc)}: {then}", err=True)
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
    """While the command runs, Ctrl-C (SIGINT) and SIGTERM (SLURM, Kubernetes, `timeout`) stop it at its next safe
    point (stopping.py), through one path: KeyboardInterrupt, or its subclass errors.Terminated, which records the
    running trial as failed and queues its copy. A second Ctrl-C stops it at once.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with stopping.on_signals():
            return command(*args, **kwargs)

    return wrapper


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, "--version", prog_name="hpsearch")
def main() -> None:
    """Hyperparameter search for image classifiers: study files in, pruned Optuna trials out."""


def _quiet_optuna() -> None:
    """Optuna's own log lines silenced: hpsearch prints its own. (The api leaves a library user's logging alone.)"""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _seconds(ctx, param, value: float | None) -> float | None:
    """A duration: finite and positive (nan would never time out, inf never either)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"give a finite number of seconds above 0 (got {value})")
    return value


def run_options(command):
    """The options every way of running a study shares (`run`, `worker`, `submit`): how many trials, what stops it
    early, how its trials train and record. One set, so that a SLURM array stops by the same rules as a run;
    their conflicts are refused before the command body imports anything heavy."""
    options = [
        click.option("--n-trials", type=click.IntRange(min=1), default=None,
                     help="Trials this run adds, over all its workers (all the tasks of a `submit` array). Default: "
                          "the study's budget.trials."),
        click.option("--until", type=click.IntRange(min=1), default=None,
                     help="Instead of --n-trials: run until the study holds this many finished (complete or "
                          "pruned) trials, whatever earlier runs did."),
        click.option("--timeout", type=float, default=None, callback=_seconds,
                     help="Stop starting new trials after this many seconds (each task's, under `submit`)."),
        click.option("--seed", type=click.IntRange(0, params_module.MAX_SEED), default=None,
                     help="Sampler seed. Default: the study file's sampler.seed."),
        data_dir_option,
        click.option("--stop-at-target/--no-stop-at-target", default=True,
                     help="End the run once a sampled trial of this run reaches the study's target (a baseline that "
                          "meets it is noted and the search goes on); --no-stop-at-target runs to --n-trials or "
                          "--until."),
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
    def checked(*args, n_trials, until, **kwargs):
        """Conflicting options refused before the command imports torch and Optuna (seconds)."""
        _one_total(n_trials, until)
        return command(*args, n_trials=n_trials, until=until, **kwargs)

    for option in reversed(options):
        checked = option(checked)
    return checked


def trial_options(command):
    """`run` and `worker`: which study, where, on what device, and the run options."""
    command = run_options(command)
    for option in reversed([study_option(f"The study file: {catalog.LOOKUP_ORDER}."), storage_option, device_option]):
        command = option(command)
    return command


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
    _trials(study_name, storage=storage, n_trials=n_trials, until=until, timeout=timeout, seed=seed, device=device,
            data_dir=data_dir, stop_at_target=stop_at_target, heartbeat=heartbeat, keep_weights=keep_weights,
            mlflow=mlflow, accept_change=accept_change, workers=workers, gpus=gpus, trials_per_gpu=trials_per_gpu,
            run_id=run_id)


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
    _trials(study_name, storage=storage, n_trials=n_trials, until=until, timeout=timeout, seed=seed, device=device,
            data_dir=data_dir, stop_at_target=stop_at_target, heartbeat=heartbeat, keep_weights=keep_weights,
            mlflow=mlflow, accept_change=accept_change, run_id=run_id, joining=True)


def _trials(study_name: str, *, joining: bool = False, **options) -> None:
    """`run` and `worker`: api.run, shown as it goes; then what the run did. A worker that `run --workers` started
    (it has their run id) prints the study's summary and leaves the verdict to that run; a task of a `submit` array
    (`run` with the array's run id) ends its log with one line, not the study's summary again in every log."""
    _quiet_optuna()
    from hpsearch.results.render import render

    pooled = joining and options["run_id"] is not None
    result = api.run(study_name, finish=not pooled, progress=functools.partial(_run_display, joining=joining),
                     **options)
    if result.end is None:
        click.echo(render(result.summary, "text"))
    else:
        _say_end(result, options["until"], task=not joining and options["run_id"] is not None)


def _run_display(plan: api.RunPlan, *, joining: bool):
    """The run's live progress on stderr: RunDisplay for a run in this process, ParallelDisplay for workers."""
    from rich.console import Console

    from hpsearch.results.trials import baseline_note
    from hpsearch.search.progress import ParallelDisplay, RunDisplay
    from hpsearch.storage import mask

    spec, console = plan.spec, Console(stderr=True)
    header = (f"{'worker on ' if joining else ''}study {spec.name} ({spec.describe_epochs()}, target "
              f"{spec.describe_target()}{_limits_and_objectives(spec)}) on {mask(plan.storage)}")
    counting = plan.options.until is not None
    note = functools.partial(baseline_note, spec=spec)
    if not plan.in_workers:
        return RunDisplay(console, header, plan.total, spec.budget.epochs, counting_study=counting, note=note)
    gpus = sorted({s.gpu for s in plan.slots if s.gpu is not None})
    where = f"GPUs {','.join(map(str, gpus))}" if gpus else plan.slots[0].device
    return ParallelDisplay(console, f"{header}; {len(plan.slots)} workers on {where}", plan.total, spec.budget.epochs,
                           counting_study=counting, run_id=plan.options.run_id, note=note)


def _limits_and_objectives(spec) -> str:
    """', limits params <= 100,000, objectives val_accuracy and params' for a run's header; '' for neither."""
    from hpsearch.studyfile.limits import describe

    limits = describe(spec.limits)
    return ((f", limits {limits}" if limits != "none" else "")
            + (f", objectives {' and '.join(spec.objectives)}" if len(spec.objectives) > 1 else ""))


def _say_end(result: api.RunResult, until: int | None, task: bool = False) -> None:
    """What the run did (search/finish.py decides), its summary and time to target; exit status 1 when every
    trial of the run failed."""
    from hpsearch.results.render import render
    from hpsearch.results.trials import reached_line

    end = result.end
    if end.nothing_to_do:
        click.echo(f"nothing to do: the study already holds {plural(end.finished, 'finished trial')} "
                   f"(--until {until})", err=True)
    elif end.reached is not None:
        click.echo(escape.terminal(reached_line(end.reached, result.spec)), err=True)
    if task:
        click.echo(f"this task's part is done: {plural(end.trials, 'trial')} here, "
                   f"{plural(end.finished, 'finished trial')} in the study (`hpsearch status` and `hpsearch best` "
                   "show it)")
    else:
        click.echo(render(end.summary, "text"))
        click.echo("\n".join(end.pace))
    if end.all_failed is not None:
        reason, count = end.all_failed
        click.echo(f"error: every trial of this run failed ({plural(end.trials, 'trial')}); the most common reason "
                   f"({count} of {end.trials}): {escape.terminal(reason)}", err=True)
        sys.exit(EXIT_ALL_FAILED)


def _one_total(n_trials: int | None, until: int | None) -> None:
    if n_trials is not None and until is not None:
        raise click.UsageError("give --n-trials (trials to add) or --until (a total to reach), not both")


@main.command()
@study_option(f"The study file: {catalog.LOOKUP_ORDER}.")
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
@run_options
@click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="ARG",
              help="One more sbatch option for every task, such as --sbatch-arg=--cpus-per-task=4; repeatable.")
@click.option("--one-node", is_flag=True,
              help="Every task runs on one node (a one-node cluster, or --sbatch-arg=--nodelist=NODE): allows an "
                   "SQLite storage, and checkpoints, weights and logs on that node's disk.")
@click.option("--dry-run", is_flag=True, help="Print the batch script and submit nothing.")
def submit(study_name, storage, jobs, gpus_per_job, trials_per_gpu, partition, time_limit, sbatch_args, one_node,
           dry_run, mlflow, **options):
    """Run a study as a SLURM job array of workers on its storage, preemption-safe.

    Each task is `hpsearch run` with the options given here, so the array stops as a run does: after --n-trials
    over all its tasks or once the study holds --until, at --timeout, or once a trial reaches the study's target
    (unless --no-stop-at-target). Each task records its running trial when SLURM stops it (scancel, preemption, a
    time limit) and comes back after a preemption or near its time limit; the trial's copy resumes from its
    checkpoint.
    """
    from hpsearch.storage import mask, secrets

    if trials_per_gpu is not None and not gpus_per_job:
        raise click.UsageError("--trials-per-gpu needs --gpus-per-job")
    if storage is not None and secrets(storage):
        raise ClusterError("--storage holds a password, which `ps` and shell history show: export "
                           "HPSEARCH_STORAGE=URL instead; it travels to the tasks in their environment")
    if mlflow and secrets(mlflow):
        raise ClusterError("--mlflow holds a password, which `ps` and shell history show: export "
                           "MLFLOW_TRACKING_URI=URI and give --mlflow alone; it travels to the tasks in their "
                           "environment")
    done = api.submit(study_name, jobs=jobs, storage=storage, gpus_per_job=gpus_per_job, trials_per_gpu=trials_per_gpu,
                      partition=partition, time=time_limit, sbatch_args=sbatch_args, one_node=one_node, mlflow=mlflow,
                      dry_run=dry_run, **options)
    if done.job_id is None:
        click.echo(done.script, nl=False)
        return
    job, job_id = done.job, done.job_id
    study = shlex.quote(study_name)
    said = (f"submitted job {job_id}: {plural(jobs, 'task')} of `hpsearch run` on study {job.name}, storage "
            f"{mask(done.storage)}" + (f", MLflow {mask(job.mlflow)}" if job.mlflow is not None else "") + "\n"
            f"stops:  {done.stops}\n"
            f"follow: hpsearch status --study {study} --watch; squeue -j {job_id}; each task's log: "
            f"{job.log(job_id)}\n"
            f"stop:   hpsearch stop --study {study} (running trials stop at an epoch end and resume in a later run; "
            f"--discard-queued drops them), or scancel {job_id}")
    click.echo("\n".join(escape.terminal(line) for line in said.split("\n")))


@main.command()
@click.argument("names", nargs=-1, metavar="[NAME]...", type=click.Choice(list(SOURCES)))
@data_dir_option
@click.option("--mirror", metavar="URL", default=None,
              help="Fetch each file as URL/FILE instead of from its official source, checked all the same (a local "
                   "copy of the official files). Default: $HPSEARCH_DATA_MIRROR.")
def fetch(names, data_dir, mirror):
    """Download the datasets the shipped studies read from their official sources, check each file's size and
    sha256, and lay them out in the data folder where `run` reads them. Without NAME, list what it fetches."""
    if not names:
        _echo_columns([("name", "download", "official source"),
                       *((s.name, f"{s.size / 1e6:,.0f} MB", s.homepage) for s in api.data_sources())])
        return
    for name in names:
        where = api.fetch(name, data_dir=data_dir, mirror=mirror,
                          progress=EveryFewSeconds(lambda line: click.echo(escape.terminal(line), err=True)))
        click.echo(f"{name}: {escape.terminal(str(where))}")


@main.command()
def studies():
    """List the shipped studies: name, dataset, epoch budget, target."""
    rows = [("name", "dataset", "epochs", "target", "baselines")]
    for spec in api.studies():
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
    """List every parameter a study file can search or fix, with its default and allowed values; then the families
    and datasets that installed plugins add, with their builders' parameters."""
    from hpsearch.studyfile import plugins
    from hpsearch.studyfile.families import FAMILIES, MODEL_PARAMS

    def echo(param, own: str = "", families: str = "") -> None:
        allowed = ", ".join(map(yaml_value, param.choices)) if param.kind == "choice" else (
            "true, false" if param.kind == "bool" else
            f"list of integers >= {param.low:g}" if param.kind == "ints" else f"{param.kind} in {param.bounds_text()}")
        if param.name == "family":
            allowed += "".join(f", {name}" for name in plugins.plugin_families()) + ", or package.module:function"
        click.echo(escape.terminal(f"{param.name:<16} {param.help}") + "\n" +
                   escape.terminal(f"{'':<16} default {yaml_value(param.default)}{own}; {allowed}{families}"))

    for param in params_module.PARAMS:
        own = "".join(f" ({f.name}: {yaml_value(f.defaults[param.name])})" for f in FAMILIES.values() if param.name in f.defaults)
        takes = [f.name for f in FAMILIES.values() if param.name in f.params]
        echo(param, own, f"; families: {', '.join(takes)}" if param.name in MODEL_PARAMS else "")
    for family in plugins.plugin_families().values():
        click.echo("\n" + escape.terminal(f"family {family.name} (a plugin's): {family.about}; built by {family.builder}"))
        for param in params_module.builder_params(family.name):
            echo(param)
    for dataset in plugins.plugin_datasets().values():
        shape = "x".join(map(str, dataset.input_shape)) if dataset.input_shape else "its own size"
        click.echo("\n" + escape.terminal(f"dataset {dataset.name} (a plugin's): {shape}, {dataset.classes or 'its own'} "
                                           f"classes; read by {dataset.builder}"))


@main.command()
@study_option()
@storage_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text")
def best(study_name, storage, fmt):
    """Print the best trial of a study: parameters, validation and test accuracy, size, time; for a study with two
    objectives, its Pareto front."""
    from hpsearch.results.render import render

    _quiet_optuna()
    click.echo(render(api.summary(study_name, storage=storage), fmt))


@main.command()
@study_option()
@storage_option
@click.option("--watch", type=float, is_flag=False, flag_value=WATCH_S, default=None, metavar="[SECONDS]",
              callback=_seconds, help=f"Show it again every SECONDS (default {WATCH_S:g}) until Ctrl-C.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(study_name, storage, watch, fmt):
    """Show what a study is doing now, from any machine that reaches its storage: its running trials (epoch,
    worker, host, SLURM task, last heartbeat), its queued copies, its trials by state, trials whose worker went
    silent, each working run's progress against its goal and the target, and a stop request."""
    import json
    import time

    from hpsearch.results.status import lines

    _quiet_optuna()
    reader = api.status_reader(study_name, storage=storage)

    def shown() -> str:
        now = reader.read()
        return json.dumps(now.as_dict(), indent=2) if fmt == "json" else "\n".join(lines(now))

    if watch is None:
        click.echo(shown())
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the watch, and is no error
        while True:
            said = shown()
            click.clear()
            click.echo(f"{time.strftime('%H:%M:%S')}, every {watch:g} s (Ctrl-C ends)\n{said}")
            time.sleep(watch)


@main.command()
@study_option()
@storage_option
@click.option("--discard-queued", is_flag=True,
              help="Also discard the study's queued copies (failed as \"discarded by hpsearch stop\", their "
                   "checkpoints removed), and the trials this stops, instead of leaving them to resume.")
def stop(study_name, storage, discard_queued):
    """Stop a study's runs cleanly, from any machine that reaches its storage (a SLURM array's login node).

    Every run recorded so far starts no new trial; its running trials stop at their next epoch end, recorded as
    failed ("stopped by hpsearch stop") with their copies queued to resume in a later run. A run started after
    this goes on.
    """
    from hpsearch.results.render import plural
    from hpsearch.results.status import describe_stop

    _quiet_optuna()
    done = api.stop(study_name, storage=storage, discard_queued=discard_queued)
    click.echo(escape.terminal(describe_stop(done.request)))
    if done.running:
        click.echo("running now, to stop at their next epoch end: " + ", ".join(f"#{n}" for n in done.running))
    if discard_queued:
        click.echo(f"discarded {plural(len(done.discarded), 'queued trial')}"
                   + (": " + ", ".join(f"#{n}" for n in done.discarded) if done.discarded else ""))


@main.command()
@study_option()
@storage_option
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the table to this Markdown file (a name ending in .md), or else make this folder "
                   "and write report.md, PNG plots and an index.html showing both into it.")
def report(study_name, storage, out):
    """Print the baselines beside the best searched trials, as one Markdown table."""
    _quiet_optuna()
    done = api.report(study_name, storage=storage, out=out)
    click.echo(done.markdown, nl=False)
    if out is not None and out.suffix == ".md":
        click.echo(f"wrote {out}", err=True)
    elif out is not None:
        click.echo(f"wrote {', '.join(p.name for p in done.written)} in {out}", err=True)


@main.command()
@study_option()
@storage_option
@click.option("--host", default=DEFAULT_HOST,
              help="Address to listen on; 0.0.0.0 opens the dashboard to the network, with no password.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, help="Port to listen on.")
def dashboard(study_name, storage, host, port):
    """Serve optuna-dashboard on the study's storage and weights until Ctrl-C; prints the study's address."""
    def announce(address: str) -> None:
        click.echo(address)
        sys.stdout.flush()  # a script reading the address through a pipe gets it now

    _quiet_optuna()
    try:
        api.dashboard(study_name, storage=storage, host=host, port=port, announce=announce)
    except KeyboardInterrupt:
        click.echo("dashboard stopped", err=True)


@main.command()
@study_option()
@storage_option
@click.option("--trial", "number", type=click.IntRange(min=0), default=None,
              help="The trial number to export. Default: the trial `hpsearch best` names, the best completed trial "
                   "within the study's limits, baselines included (with two objectives, the most accurate point of "
                   "the front); a baseline is said to be one, with the number of the best searched trial.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The config file to write: .yaml, .yml or .json. Stored weights go beside it as .safetensors.")
@click.option("--weights/--no-weights", default=True,
              help="Copy the trial's stored weights (if it kept any) beside the config.")
def export(study_name, storage, number, out, weights):
    """Write a trial's config as a file that stands alone: parameters, data split, epochs, seed, metrics, versions."""
    _quiet_optuna()
    done = api.export(study_name, out, storage=storage, trial=number, weights=weights)
    trial = done.trial
    test = float("nan") if trial.test_accuracy is None else trial.test_accuracy
    baseline = f"baseline {escape.terminal(trial.baseline)}, " if trial.baseline else ""
    click.echo(f"wrote {out} (trial #{trial.number}, {baseline}val {trial.val_accuracy:.4f}, test {test:.4f})", err=True)
    for note in done.chosen:
        click.echo(escape.terminal(note), err=True)
    if done.front is not None:
        size, objectives = done.front
        click.echo(f"note: trial #{trial.number} is the most accurate of {plural(size, 'trial')} on the front of "
                   f"{' and '.join(objectives)}; `hpsearch best` lists them, --trial N exports another", err=True)
    if done.weights is not None:
        click.echo(f"wrote {done.weights} (the trial's stored weights)", err=True)
    elif done.no_weights_why:
        click.echo(f"trial #{trial.number} has no stored weights ({escape.terminal(done.no_weights_why)}): "
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
    _quiet_optuna()
    done = api.train(config_path, seeds=seeds, out=out, device=device, data_dir=data_dir, progress=_train_display,
                     on_seed=_retrained_line)
    click.echo(f"test accuracy {done.results['test_accuracy_mean']:.4f} ± {done.results['test_accuracy_std']:.4f} "
               f"(mean ± sample std over {seeds} seed{'s' if seeds > 1 else ''})")
    click.echo(f"wrote {done.out}/: config{config_path.suffix}, "
               f"{', '.join(f'seed-{r.seed}.safetensors' for r in done.runs)}, results.json", err=True)


def _train_display(plan):
    """`train`'s notes (what differs from the trial's own run), then its live progress on stderr."""
    from rich.console import Console

    from hpsearch.search.progress import RetrainDisplay

    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    return RetrainDisplay(Console(stderr=True), len(plan.seeds), plan.config.record.epochs)


def _retrained_line(run, config) -> None:
    """A seed's accuracies; the config's own seed's beside what the trial reached (identical on the same machine)."""
    line = f"seed {run.seed}: val {run.val_accuracy:.4f}, test {run.test_accuracy:.4f}"
    reached = config.metrics.get("val_accuracy"), config.metrics.get("test_accuracy")
    if run.seed == config.record.seed and None not in reached:
        same = (run.val_accuracy, run.test_accuracy) == reached
        line += f" (the trial reached val {reached[0]:.4f}, test {reached[1]:.4f}{': identical' if same else ''})"
    click.echo(line)


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
    from hpsearch.results.report import markdown_table

    _quiet_optuna()
    done = api.confirm(study_name, storage=storage, top=top, seeds=seeds, workers=workers, device=device,
                       data_dir=data_dir, mlflow=mlflow, as_worker=as_worker,
                       progress=None if as_worker else _confirm_plan, on_seed=_seed_line)
    if done is not None:
        for said in done.said:
            click.echo(said, nl=False)
        click.echo("\n".join(markdown_table(done.table.header, done.table.rows) + ["", *done.verdict]))


def _confirm_plan(plan):
    """What the confirmation is about to do, in one line on stderr."""
    seed_list = f"seed{'s' if len(plan.seeds) > 1 else ''} {', '.join(map(str, plan.seeds))}"
    stored = plan.trials * len(plan.seeds) - plan.to_train
    if not plan.to_train:
        click.echo(f"nothing to do: the best {plural(plan.trials, 'trial')} each hold {seed_list} already "
                   f"(--seeds or --top larger confirms further)", err=True)
    else:
        click.echo(f"confirming the best {plural(plan.trials, 'trial')} of study {plan.study} with {seed_list} "
                   f"on {plan.device}: {plural(plan.to_train, 'training run')} to go"
                   + (f", {stored} stored already" if stored else "")
                   + (f", {plan.workers} workers" if plan.workers > 1 else ""), err=True)
    return contextlib.nullcontext()


def _seed_line(job, result) -> None:
    """One seed's result (a record.SeedResult), in one line on stdout."""
    if not result.trained:
        click.echo(f"trial #{job.trial.number} seed {job.seed}: {escape.terminal(result.failure)}")
    else:
        click.echo(f"trial #{job.trial.number} seed {job.seed}: val {result.val_accuracy:.4f}, "
                   f"test {result.test_accuracy:.4f} ({result.seconds:.1f} s)")
