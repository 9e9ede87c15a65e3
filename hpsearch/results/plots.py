"""A study's PNG plots: accuracy against size and training time (the Pareto fronts), optimisation history,
validation accuracy per epoch, importances, parallel coordinates.

Three come from optuna.visualization.matplotlib. The fronts are drawn here for every study, single-objective
ones too: what a model costs is the first thing a reader asks after its accuracy. So is the per-epoch plot: Optuna's
colours each trial from a 20-colour cycle and marks no state, so a pruned trial cannot be told
from a completed one, and telling them apart is what that plot is for. Importances and parallel
coordinates look at the searched trials only: a baseline is a fixed model with no sampled
parameters (the table in report.md compares the baselines).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib import ticker  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from hpsearch import escape, record  # noqa: E402
from hpsearch.files import save_atomic  # noqa: E402
from hpsearch.results import ranking  # noqa: E402
from hpsearch.results.trials import is_warm_start, single_objective_view  # noqa: E402
from hpsearch.studyfile.limits import within_limits  # noqa: E402
from hpsearch.studyfile.types import Limits  # noqa: E402

DPI = 110
FEW_FOR_IMPORTANCE = 20  # completed searched trials below which importances are mostly noise


@dataclass(frozen=True)
class Plot:
    file: str  # name inside the output folder
    title: str
    about: str  # one sentence on how to read it
    skipped: str | None = None  # why the plot was not drawn, if it was not
    caveat: str | None = None  # drawn, but read it with this in mind (also written on the figure)


def write_plots(study: optuna.Study, out: Path, limits: Limits | None = None) -> list[Plot]:
    """Draw every plot of `study` into the folder `out`; a plot the study cannot support yet is skipped.
    `limits` (the study file's) are drawn on the accuracy-against-cost plot."""
    out.mkdir(parents=True, exist_ok=True)
    if len(study.directions) > 1:  # these plots show validation accuracy, the first objective
        study = single_objective_view(study)
    if any(is_warm_start(t) for t in study.get_trials(deepcopy=False)):
        study = _without_copies(study)
    searched = _searched_only(study)
    completed = searched.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = _varying_params(completed)
    nothing_ended = _nothing_ended(study)
    too_few = (f"needs two completed searched trials, the study has {len(completed)}" if len(completed) < 2 else
               "every searched parameter has one value in all completed trials" if not varying else None)
    caveat = (f"rests on {len(completed)} completed searched trials; below {FEW_FOR_IMPORTANCE} the importances "
              "are mostly noise" if len(completed) < FEW_FOR_IMPORTANCE else None)
    drawable = _measured_trials(study)
    plots = [
        (Plot("pareto.png", "Accuracy against size and training time",
              "Every completed trial's validation accuracy against its parameter count (left) and training seconds "
              "(right), both on log scales: baselines are named diamonds, trials over a limit grey crosses, limits "
              "dashed lines; the red steps join the Pareto front, the trials that no other beats on both axes."),
         lambda: _pareto(study, limits or Limits()), None if drawable else "no completed trial yet"),
        (Plot("history.png", "Optimisation history",
              "Validation accuracy of every completed trial in order, and the best so far."),
         lambda: optuna_plots.plot_optimization_history(study, target_name="validation accuracy"), nothing_ended),
        (Plot("intermediate.png", "Validation accuracy per epoch",
              "One line per trial: searched trials blue (the best red), baselines dotted, pruned trials grey "
              "and dashed, ending with a cross where they were stopped."),
         lambda: _intermediate(study), nothing_ended),
        (Plot("importances.png", "Parameter importances",
              "How much of the variation in validation accuracy each searched parameter explains (PED-ANOVA).",
              caveat=caveat),
         lambda: _importances(searched, varying, caveat), too_few),
        (Plot("parallel.png", "Parallel coordinates",
              f"Each completed searched trial is a line through its values of {', '.join(varying) or 'nothing'}, "
              f"coloured by validation accuracy{_left_out(completed, varying)}."),
         lambda: _parallel(searched, varying), too_few),
    ]
    drawn = []
    for plot, draw, skipped in plots:
        if skipped is None:
            _save(draw, out / plot.file)
        drawn.append(Plot(plot.file, plot.title, plot.about, skipped, plot.caveat if skipped is None else None))
    return drawn


def _nothing_ended(study: optuna.Study) -> str | None:
    """Why there is nothing to draw over time (no trial completed or was pruned), or None."""
    trials = [t for t in study.get_trials(deepcopy=False) if not is_warm_start(t)]
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return None
    failed = sum(t.state == TrialState.FAIL for t in trials)
    return f"every trial failed ({failed} of {len(trials)})" if failed == len(trials) > 0 else "no trial has ended yet"


def _left_out(trials: list[optuna.trial.FrozenTrial], varying: list[str]) -> str:
    constant = [name for name in dict.fromkeys(n for t in trials for n in t.params) if name not in varying]
    if not constant:
        return ""
    return f"; {', '.join(constant)} had one value in every completed trial: no axis"


def _varying_params(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """The parameters that took more than one value among `trials`: a constant one explains nothing."""
    names = dict.fromkeys(name for t in trials for name in t.params)
    return [n for n in names if len({repr(t.params.get(n)) for t in trials}) > 1]


def _searched_only(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study without its baseline trials."""
    copy = optuna.create_study(direction=study.direction)
    copy.add_trials([t for t in study.get_trials(deepcopy=False) if record.baseline(t) is None])
    return copy


def _without_copies(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study in which the trials copied from another study (warm_start: they ran
    there) stand as failed trials, which no plot draws: every trial keeps its number."""
    view = optuna.create_study(direction=study.direction)
    view.add_trials([record.stand_in(t, state=TrialState.FAIL) if is_warm_start(t) else t
                     for t in study.get_trials(deepcopy=False)])
    record.copy_to(view, study)  # confirmations
    return view


def _save(draw, path: Path) -> None:
    with matplotlib.rc_context(), warnings.catch_warnings():  # Optuna switches the global style to ggplot
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # these plots are what we need
        warnings.simplefilter("ignore", UserWarning)  # e.g. an axis for a parameter all trials share: drawn anyway
        figure = draw().figure
        save_atomic(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI, bbox_inches="tight"))
        plt.close(figure)


def _importances(study: optuna.Study, params: list[str], caveat: str | None):
    ax = optuna_plots.plot_param_importances(study, params=params, target_name="validation accuracy")
    if caveat:
        ax.set_title(f"{ax.get_title(loc='left')}\nRead with care: this plot {caveat}", loc="left", fontsize=10)
    return ax


def _parallel(study: optuna.Study, params: list[str]):
    """Optuna's parallel coordinates, recoloured: its white-to-blue map draws the worst trials white, unseen."""
    ax = optuna_plots.plot_parallel_coordinate(study, params=params, target_name="validation accuracy")
    for collection in ax.collections:
        collection.set_cmap("viridis")
    ax.figure.set_size_inches(max(8.0, 1.1 * len(ax.get_xticks())), 5.0)  # one axis per parameter: give them room
    return ax


def _intermediate(study: optuna.Study):
    """Validation accuracy after each epoch, one line per trial, drawn by state."""
    _, ax = plt.subplots(figsize=(8, 5))
    trials = [t for t in ranking.study_trials(study)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = ranking.best_trial(completed)
    baseline_colors = iter(["black", "tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan"] * 4)
    legend = []
    for trial in trials:
        epochs, values = zip(*sorted(trial.intermediate_values.items()))
        if trial.state == TrialState.PRUNED:
            ax.plot(epochs, values, color="0.6", linestyle="--", linewidth=1, marker="x", markevery=[-1])
        elif record.baseline(trial) is not None:
            line, = ax.plot(epochs, values, color=next(baseline_colors), linestyle=":", linewidth=1.5,
                            label=escape.plot(f"baseline {record.baseline(trial)} (#{trial.number})"))
            legend.append(line)
        else:
            ax.plot(epochs, values, color="tab:blue", alpha=0.6, linewidth=1)
    if best is not None:
        epochs, values = zip(*sorted(best.intermediate_values.items()))
        ax.plot(epochs, values, color="tab:red", linewidth=2.2)
    n_searched = sum(t.state == TrialState.COMPLETE and record.baseline(t) is None for t in trials)
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    legend = [plt.Line2D([], [], color="tab:blue", label=f"completed ({n_searched})"),
              plt.Line2D([], [], color="0.6", linestyle="--", marker="x", label=f"pruned ({n_pruned})"), *legend]
    if best is not None:
        legend.append(plt.Line2D([], [], color="tab:red", linewidth=2.2, label=f"best (trial #{best.number})"))
    ax.legend(handles=legend, loc="lower right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(escape.plot(f"{study.study_name}: validation accuracy per epoch"))
    ax.grid(alpha=0.3)
    return ax


def _measured_trials(study: optuna.Study) -> list:
    """The completed trials that recorded both measures the front plot draws them against."""
    return [t for t in ranking.study_trials(study)
            if t.state == TrialState.COMPLETE and record.measured(t, "params") and record.measured(t, "train_seconds")]


def _pareto(study: optuna.Study, limits: Limits):
    """Validation accuracy against parameter count and against training seconds, with each axis's front."""
    trials = _measured_trials(study)
    best = ranking.best_trial(trials)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    panels = (("params", "parameters (log scale)", limits.params, "{:,.0f} parameters"),
              ("train_seconds", "training seconds (log scale)", limits.train_seconds, "{:g} s"))
    for ax, (objective, label, limit, limit_text) in zip(axes, panels):
        x = lambda t: record.measured(t, objective)
        searched = [t for t in trials if record.baseline(t) is None]
        inside = [t for t in searched if within_limits(t)]
        over = [t for t in searched if not within_limits(t)]
        if inside:
            ax.scatter([x(t) for t in inside], [ranking.val_accuracy(t) for t in inside], s=22, color="tab:blue",
                       alpha=0.6, label=f"searched trial ({len(inside)})")
        if over:
            ax.scatter([x(t) for t in over], [ranking.val_accuracy(t) for t in over], s=26, color="0.55", marker="x",
                       label=f"over a limit ({len(over)})")
        for n, t in enumerate(t for t in trials if record.baseline(t) is not None):
            ax.scatter([x(t)], [ranking.val_accuracy(t)], s=60, marker="D", color="tab:green", edgecolor="black",
                       zorder=3, label=None if n else "baseline")
            ax.annotate(escape.plot(record.baseline(t)), (x(t), ranking.val_accuracy(t)),
                        textcoords="offset points", xytext=(6, -10), fontsize=8)
        front = sorted(ranking.front(trials, against=objective), key=x)  # steps rise left to right
        if front:
            ax.plot([x(t) for t in front], [ranking.val_accuracy(t) for t in front], color="tab:red", linewidth=1.6,
                    drawstyle="steps-post", marker="o", markerfacecolor="none", markersize=8,
                    label=f"Pareto front ({len(front)})")
        if best is not None:
            ax.scatter([x(best)], [ranking.val_accuracy(best)], s=180, marker="*", color="gold", edgecolor="black",
                       zorder=4, label=f"best (trial #{best.number})")
        if limit is not None:
            ax.axvline(limit, color="tab:orange", linestyle="--", linewidth=1.5,
                       label="limit: " + limit_text.format(limit))
        _log_axis(ax, [x(t) for t in trials] + ([limit] if limit is not None else []))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel("validation accuracy")
    figure.suptitle(escape.plot(f"{study.study_name}: validation accuracy against size and training time "
                                f"({len(trials)} completed trials)"))
    return axes[0]


def _log_axis(ax, values: list[float]) -> None:
    """A log x axis with a few readable labels (1k, 2k, 5k, 10k), even when the values span less than a decade."""
    low, high = min(values), max(values)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.6, high * 1.6)  # room for the markers, and for two labelled ticks at least
    decades = math.log10(high * 1.6) - math.log10(low / 1.6)
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _compact(v)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _compact(value: float) -> str:
    """3 significant digits at most: 0.5, 20, 1.5k, 12M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"
