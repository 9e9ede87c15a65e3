"""A study's trials read back, torch-free: which are finished (and which finished since a run last looked),
which are baselines, which meets the target first, and the summary `best` prints.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.results import ranking
from hpsearch.studyfile import params as P
from hpsearch.studyfile.types import StudySpec


def is_baseline(trial: FrozenTrial) -> bool:
    """A fixed trial of one of the reports' models (queued when a run's baseline_due said so), not a sampled one."""
    return record.baseline(trial) is not None


def is_warm_start(trial: FrozenTrial) -> bool:
    """A trial copied from another study when this one began (search/warmstart.py): an observation for the
    sampler, never counted here (budgets, target, best, time to target, counts)."""
    return record.warm_start(trial) is not None


def target_metric(trial: FrozenTrial, metric: str) -> float | None:
    """The trial's value of a target metric, or None if it has none that counts (not completed, or over a limit)."""
    if not ranking.counts(trial):
        return None
    return record.outcome(trial).test_accuracy if metric == "test_accuracy" else ranking.val_accuracy(trial)


def meets_target(trial: FrozenTrial, spec: StudySpec) -> bool:
    """Whether the trial completed within limits at or above the study's target (False without a target)."""
    if spec.target is None:
        return False
    value = target_metric(trial, spec.target.metric)
    return value is not None and value >= spec.target.value


def first_reaching(trials: list[FrozenTrial], spec: StudySpec) -> FrozenTrial | None:
    """The first sampled trial of `trials` that meets the study's target: the target is the search's to reach.
    A baseline that meets it is reported (baseline_note), and the search goes on."""
    return next((t for t in trials if not is_baseline(t) and meets_target(t, spec)), None)


def target_figures(trial: FrozenTrial, spec: StudySpec) -> str:
    """'val 98.61%; test 98.33%, below the target': the accuracy the target is judged on, then the other one
    beside it, above or below the line."""
    judged = spec.target.metric
    other = "test_accuracy" if judged == "val_accuracy" else "val_accuracy"
    value = target_metric(trial, other)
    side = "not recorded" if value is None else \
        f"{value:.2%}, {'also at or above' if value >= spec.target.value else 'below'} the target"
    return f"{_short(judged)} {target_metric(trial, judged):.2%}; {_short(other)} {side}"


def _short(metric: str) -> str:
    return metric.removesuffix("_accuracy")


def reached_line(trial: FrozenTrial, spec: StudySpec) -> str:
    """What a run that reached its target says: which trial reached it, how it was chosen, and its figures."""
    return (f"target {spec.describe_target()} reached by searched trial #{trial.number}, the first sampled trial "
            f"to meet it: {target_figures(trial, spec)}")


def baseline_note(trial: FrozenTrial, spec: StudySpec) -> str | None:
    """'baseline seed002-cnn-q9 already meets the target: val 99.17%; test 98.89%, also at or above the target'
    for a baseline that meets it, else None."""
    if not (is_baseline(trial) and meets_target(trial, spec)):
        return None
    return f"baseline {record.baseline(trial)} already meets the target: {target_figures(trial, spec)}"


def stop_rule(spec: StudySpec) -> dict[str, Any]:
    """The rule by which a run of `spec` stops early, as the study records it: the target's metric (None: no
    target), and for a test target the study file's reason for accepting it."""
    if spec.target is None:
        return {"metric": None}
    return {"metric": spec.target.metric, **({"why": spec.target.why} if spec.target.why else {})}


def stop_rules_with(stored: list[dict[str, Any]] | None, spec: StudySpec, trials_before: int) -> list | None:
    """The study's stop rules (StudyRecord.stop_rules) with a run of `spec` added, starting at trial
    `trials_before`; None where the last recorded rule is already this one."""
    rules = list(stored or [])
    rule = stop_rule(spec)
    if rules and {k: v for k, v in rules[-1].items() if k != "from_trial"} == rule:
        return None
    return [*rules, {"from_trial": trials_before, **rule}]


def describe_accepted_change(accepted: dict[str, Any]) -> str:
    """'from trial #4 on, budget.epochs 1 -> 2 (accepted 2026-12-07T11:00:00+00:00)': a change a run accepted
    (run --accept-change), under which the trials from that one on ran; best and report rank them with the rest."""
    return f"from trial #{accepted['from_trial']} on, {', '.join(accepted['changes'])} (accepted {accepted['at']})"


