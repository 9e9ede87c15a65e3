"""`hpsearch status`: what a study is doing now, from any machine that reaches its storage.

Running trials (epoch, worker, host, SLURM task, last heartbeat), queued copies and what they resume, counts
by state, trials whose worker went silent, each working run's progress against its goal and the target, and a
stop request. Torch-free and light: a study's trials are read in brief (trialrows.trials_in_brief: state,
values and the few attributes shown here, a full read of the unfinished ones only), so that a study of
thousands of trials answers at once, again and again under --watch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpsearch import escape
from hpsearch import record
from hpsearch.defaults import DEFAULT_HEARTBEAT_S
from hpsearch.errors import HpsearchError
from hpsearch.results import ranking
from hpsearch.results.trials import FINISHED, first_reaching, is_warm_start
from hpsearch.storage import mask, open_existing, optuna_private
from hpsearch.studyfile import params as P
from hpsearch.studyfile.types import StudySpec

STALE_AFTER = 2  # heartbeats: a running trial silent this long has lost its worker (retries.fail_lost_trials' rule)


@dataclass(frozen=True)
class RunningTrial:
    number: int
    epoch: int  # epochs reported so far
    epochs: int | None  # epochs it trains, where known
    val: float | None  # its last validation accuracy
    worker: str  # host:pid
    slurm: str | None  # 'JOB_TASK (start N)' for a SLURM array task
    heartbeat_s: float | None  # seconds since its last heartbeat (None: its storage keeps none)
    stale: bool  # silent for STALE_AFTER heartbeats of its run: its worker is gone
    copy_of: int | None  # the trial it continues
    resumed_at: int | None  # the epoch it resumed at, from a checkpoint
    baseline: str | None


@dataclass(frozen=True)
class QueuedTrial:
    number: int
    copy_of: int | None  # the trial it continues, or None for a queued baseline or start-up draw
    resumes_at: int  # the epoch it starts at where its checkpoint is visible (1 without one)
    baseline: str | None


@dataclass(frozen=True)
class RunProgress:
    run: str  # the run's id, shortened
    goal: str  # '--until 60' or '--n-trials 20'
    done: int  # finished trials in the study (--until), or trials this run started (--n-trials)
    total: int
    running: int  # its trials running now
    stops_at_target: bool
    timeout: float | None
    slurm_job: str | None  # the SLURM job array it runs as


@dataclass(frozen=True)
class StudyStatus:
    study: str
    storage: str  # masked
    counts: dict[str, int]  # by state, trials copied by warm_start not among them
    warm_start: int
    running: list[RunningTrial]
    queued: list[QueuedTrial]
    runs: list[RunProgress]  # the runs with trials running now
    target: str | None  # 'val_accuracy >= 98.50%' (None: no target, or no study file to say it)
    reached: int | None  # the first sampled trial to meet it
    best: tuple[int, float] | None  # the single-run best: number, validation accuracy
    budget: int | None  # the study file's budget.trials
    stop: dict[str, Any] | None  # the study's stop request (StudyRecord.stop_request)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_study(storage, name: str, storage_url: str) -> int:
    """The id of study `name` in `storage` (opened from `storage_url`), or HpsearchError naming those there. Unlike
    optuna.get_all_study_summaries, reads no trial."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        names = ", ".join(s.study_name for s in storage.get_all_studies()) or "none"
        raise HpsearchError(f"no study named {name!r} in {mask(storage_url)} (studies there: {names}; --storage "
                            "chooses another)") from None


