"""Live progress of a run on stderr (rich), and plain renderings of results for stdout."""

from __future__ import annotations

import json
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hpsearch.data import DeviceData
from hpsearch.objective import RunEvents
from hpsearch.train import EpochStats


class RunDisplay(RunEvents):
    """Two bars (trials of this run, epochs of the running trial) and one line per finished trial."""

    def __init__(self, console: Console, header: str, n_trials: int, epochs: int):
        self.console = console
        self.header = header
        self.epochs = epochs
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.trials_bar = self.progress.add_task("trials", total=n_trials)
        self.epochs_bar = self.progress.add_task("epochs", total=epochs)

    def __enter__(self) -> RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def study_opened(self, study: optuna.Study, data: DeviceData) -> None:
        stored = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                               TrialState.FAIL)))
        resumed = f", resuming after {stored} stored trials" if stored else ""
        self.console.print(f"{self.header}; {data.name} from {data.source} on {data.train_x.device}{resumed}",
                           highlight=False, soft_wrap=True)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.progress.update(self.trials_bar, description=f"trial #{number}")
        self.progress.reset(self.epochs_bar, total=self.epochs, description="epoch")

    def epoch_finished(self, number: int, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback: one line that stays when the bars move on."""
        self.progress.advance(self.trials_bar)
        done = int(self.progress.tasks[self.trials_bar].completed)
        total = int(self.progress.tasks[self.trials_bar].total)
        self.console.print(f"[{done}/{total}] {describe_trial(trial)}", highlight=False, soft_wrap=True)


class RetrainDisplay:
    """Two bars while `hpsearch train` runs: seeds done, and epochs of the seed in training."""

    def __init__(self, console: Console, seeds: int, epochs: int):
        self.epochs = epochs
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.seeds_bar = self.progress.add_task("seeds", total=seeds)
        self.epochs_bar = self.progress.add_task("epochs", total=epochs)

    def __enter__(self) -> RetrainDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def seed_started(self, seed: int) -> None:
        self.progress.update(self.seeds_bar, description=f"seed {seed}")
        self.progress.reset(self.epochs_bar, total=self.epochs, description="epoch")

    def epoch_finished(self, stats: EpochStats) -> None:
        self.progress.update(self.epochs_bar, completed=stats.epoch,
                             description=f"epoch {stats.epoch} val {stats.val_accuracy:.4f}")

    def seed_finished(self) -> None:
        self.progress.advance(self.seeds_bar)


def describe_trial(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    head = f"trial #{trial.number}"
    tag = f" ({attrs['baseline']})" if "baseline" in attrs else ""
    if trial.state == TrialState.COMPLETE:
        return (f"{head}{tag} complete: val {trial.value:.4f}, test {attrs.get('test_accuracy', float('nan')):.4f}, "
                f"{attrs.get('param_count', 0):,} params, {attrs.get('epochs')} epochs, {attrs.get('seconds', 0):.1f}s")
    if trial.state == TrialState.PRUNED:
        last = trial.intermediate_values.get(attrs.get("epochs"), float("nan"))
        return f"{head}{tag} pruned after epoch {attrs.get('epochs')} (val {last:.4f}), {attrs.get('seconds', 0):.1f}s"
    if trial.state == TrialState.FAIL:
        return f"{head}{tag} failed: {attrs.get('failure', 'see the storage for its reason')}"
    return f"{head}{tag} {trial.state.name.lower()}"


def render(summary: dict[str, Any], fmt: str) -> str:
    """A summary dict as json, yaml, or readable text."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(summary, sort_keys=False).rstrip()
    return _text(summary)


def _text(summary: dict[str, Any]) -> str:
    lines = [f"study {summary['study']}: {summary['trials']} trials ({summary['complete']} complete, "
             f"{summary['pruned']} pruned, {summary['fail']} failed)"]
    best = summary["best"]
    if best is None:
        return "\n".join(lines + ["no completed trial yet"])
    lines += [
        f"best trial #{best['number']}",
        f"  val accuracy   {best['val_accuracy']:.4f}",
        f"  test accuracy  {best['test_accuracy']:.4f}",
        f"  parameters     {best['param_count']:,}",
        f"  epochs         {best['epochs']}",
        f"  seconds        {best['seconds']:.1f}",
        f"  device         {best['device']}",
        "  searched params:",
    ]
    lines += [f"    {key}: {value}" for key, value in best["params"].items()]
    lines.append("  (full config: hpsearch best --format yaml)")
    return "\n".join(lines)