def describe_stop_rules(stored: list[dict[str, Any]] | None) -> str:
    """Which rule ended the study's runs early, trial by trial, in words. A study stored by an hpsearch older than
    the record ran under the older rule, which let a test target (the default then) stop the search unsaid."""
    older = ("an older hpsearch, whose runs stopped on the target's metric (test accuracy unless the study file "
             "named val_accuracy), so the test set may have decided when they ended")
    rules = list(stored or [])
    if not rules:
        return f"not recorded: stored by {older}"
    said = [] if rules[0]["from_trial"] == 0 else [f"trials #0 to #{rules[0]['from_trial'] - 1} ran under {older}"]
    for rule in rules:
        metric = rule["metric"]
        words = ("no target, a run stops at its budget" if metric is None else
                 "a run stops when a sampled trial's validation accuracy meets the target; its test accuracy is "
                 "reported beside it, never used to stop" if metric == "val_accuracy" else
                 "a run stops when a sampled trial's test accuracy meets the target, which biases the test accuracy "
                 f"reported at the stop upward (the study file accepts it: {rule.get('why')})")
        said.append(words if rule["from_trial"] == 0 else f"from trial #{rule['from_trial']} on, {words}")
    return "; ".join(said)


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class NewlyFinished:
    """Called step after step with the study's trials, gives each trial once, when it is first seen finished.

    A finished trial never changes, so what a run keeps track of (its count, the trials its decisions read, the
    weights kept) is looked for in each trial once: on a study of 8,000 trials a step looks at tens of trials,
    not 8,000 (bench/big_study.py). Trials unfinished when seen are looked at again at each step. Trial numbers
    are positions in the study's trial list.
    """

    def __init__(self):
        self.seen = 0  # trials numbered below this have been seen
        self.unfinished: set[int] = set()  # the numbers of those that were unfinished then

    def __call__(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials of `trials` (the study's, in number order) finished since the last call."""
        looked_at = [*sorted(self.unfinished), *range(self.seen, len(trials))]
        self.seen = len(trials)
        self.unfinished = {number for number in looked_at if not trials[number].state.is_finished()}
        return [trials[number] for number in looked_at if number not in self.unfinished]


def summarize_trial(trial: FrozenTrial) -> dict[str, Any]:
    """What a reader needs of one trial, in a form that prints as JSON or YAML."""
    did = record.outcome(trial)
    return {
        "number": trial.number,
        "state": trial.state.name,
        "val_accuracy": ranking.val_accuracy(trial) if trial.state == TrialState.COMPLETE else None,
        "test_accuracy": did.test_accuracy,
        "param_count": did.param_count,
        "epochs": did.epochs_trained,
        "seconds": did.seconds,
        "train_seconds": did.train_seconds,
        "device": did.device,
        "baseline": did.baseline,
        "params": P.stored_params(trial.params),
        "config": did.config if did.config is not None else P.stored_params(trial.params),
        "confirm": did.confirmation.as_dict() if did.confirmation is not None else None,
    }


def _versus(trials: list[FrozenTrial]) -> dict[str, Any] | None:
    """The best sampled trial and the best baseline, each by ranking.ranked (None: a study without baselines)."""
    if not any(is_baseline(t) for t in trials):
        return None
    searched = ranking.best_searched(trials)
    baseline = next((t for t in ranking.ranked(trials) if is_baseline(t)), None)
    return {key: summarize_trial(t) if t else None for key, t in (("searched", searched), ("baseline", baseline))}


def objectives(study: optuna.Study) -> list[str]:
    """The study's objectives as its study file named them: [val_accuracy], or val_accuracy and a measure."""
    return study.metric_names or ["val_accuracy"]


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The study's counts by state, its limits, and its best trial by ranking.best_trial (None if none
    counts), with the single-run best where confirmation chose another; a multi-objective study adds its
    front (ranking.front), whose most accurate point is the best.

    `trials` counts the trials that ran or run now; a queued (WAITING) one has not run yet. Trials copied
    from another study (warm_start) are counted apart, under `warm_start`, and in nothing else.
    """
    every = ranking.study_trials(study)
    copied, trials = [t for t in every if is_warm_start(t)], [t for t in every if not is_warm_start(t)]
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                            TrialState.WAITING)}
    best, single = ranking.best_trial(trials), ranking.single_run_best(trials)
    stored = record.study_record(study)
    summary = {"study": study.study_name, "trials": len(trials) - counts["waiting"], **counts,
               "limits": stored.bounds, "over_limit": sum(record.outcome(t).over_limit is not None for t in trials),
               "best": summarize_trial(best) if best else None,
               "single_run_best": None if single is None or single is best else summarize_trial(single),
               "versus": _versus(trials), "stop_rule": describe_stop_rules(stored.stop_rules)}
    if copied:
        summary["warm_start"] = {"trials": len(copied), "from": sorted({record.warm_start(t)["study"] for t in copied})}
    if stored.accepted_changes:
        summary["accepted_changes"] = list(stored.accepted_changes)
    if len(names := objectives(study)) > 1:
        summary["objectives"] = names
        summary["front"] = [summarize_trial(t) for t in ranking.front(trials, against=names[1])]
    return summary


def curve(trial: FrozenTrial) -> dict[int, float]:
    """Validation accuracy per epoch of any trial: its intermediate values, or its recorded curve in a
    multi-objective study."""
    return trial.intermediate_values or dict(enumerate(record.stored_curve(trial), start=1))


def single_objective_view(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of a multi-objective study as if it had maximised validation accuracy alone: the same
    trials under the same numbers, each with its curve as intermediate values (what plots and pruners read),
    and the same study attributes (confirmations among them)."""
    view = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name=study.study_name,
                               direction="maximize")
    view.add_trials([single_objective_trial(t) for t in study.get_trials(deepcopy=False)])
    record.copy_to(view, study)
    return view


def single_objective_trial(trial: FrozenTrial) -> FrozenTrial:
    """A trial of a multi-objective study as the single-objective view holds it."""
    value = trial.values[0] if trial.state == TrialState.COMPLETE else None
    return record.stand_in(trial, state=trial.state, value=value, params=trial.params,
                           distributions=trial.distributions, intermediate_values=curve(trial))
