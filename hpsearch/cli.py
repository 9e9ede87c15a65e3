"""The `hpsearch` command: each command parses its options, calls one function of hpsearch.api, and prints
what it returns. No decision is made here that a test could not reach through the api.

Results go to stdout, progress and messages to stderr. Expected problems (a bad study file, a missing dataset, an
unreachable storage) end with one line per problem and exit status 2, at the group's one error boundary
(Commands). The api imports the layers a command uses when it runs: torch, Optuna and scikit-learn take seconds
to load, which `--help`, `studies`, `params`, a refused option conflict and the commands that only read do without.
"""

from __future__ import annotations

import functools
import contextlib
import math
import sys
from pathlib import Path

import click

from hpsearch import __version__, api, escape
from hpsearch.defaults import DEFAULT_HEARTBEAT_S, DEFAULT_HOST, DEFAULT_KEEP, DEFAULT_PORT, DEFAULT_STORAGE
from hpsearch.errors import ClusterError, HpsearchError, Terminated, interruption
from hpsearch.search.signals import raising_on_signals
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


def _quiet_optuna() -> None:
    """Optuna's own log lines silenced: hpsearch prints its own. (The api leaves a library user's logging alone.)"""
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
    def checked(*args, n_trials, until, **kwargs):
        """Conflicting options refused before the command imports torch and Optuna (seconds)."""
        _one_total(n_trials, until)
        return command(*args, n_trials=n_trials, until=until, **kwargs)

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
    (it has their run id) prints the study's summary and leaves the verdict to that run."""
    _quiet_optuna()
    from hpsearch.results.render import render

    pooled = joining and options["run_id"] is not None
    result = api.run(study_name, finish=not pooled, progress=functools.partial(_run_display, joining=joining),
                     **options)
    if result.end is None:
        click.echo(render(result.summary, "text"))
    else:
        _say_end(result, options["until"])


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


def _say_end(result: api.RunResult, until: int | None) -> None:
    """What the run did (search/finish.py decides), its summary and time to target; exit status 1 when every
    trial of the run failed."""
    from hpsearch.results.render import plural, render
    from hpsearch.results.trials import reached_line

    end = result.end
    if end.nothing_to_do:
        click.echo(f"nothing to do: the study already holds {plural(end.finished, 'finished trial')} "
                   f"(--until {until})", err=True)
    elif end.reached is not None:
        click.echo(escape.terminal(reached_line(end.reached, result.spec)), err=True)
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
    from hpsearch.storage import mask, secrets

    _one_total(n_trials, until)
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
                      partition=partition, time=time_limit, n_trials=n_trials, until=until, sbatch_args=sbatch_args,
                      one_node=one_node, mlflow=mlflow, dry_run=dry_run)
    if done.job_id is None:
        click.echo(done.script, nl=False)
        return
    job, job_id = done.job, done.job_id
    click.echo(f"submitted job {job_id}: {jobs} tasks of `hpsearch run` on study {job.name}, storage "
               f"{mask(done.storage)}" + (f", MLflow {mask(job.mlflow)}" if job.mlflow is not None else "") + "\n"
               f"follow: squeue -j {job_id}; each task's log: {job.log(job_id)}\n"
               f"stop:   scancel {job_id} (running trials are recorded as failed; submit again to resume them)")


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

    _quiet_optuna()
    click.echo(render(api.summary(study_name, storage=storage), fmt))


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
              help="The trial number to export. Default: the best completed trial within the study's limits (with two "
                   "objectives, the most accurate point of the front).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The config file to write: .yaml, .yml or .json. Stored weights go beside it as .safetensors.")
@click.option("--weights/--no-weights", default=True,
              help="Copy the trial's stored weights (if it kept any) beside the config.")
def export(study_name, storage, number, out, weights):
    """Write a trial's config as a file that stands alone: parameters, data split, epochs, seed, metrics, versions."""
    from hpsearch.results.render import plural

    _quiet_optuna()
    done = api.export(study_name, out, storage=storage, trial=number, weights=weights)
    trial = done.trial
    test = float("nan") if trial.test_accuracy is None else trial.test_accuracy
    click.echo(f"wrote {out} (trial #{trial.number}, val {trial.val_accuracy:.4f}, test {test:.4f})", err=True)
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
    from hpsearch.results.render import plural

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
