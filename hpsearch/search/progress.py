"""Progress of a run on stderr: live rich bars on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hpsearch import escape, record
from hpsearch.results.render import describe_trial, plural
from hpsearch.results.timing import duration
from hpsearch.results.trials import FINISHED, curve, is_warm_start
from hpsearch.search.objective import RunEvents
from hpsearch.studyfile import params as P
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.retrain import RetrainEvents
from hpsearch.training.train import Batches, EpochStats

PLAIN_EVERY_S = 5.0  # in a log, at most one progress line of a kind this often (each ended trial still gets its line)
QUIET_LOG_S = 20.0  # in a log, a line inside an epoch once nothing was printed for this long


Note = Callable[[FrozenTrial], str | None]  # a line to add under an ended trial's own, if any


class LiveBars:
    """Progress on stderr, used as `with SomeDisplay(...) as display:`. On a terminal, transient live bars;
    elsewhere (a log file, nohup, CI, a batch job) no bars but a plain line with what they would show,
    at most one of a kind every PLAIN_EVERY_S seconds, and inside a long epoch one at least every
    QUIET_LOG_S, so a log says the run is alive."""

    def __init__(self, console: Console, note: Note = lambda trial: None):
        self.console = console
        self.note = note
        self.live = console.is_terminal
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, disable=not self.live)
        self.started = time.monotonic()
        self.last_line: dict[str, float] = {}  # when the last plain line of each kind was printed
        self.last_printed = self.started  # when anything was
        self.loading_bars: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def echo(self, text: str) -> None:
        """One line that stays (on a terminal, above the bars), escaped for a terminal and never read as rich markup
        or emoji codes: a study's name, a folder's or a failure's reason may hold `[`, `:`, a newline or an escape
        sequence."""
        self.console.print(escape.terminal(text), markup=False, emoji=False, highlight=False, soft_wrap=True)
        self.last_printed = time.monotonic()

    def line(self, text: str, *, kind: str = "epoch", now: bool = False) -> None:
        """A progress line in a log (the bars show it on a terminal): the first of its kind, then one when
        PLAIN_EVERY_S have passed since the last of its kind, or `now`."""
        clock = time.monotonic()
        if not self.live and (now or clock - self.last_line.get(kind, float("-inf")) >= PLAIN_EVERY_S):
            self.last_line[kind] = clock
            elapsed = int(clock - self.started)
            self.echo(f"{text}; {elapsed // 60}:{elapsed % 60:02d} elapsed")

    def within_epoch(self, bar: int, who: str, done: Batches) -> None:
        """Where a running epoch is: the epochs `bar` moves batch by batch on a terminal; a log gets a line once
        nothing was printed for QUIET_LOG_S (an epoch of minutes would otherwise leave it silent)."""
        if self.live:
            self.progress.update(bar, completed=done.epoch - 1 + done.done / done.total,
                                 description=f"epoch {done.epoch} batch {done.done:,}/{done.total:,}")
        elif time.monotonic() - self.last_printed >= QUIET_LOG_S:
            self.line(f"{who} epoch {done.epoch}/{done.epochs}: batch {done.done:,}/{done.total:,}, "
                      f"{done.images_per_s:,.0f} images/s, the epoch's training {duration(done.projected_s)} "
                      "at this rate", kind="batches", now=True)

    def ended(self, line: str, trial: FrozenTrial) -> None:
        """An ended trial's line, which stays when the bars move on, and its note (results.trials.baseline_note)."""
        self.echo(line)
        if (note := self.note(trial)) is not None:
            self.echo(f"  {note}")

    def loading(self, what: str, done: int, total: int) -> None:
        """Data loading (decoding an image folder): a bar of its own while it lasts."""
        if self.live:
            if what not in self.loading_bars:
                self.loading_bars[what] = self.progress.add_task(escape.terminal(what), total=total)
            self.progress.update(self.loading_bars[what], completed=done)
            if done >= total:
                self.progress.remove_task(self.loading_bars.pop(what))
        self.line(f"{what} {done:,}/{total:,} images", kind="loading", now=done == total)


