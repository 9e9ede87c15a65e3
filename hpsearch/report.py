"""One Markdown table per study: the reports' baselines as reproduced here, then the best searched trials.

A baseline's reported accuracy stands beside what it reached in this study's pipeline and budget,
so the gap the search opens is read off one table. Unfinished baselines show as pending.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.baselines import BASELINES

HEADER = ("trial", "model", "source", "reported", "val acc", "test acc", "params", "epochs", "seconds")


def baseline_names(study: optuna.Study, listed: Sequence[str] = ()) -> list[str]:
    """The study file's baselines, then any other baseline found among the stored trials."""
    stored = [t.user_attrs["baseline"] for t in study.get_trials(deepcopy=False) if "baseline" in t.user_attrs]
    return list(dict.fromkeys([*listed, *stored]))


def rows(study: optuna.Study, listed: Sequence[str] = (), top: int = 5,
         dataset: str | None = None) -> list[tuple[str, ...]]:
    trials = study.get_trials(deepcopy=False)
    by_baseline: dict[str, FrozenTrial] = {}
    for trial in trials:  # the latest attempt of each baseline wins
        if "baseline" in trial.user_attrs:
            by_baseline[trial.user_attrs["baseline"]] = trial
    table = []
    for name in baseline_names(study, listed):
        b = BASELINES.get(name)
        reported = (f"{b.reported_accuracy:.2%} {b.reported_metric}" if b and b.reported_accuracy is not None
                    else "figure only")
        if b and b.dataset != dataset:  # a figure from another dataset is context, not a target
            reported += f" on {b.dataset}"
        table.append(_row(by_baseline.get(name), name, f"report {b.report}" if b else "", reported))
    searched = sorted((t for t in trials if t.state == TrialState.COMPLETE and "baseline" not in t.user_attrs),
                      key=lambda t: t.value, reverse=True)
    for rank, trial in enumerate(searched[:top], start=1):
        table.append(_row(trial, f"searched #{rank}", "hpsearch", ""))
    return table


def _row(trial: FrozenTrial | None, model: str, source: str, reported: str) -> tuple[str, ...]:
    if trial is None or trial.state in (TrialState.WAITING, TrialState.RUNNING):
        number = "" if trial is None else f"#{trial.number}"
        return (number, model, source, reported, "pending", "pending", "", "", "")
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        val, test = f"{trial.value:.2%}", f"{attrs.get('test_accuracy', float('nan')):.2%}"
    else:
        reason = attrs.get("failure", "")
        val, test = trial.state.name.lower() + (f": {reason}" if reason else ""), ""
    params = f"{attrs['param_count']:,}" if "param_count" in attrs else ""
    return (f"#{trial.number}", model, source, reported, val, test, params, str(attrs.get("epochs", "")),
            f"{attrs.get('seconds', 0):.1f}")


def markdown(study: optuna.Study, listed: Sequence[str] = (), *, epochs: int | None = None) -> str:
    """The table as Markdown, headed by the study name and its per-trial budget."""
    table = rows(study, listed, dataset=study.user_attrs.get("dataset"))
    budget = f", {epochs} epochs a trial" if epochs else ""
    lines = [f"# {study.study_name}: baselines and best searched trials{budget}", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table]
    lines += ["", "Reported: the accuracy the report gives, under its own budget. Val and test: this study's "
                  "pipeline, budget and split; searched trials are ranked by validation accuracy."]
    return "\n".join(lines) + "\n"