class StatusReader:
    """A study's storage, opened once for as many readings as --watch takes."""

    def __init__(self, storage_url: str, name: str, spec: StudySpec | None = None):
        self.url, self.name, self.spec = storage_url, name, spec  # spec: its study file, for the target and budget
        self.storage = open_existing(storage_url)
        self.study_id = find_study(self.storage, name, storage_url)

    def read(self, heartbeat: int | None = None) -> StudyStatus:
        """The study now. `heartbeat`, where given, is the seconds between heartbeats by which every running trial
        is judged stale (else its run's)."""
        storage, study_id, spec = self.storage, self.study_id, self.spec
        every = storage.trials_in_brief(study_id, record.BRIEF_USER_KEYS, record.BRIEF_SYSTEM_KEYS)
        trials = [t for t in every if not is_warm_start(t)]
        records = record.runs_recorded(storage, study_id)
        ages = storage.heartbeat_ages(study_id)
        stored = record.stored_study_record(storage, study_id)
        study_epochs = stored.epochs

        def interval(trial: FrozenTrial) -> int:
            return heartbeat or records.get(record.run_id(trial), {}).get("heartbeat") or DEFAULT_HEARTBEAT_S

        running = [_running(t, study_epochs, ages.get(optuna_private.trial_id(t)), interval(t))
                   for t in trials if t.state == TrialState.RUNNING]
        queued = [_queued(t) for t in trials if t.state == TrialState.WAITING]
        counts = {state.name.lower(): sum(t.state == state for t in trials)
                  for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                TrialState.WAITING)}
        ranked = ranking.ranked(trials)
        reached = first_reaching(trials, spec) if spec is not None and spec.target is not None else None
        return StudyStatus(
            study=self.name, storage=mask(self.url), counts=counts, warm_start=len(every) - len(trials),
            running=running, queued=queued, runs=_runs(trials, records),
            target=spec.describe_target() if spec is not None and spec.target is not None else None,
            reached=reached.number if reached is not None else None,
            best=(ranked[0].number, ranking.val_accuracy(ranked[0])) if ranked else None,
            budget=spec.budget.trials if spec is not None else None, stop=stored.stop_request)


def _running(trial: FrozenTrial, study_epochs: int | None, age: float | None, heartbeat: int) -> RunningTrial:
    curve = trial.intermediate_values or dict(enumerate(record.stored_curve(trial), start=1))
    epoch = max(curve, default=0)
    where, config = record.provenance(trial), record.config(trial)
    job = where.slurm or {}
    slurm = (f"{job.get('array_job_id', job.get('job_id'))}"
             + (f"_{job['array_task_id']}" if "array_task_id" in job else "")
             + f" (start {job.get('restart_count', 0) + 1})") if job else None
    epochs = P.trial_epochs(config, study_epochs) if config is not None and study_epochs else None
    return RunningTrial(number=trial.number, epoch=epoch, epochs=epochs, val=curve.get(epoch),
                        worker=where.worker or "starting", slurm=slurm, heartbeat_s=age,
                        stale=age is not None and age > STALE_AFTER * heartbeat, copy_of=record.last_attempt(trial),
                        resumed_at=record.resumed_from(trial), baseline=record.baseline(trial))


def _queued(trial: FrozenTrial) -> QueuedTrial:
    """A copy starts after the last epoch its chain reported (the checkpoint is saved before the report)."""
    return QueuedTrial(number=trial.number, copy_of=record.last_attempt(trial),
                       resumes_at=max(trial.intermediate_values, default=0) + 1, baseline=record.baseline(trial))


def _runs(trials: list[FrozenTrial], records: dict[str, dict[str, Any]]) -> list[RunProgress]:
    """The progress of each run with a trial running now, as far as it recorded its goal."""
    working = {record.run_id(t) for t in trials if t.state == TrialState.RUNNING} - {None}
    retried = record.retried_numbers(trials)
    finished = sum(t.state in FINISHED for t in trials)
    progress = []
    for run, told in records.items():
        if run not in working:
            continue
        ours = [t for t in trials if record.run_id(t) == run]
        until = told.get("until")
        progress.append(RunProgress(
            run=run[:8], goal=f"--until {until}" if until is not None else f"--n-trials {told.get('n_trials')}",
            done=finished if until is not None else sum(t.number not in retried for t in ours),
            total=until if until is not None else told.get("n_trials") or 0,
            running=sum(t.state == TrialState.RUNNING for t in ours), stops_at_target=told.get("stop_at_target", True),
            timeout=told.get("timeout"), slurm_job=told.get("slurm_job")))
    return progress