class RunDisplay(LiveBars, RunEvents):
    """Two bars (trials, epochs of the running trial) and one line per finished trial.

    The trials bar counts this run's trials, or with `counting_study` (--until) the study's
    finished trials against the total it should reach.
    """

    def __init__(self, console: Console, header: str, n_trials: int, epochs: int, *, counting_study: bool = False,
                 note: Note = lambda trial: None):
        super().__init__(console, note)
        self.header = header
        self.epochs = epochs  # the budget's; a trial may train fewer (its `epochs` parameter)
        self.trial_epochs = epochs
        self.counting_study = counting_study
        self.trials_bar = self.progress.add_task("trials", total=n_trials)
        self.epochs_bar = self.progress.add_task("epochs", total=epochs)

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None:
        trials = [t for t in study.get_trials(deepcopy=False) if not is_warm_start(t)]  # copies ran elsewhere
        stored = sum(t.state in FINISHED or t.state == TrialState.FAIL for t in trials)
        resumed = f", resuming after {plural(stored, 'stored trial')}" if stored else ""
        self.echo(f"{self.header}; {data.name} from {data.source} on {data.train_x.device}{resumed}")
        if self.counting_study:
            self.progress.update(self.trials_bar, completed=sum(t.state in FINISHED for t in trials))

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.trial_epochs = P.trial_epochs(params, self.epochs)
        self.progress.update(self.trials_bar, description=f"trial #{number}")
        self.progress.reset(self.epochs_bar, total=self.trial_epochs, description="epoch")

    def batches_done(self, number: int, done: Batches) -> None:
        self.within_epoch(self.epochs_bar, f"trial #{number}", done)

    def trial_resumed(self, number: int, copy_of: int | None, epoch: int, restored: list[EpochStats]) -> None:
        """One line that stays: which trial a copy continues, and where."""
        self.echo(f"trial #{number}" + (f", copy of #{copy_of}," if copy_of is not None else "")
                  + f" resumed from its checkpoint at epoch {epoch} of {self.trial_epochs}")

    def epoch_finished(self, number: int, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")
        trials = self.progress.tasks[self.trials_bar]
        self.line(f"trial #{number} epoch {stats.epoch}/{self.trial_epochs} val {stats.val_accuracy:.4f} "
                  f"({int(trials.completed)}/{int(trials.total)} trials done)")

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback: one line that stays when the bars move on."""
        if self.counting_study:
            finished = study.get_trials(deepcopy=False, states=FINISHED)
            self.progress.update(self.trials_bar, completed=sum(not is_warm_start(t) for t in finished))
        else:
            self.progress.advance(self.trials_bar)
        done = int(self.progress.tasks[self.trials_bar].completed)
        total = int(self.progress.tasks[self.trials_bar].total)
        self.ended(f"[{done}/{total}] {describe_trial(trial)}", trial)


class ParallelDisplay(LiveBars):
    """Several workers' trials in one view: a bar of trials, how many run now, a line per ended trial."""

    def __init__(self, console: Console, header: str, total: int, epochs: int, *, counting_study: bool, run_id: str,
                 note: Note = lambda trial: None):
        super().__init__(console, note)
        self.total = total
        self.epochs = epochs
        self.counting_study = counting_study
        self.run_id = run_id
        self.earlier: int | None = None
        self.done = 0
        self.bar = self.progress.add_task("trials", total=total)
        self.echo(header)

    def polled(self, trials: list[FrozenTrial]) -> None:
        """Called with the study's trials before the trials that ended since the last poll are shown."""
        if self.earlier is None:  # with --until, finished trials of earlier runs count towards the total
            self.earlier = sum(t.state in FINISHED and record.run_id(t) != self.run_id
                               for t in trials) if self.counting_study else 0
        running = [t for t in trials if t.state == TrialState.RUNNING]
        self.progress.update(self.bar, description=f"trials ({len(running)} running)")
        if running:  # in a log: where each running trial is, as the workers report it to the storage
            self.line(f"{', '.join(map(self._where, running))} ({self.earlier + self.done}/{self.total} trials done)")

    def _where(self, trial: FrozenTrial) -> str:
        """'trial #3 epoch 2/12 val 0.9537', as its worker reported it to the storage."""
        values = curve(trial)
        if not values:
            return f"trial #{trial.number} starting"
        epoch = max(values)
        epochs = P.trial_epochs(record.config(trial) or {}, self.epochs)
        return f"trial #{trial.number} epoch {epoch}/{epochs} val {values[epoch]:.4f}"

    def trial_ended(self, trial: FrozenTrial, worker: int | None) -> None:
        if trial.state in FINISHED or not self.counting_study:
            self.done += 1
        self.progress.update(self.bar, completed=self.earlier + self.done)
        who = f"w{worker} " if worker is not None else ""
        self.ended(f"[{self.earlier + self.done}/{self.total}] {who}{describe_trial(trial)}", trial)


class RetrainDisplay(LiveBars, RetrainEvents):
    """Two bars while `hpsearch train` runs: seeds done, and epochs of the seed in training."""

    def __init__(self, console: Console, seeds: int, epochs: int):
        super().__init__(console)
        self.epochs = epochs
        self.seeds_bar = self.progress.add_task("seeds", total=seeds)
        self.epochs_bar = self.progress.add_task("epochs", total=epochs)

    def seed_started(self, seed: int) -> None:
        self.seed = seed
        self.progress.update(self.seeds_bar, description=f"seed {seed}")
        self.progress.reset(self.epochs_bar, total=self.epochs, description="epoch")

    def batches_done(self, done: Batches) -> None:
        self.within_epoch(self.epochs_bar, f"seed {self.seed}", done)

    def epoch_finished(self, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")
        self.line(f"seed {self.seed} epoch {stats.epoch}/{self.epochs} val {stats.val_accuracy:.4f}")

    def seed_finished(self) -> None:
        self.progress.advance(self.seeds_bar)
