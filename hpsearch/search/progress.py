"""Progress of a run on stderr: live rich bars on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hpsearch import trialrecord as A
from hpsearch.results.render import describe_trial, plural
from hpsearch.results.trials import FINISHED, curve, is_warm_start
from hpsearch.search.objective import RunEvents
from hpsearch.training.devicedata import DeviceData
from hpsearch.training.train import EpochStats

PLAIN_EVERY_S = 5.0  # in a log, at most one progress line this often (each ended trial still gets its line)


Note = Callable[[FrozenTrial], str | None]  # a line to add under an ended trial's own, if any


class LiveBars:
    """Progress on stderr, used as `with SomeDisplay(...) as display:`. On a terminal, transient live bars;
    elsewhere (a log file, nohup, CI, a batch job) no bars but a plain line with what they would show,
    at most one every PLAIN_EVERY_S seconds, so a log says the run is alive."""

    def __init__(self, console: Console, note: Note = lambda trial: None):
        self.console = console
        self.note = note
        self.live = console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, disable=not self.live)
        self.started = time.monotonic()
        self.last_line: dict[str, float] = {}  # when the last plain line of each kind was printed
        self.loading_bars: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, text: str, *, kind: str = "epoch", now: bool = False) -> None:
        """A progress line in a log (the bars show it on a terminal): the first of its kind, then one when
        PLAIN_EVERY_S have passed since the last of its kind, or `now`."""
        clock = time.monotonic()
        if not self.live and (now or clock - self.last_line.get(kind, float("-inf")) >= PLAIN_EVERY_S):
            self.last_line[kind] = clock
            elapsed = int(clock - self.started)
            self.console.print(f"{text}; {elapsed // 60}:{elapsed % 60:02d} elapsed", highlight=False, soft_wrap=True)

    def ended(self, line: str, trial: FrozenTrial) -> None:
        """An ended trial's line, which stays when the bars move on, and its note (study.baseline_note)."""
        self.console.print(line, highlight=False, soft_wrap=True)
        if (note := self.note(trial)) is not None:
            self.console.print(f"  {note}", highlight=False, soft_wrap=True)

    def loading(self, what: str, done: int, total: int) -> None:
        """Data loading (decoding an image folder): a bar of its own while it lasts."""
        if self.live:
            if what not in self.loading_bars:
                self.loading_bars[what] = self.progress.add_task(what, total=total)
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
        self.epochs = epochs
        self.counting_study = counting_study
        self.trials_bar = self.progress.add_task("trials", total=n_trials)
        self.epochs_bar = self.progress.add_task("epochs", total=epochs)

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None:
        trials = [t for t in study.get_trials(deepcopy=False) if not is_warm_start(t)]  # copies ran elsewhere
        stored = sum(t.state in FINISHED or t.state == TrialState.FAIL for t in trials)
        resumed = f", resuming after {plural(stored, 'stored trial')}" if stored else ""
        self.console.print(f"{self.header}; {data.name} from {data.source} on {data.train_x.device}{resumed}",
                           highlight=False, soft_wrap=True)
        if self.counting_study:
            self.progress.update(self.trials_bar, completed=sum(t.state in FINISHED for t in trials))

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.progress.update(self.trials_bar, description=f"trial #{number}")
        self.progress.reset(self.epochs_bar, total=self.epochs, description="epoch")

    def epoch_finished(self, number: int, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")
        trials = self.progress.tasks[self.trials_bar]
        self.line(f"trial #{number} epoch {stats.epoch}/{self.epochs} val {stats.val_accuracy:.4f} "
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
        console.print(header, highlight=False, soft_wrap=True)

    def polled(self, trials: list[FrozenTrial]) -> None:
        """Called with the study's trials before the trials that ended since the last poll are shown."""
        if self.earlier is None:  # with --until, finished trials of earlier runs count towards the total
            self.earlier = sum(t.state in FINISHED and t.user_attrs.get(A.RUN) != self.run_id
                               for t in trials) if self.counting_study else 0
        running = [t for t in trials if t.state == TrialState.RUNNING]
        self.progress.update(self.bar, description=f"trials ({len(running)} running)")
        if running:  # in a log: where each running trial is, as the workers report it to the storage
            where = ", ".join(f"trial #{t.number} epoch {epoch}/{self.epochs} val {values[epoch]:.4f}"
                              if (epoch := max(values := curve(t), default=0)) else f"trial #{t.number} starting"
                              for t in running)
            self.line(f"{where} ({self.earlier + self.done}/{self.total} trials done)")

    def trial_ended(self, trial: FrozenTrial, worker: int | None) -> None:
        if trial.state in FINISHED or not self.counting_study:
            self.done += 1
        self.progress.update(self.bar, completed=self.earlier + self.done)
        who = f"w{worker} " if worker is not None else ""
        self.ended(f"[{self.earlier + self.done}/{self.total}] {who}{describe_trial(trial)}", trial)


class RetrainDisplay(LiveBars):
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

    def epoch_finished(self, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")
        self.line(f"seed {self.seed} epoch {stats.epoch}/{self.epochs} val {stats.val_accuracy:.4f}")

    def seed_finished(self) -> None:
        self.progress.advance(self.seeds_bar)