def lines(status: StudyStatus) -> list[str]:
    """The status as text, a line each, escaped for a terminal (a worker's host, a stop request's author)."""
    c = status.counts
    finished = c["complete"] + c["pruned"]
    said = [f"study {status.study} on {status.storage}: {finished:,} finished ({c['complete']:,} complete, "
            f"{c['pruned']:,} pruned), {c['fail']:,} failed, {c['running']:,} running, {c['waiting']:,} queued"
            + (f"; {status.warm_start:,} copied by warm_start, counted nowhere" if status.warm_start else "")]
    if status.budget is not None:
        said.append(f"budget: {status.budget:,} trials a run (the study file's budget.trials; a run's --n-trials or "
                    "--until says otherwise)")
    best = f"best so far: trial #{status.best[0]}, val {status.best[1]:.2%}" if status.best else "no completed trial yet"
    if status.target is not None:
        got = f"reached by trial #{status.reached}" if status.reached is not None else "not reached yet"
        said.append(f"target {status.target}: {got}; {best}")
    else:
        said.append(best)
    for run in status.runs:
        stops = [f"{run.done:,} of {run.total:,} {'finished' if run.goal.startswith('--until') else 'started'}"]
        stops.append("stops at the target" if run.stops_at_target and status.target else "runs past the target"
                     if status.target else "")
        stops.append(f"--timeout {run.timeout:g} s" if run.timeout else "")
        where = f" (SLURM job {run.slurm_job})" if run.slurm_job else ""
        said.append(f"run {run.run}{where}: {run.goal}, {', '.join(s for s in stops if s)}; {run.running} running")
    if status.running:
        said.append("running:")
        said += [f"  {_describe_running(t)}" for t in status.running]
    if stale := [t for t in status.running if t.stale]:
        said.append(f"stale: {', '.join(f'#{t.number}' for t in stale)} sent no heartbeat for over {STALE_AFTER} "
                    "heartbeats: the worker is gone (killed, or its machine); the next step of any worker of the "
                    "study fails it as worker lost and queues its copy")
    if status.queued:
        said.append("queued to run next:")
        said += [f"  {_describe_queued(t)}" for t in status.queued]
    if status.stop:
        said.append(describe_stop(status.stop))
    return [escape.terminal(line) for line in said]


def _describe_running(t: RunningTrial) -> str:
    what = f"trial #{t.number}" + (f" ({t.baseline})" if t.baseline else "")
    if t.copy_of is not None:
        what += f", copy of #{t.copy_of}" + (f" resumed at epoch {t.resumed_at + 1}" if t.resumed_at else "")
    epoch = f"epoch {t.epoch}" + (f"/{t.epochs}" if t.epochs else "") + (f" val {t.val:.4f}" if t.val is not None else "")
    beat = "" if t.heartbeat_s is None else f", heartbeat {t.heartbeat_s:.0f} s ago" + (" (stale)" if t.stale else "")
    return f"{what}: {epoch if t.epoch else 'starting'} on {t.worker}" + (
        f" (SLURM task {t.slurm})" if t.slurm else "") + beat


def _describe_queued(t: QueuedTrial) -> str:
    if t.copy_of is None:
        return f"trial #{t.number}: " + (f"baseline {t.baseline}" if t.baseline else "a start-up draw")
    resumes = f"resumes at epoch {t.resumes_at} from its checkpoint where visible" if t.resumes_at > 1 else \
        "starts at epoch 1"
    return f"trial #{t.number}: copy of #{t.copy_of}" + (f" ({t.baseline})" if t.baseline else "") + f", {resumes}"


def describe_stop(stop: dict[str, Any]) -> str:
    """A stop request in words: who asked, when, which runs it stops, what becomes of their unfinished trials."""
    runs = ", ".join(run[:8] for run in stop.get("runs", [])) or "none"
    at = datetime.fromisoformat(stop["at"]).strftime("%Y-%m-%d %H:%M UTC") if stop.get("at") else "?"
    kept = ("their running trials stopped at an epoch end and every queued copy were discarded"
            if stop.get("discard_queued") else
            "their running trials stop at an epoch end and are queued to resume in a later run")
    return (f"stop requested by {stop.get('by', '?')} at {at} for runs {runs}: they start no new trial; {kept} "
            "(a run started since goes on)")
