"""Results rendered for stdout: a trial in one line, and `best`'s summary as text, JSON or YAML."""

from __future__ import annotations

import json
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpsearch import escape
from hpsearch import record
from hpsearch.results.ranking import how_chosen, val_accuracy
from hpsearch.results.report import NO_FAILURE_REASON
from hpsearch.results.stats import describe as describe_spread
from hpsearch.results.trials import curve, describe_accepted_change
from hpsearch.studyfile.limits import describe
from hpsearch.words import plural, yaml_document, yaml_value


def or_nan(value: float | None) -> float:
    """A recorded figure, NaN where none was recorded (it prints as nan)."""
    return float("nan") if value is None else value


def describe_trial(trial: FrozenTrial) -> str:
    did = record.outcome(trial)
    head = f"trial #{trial.number}"
    tag = f" ({did.baseline})" if did.baseline is not None else ""
    seconds = did.seconds or 0
    if trial.state == TrialState.COMPLETE:
        return (f"{head}{tag} complete: val {val_accuracy(trial):.4f}, test {or_nan(did.test_accuracy):.4f}, "
                f"{did.param_count or 0:,} params, {plural(did.epochs_trained, 'epoch')}, {seconds:.1f}s"
                + (f"; weights not kept: {did.weights_not_kept}" if did.weights_not_kept is not None else ""))
    if did.over_limit is not None:
        return f"{head}{tag} over a limit: {did.over_limit}"
    if did.stopped is not None:
        return f"{head}{tag} stopped: {did.stopped}, {seconds:.1f}s"
    if trial.state == TrialState.PRUNED:
        last = curve(trial).get(did.epochs_trained, float("nan"))
        return f"{head}{tag} pruned after epoch {did.epochs_trained} (val {last:.4f}), {seconds:.1f}s"
    if trial.state == TrialState.FAIL:
        return f"{head}{tag} failed: {did.failure or NO_FAILURE_REASON}"
    return f"{head}{tag} {trial.state.name.lower()}"


def render(summary: dict[str, Any], fmt: str) -> str:
    """A summary dict as json, yaml, or readable text (each line escaped for a terminal: a stored value may hold a
    newline or an escape sequence; a parameter's value written as in a study file)."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    if fmt == "yaml":
        return yaml_document(summary).rstrip()
    return "\n".join(map(escape.terminal, _text(summary)))


def _recorded(value: Any, spec: str) -> str:
    """`value` formatted, or "not recorded" where the trial has none (a trial another program added to the study)."""
    return "not recorded" if value is None else format(value, spec)


def _text(summary: dict[str, Any]) -> list[str]:
    counts = [f"{summary['complete']} complete", f"{summary['pruned']} pruned", f"{summary['fail']} failed"]
    counts += [f"{summary['running']} running"] if summary["running"] else []
    queued = f"; {summary['waiting']} queued to run next" if summary["waiting"] else ""
    lines = [f"study {summary['study']}: {plural(summary['trials'], 'trial')} ({', '.join(counts)}){queued}",
             f"stop rule: {summary['stop_rule']}"]
    lines += [f"changed {describe_accepted_change(accepted)}: ranked with the trials before it"
              for accepted in summary.get("accepted_changes", [])]
    if copied := summary.get("warm_start"):
        lines.append(f"warm start: {plural(copied['trials'], 'trial')} of study {', '.join(copied['from'])}, "
                     "observations for the sampler, counted nowhere else")
    if summary["limits"]:
        lines.append(f"limits {describe(summary['limits'])}: {plural(summary['over_limit'], 'trial')} over a limit, "
                     "stopped and never counted")
    best = summary["best"]
    if best is None:
        return lines + ["no completed trial within the limits yet" if summary["limits"] else "no completed trial yet"]
    if "front" in summary:
        return lines + _front_text(summary)
    confirm = record.Confirmation.from_dict(best.get("confirm") or {})
    confirmed = confirm.val is not None
    how = how_chosen(confirmed=confirmed, within_limits=bool(summary["limits"]))
    lines += [
        f"best trial #{best['number']}" + (f" (baseline {best['baseline']})" if best["baseline"] else "") + f": {how}",
        f"  val accuracy   {best['val_accuracy']:.4f}" + (" (its single run)" if confirmed else ""),
        f"  test accuracy  {_recorded(best['test_accuracy'], '.4f')}" + (" (its single run)" if confirmed else ""),
    ]
    if confirmed:
        seeds = ", ".join(map(str, confirm.trained_seeds))
        lines += [f"  confirmed val  {describe_spread(confirm.val)}",
                  f"  confirmed test {describe_spread(confirm.test)}",
                  f"                 (seeds {seeds}; `hpsearch report` compares the confirmed trials)"]
    lines += [
        f"  parameters     {_recorded(best['param_count'], ',')}",
        f"  epochs         {_recorded(best['epochs'], '')}",
        f"  seconds        {_recorded(best['seconds'], '.1f')}",
        f"  device         {_recorded(best['device'], '')}",
    ]
    if best["params"]:  # a baseline searched nothing: its config says it all
        lines += ["  searched params:", *(f"    {key}: {yaml_value(value)}" for key, value in best["params"].items())]
    lines.append("  (full config: hpsearch best --format yaml)")
    if (single := summary.get("single_run_best")) is not None:
        lines.append(f"note: the single-run best is trial #{single['number']} (val {single['val_accuracy']:.4f}), "
                     f"not the confirmed winner #{best['number']}")
    return lines + _versus_text(summary.get("versus"))


def _versus_text(versus: dict[str, Any] | None) -> list[str]:
    """The best searched trial against the best baseline, one line each (ranked as `best` ranks)."""
    if not versus:
        return []
    lines = ["search against the baselines:"]
    for label, key in (("best searched", "searched"), ("best baseline", "baseline")):
        t = versus[key]
        if t is None:
            lines.append(f"  {label}  none completed yet")
            continue
        name = f" ({t['baseline']})" if t["baseline"] else ""
        lines.append(f"  {label}  #{t['number']}: val {t['val_accuracy']:.4f}, test {t['test_accuracy']:.4f}, "
                     f"{t['param_count']:,} params, {t['seconds']:.1f}s{name}")
    return lines


def _front_text(summary: dict[str, Any]) -> list[str]:
    """A multi-objective study's front as a table, most accurate first."""
    second = summary["objectives"][1]
    rows = [("trial", "val acc", "test acc", "params", "train s", "epochs", "searched params")]
    for t in summary["front"]:
        searched = f"baseline {t['baseline']}" if t["baseline"] else \
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={yaml_value(v)}" for k, v in t["params"].items())
        rows.append((f"#{t['number']}", f"{t['val_accuracy']:.4f}", f"{t['test_accuracy']:.4f}", f"{t['param_count']:,}",
                     "" if t["train_seconds"] is None else f"{t['train_seconds']:.1f}", str(t["epochs"]), searched))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    table = ["  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return [f"Pareto front of val accuracy (higher) and {second} (lower): {plural(len(summary['front']), 'trial')}",
            *table, f"  (`hpsearch export --trial N` writes one; without --trial, export takes the most accurate, "
                    f"#{summary['best']['number']})"]
