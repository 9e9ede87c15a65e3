"""One Markdown table per study: the reports' baselines as reproduced here, then the best searched trials.

A baseline's reported accuracy stands beside what it reached in this study's pipeline and budget,
so the gap the search opens is read off one table. Unfinished baselines show as pending.
A report folder adds the study's plots (plots.py) and an index.html that shows table and plots.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import escape
from hpsearch import record
from hpsearch.files import write_atomic
from hpsearch.results import ranking, timing
from hpsearch.results.trials import describe_accepted_change, describe_stop_rules, objectives
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.limits import describe
from hpsearch.studyfile.types import StudySpec
from hpsearch.words import plural

NO_FAILURE_REASON = "no reason recorded: its worker died or lost the storage (a retry is queued)"
HEADER = ("trial", "model", "source", "reported", "val acc", "test acc", "params", "epochs", "seconds")


# A number in a failure reason: an lr, an epoch, a batch size, GiB asked, nan or inf; not a digit inside a name.
_NUMBER = re.compile(r"(?<![\w.-])[-+]?(?:\d+(?:[.,]\d+)*(?:e[-+]?\d+)?|nan|inf)(?!\w|\.\d)", re.IGNORECASE)


def most_common_failure(trials: Sequence[FrozenTrial]) -> tuple[str, int] | None:
    """The kind of failure most of the failed ones among `trials` record, and how many do; None if none failed.

    Reasons of one kind differ only in their numbers (each diverged trial names its own lr): a number the kind's
    trials share is shown, one that differs as "…". Each trial keeps its own reason.
    """
    kinds: dict[tuple[str, ...], list[list[str]]] = {}
    for trial in trials:
        if trial.state == TrialState.FAIL:
            reason = record.outcome(trial).failure or NO_FAILURE_REASON
            kinds.setdefault(tuple(_NUMBER.split(reason)), []).append(_NUMBER.findall(reason))
    if not kinds:
        return None
    words, numbers = max(kinds.items(), key=lambda kind: len(kind[1]))  # the first seen of the most common
    shown = [values[0] if len(set(values)) == 1 else "…" for values in zip(*numbers)]
    return "".join(w + n for w, n in zip(words, [*shown, ""])), len(numbers)


def baseline_names(study: optuna.Study, listed: Sequence[str] = ()) -> list[str]:
    """The study file's baselines, then any other baseline found among the stored trials."""
    stored = [name for t in study.get_trials(deepcopy=False) if (name := record.baseline(t)) is not None]
    return list(dict.fromkeys([*listed, *stored]))


def rows(study: optuna.Study, listed: Sequence[str] = (), top: int = 5,
         dataset: str | None = None) -> list[tuple[str, ...]]:
    trials = study.get_trials(deepcopy=False)
    by_baseline: dict[str, FrozenTrial] = {}
    for trial in trials:  # the latest attempt of each baseline wins
        if (name := record.baseline(trial)) is not None:
            by_baseline[name] = trial
    table = []
    for name in baseline_names(study, listed):
        b = BASELINES.get(name)
        reported = (f"{b.reported_accuracy:.2%} {b.reported_metric}" if b and b.reported_accuracy is not None
                    else "figure only")
        if b and b.dataset != dataset:  # a figure from another dataset is context, not a target
            reported += f" on {b.dataset}"
        table.append(_row(by_baseline.get(name), name, f"report {b.report}" if b else "", reported))
    searched = [t for t in ranking.ranked(trials) if record.baseline(t) is None]
    for rank, trial in enumerate(searched[:top], start=1):
        table.append(_row(trial, f"searched #{rank}", "hpsearch", ""))
    return table


def _row(trial: FrozenTrial | None, model: str, source: str, reported: str) -> tuple[str, ...]:
    if trial is None or trial.state in (TrialState.WAITING, TrialState.RUNNING):
        number = "" if trial is None else f"#{trial.number}"
        return (number, model, source, reported, "pending", "pending", "", "", "")
    did = record.outcome(trial)
    if trial.state == TrialState.COMPLETE:
        test = float("nan") if did.test_accuracy is None else did.test_accuracy
        val, test = f"{ranking.val_accuracy(trial):.2%}", f"{test:.2%}"
    elif did.over_limit is not None:
        val, test = f"over a limit: {did.over_limit}", ""
    else:
        val, test = trial.state.name.lower() + (f": {did.failure}" if did.failure else ""), ""
    params = f"{did.param_count:,}" if did.param_count is not None else ""
    epochs = "" if did.epochs_trained is None else str(did.epochs_trained)
    return (f"#{trial.number}", model, source, reported, val, test, params, epochs, f"{did.seconds or 0:.1f}")


def _title(study: optuna.Study, epochs: int | None) -> str:
    return f"{study.study_name}: baselines and best searched trials" + (f", {plural(epochs, 'epoch')} a trial" if epochs else "")


NOTE = ("Reported: the accuracy the report gives, under its own budget. Val and test: this study's pipeline, budget "
        "and split; searched trials are ranked by validation accuracy (of equal accuracies, the earliest first).")


def winner(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str | None:
    """Which trial is the study's best and how it was chosen; a baseline that wins is named as one, with the best
    searched trial beside it. None while no trial counts."""
    best = ranking.best_trial(trials)
    if best is None:
        return None
    names = objectives(study)
    how = ranking.how_chosen(confirmed=ranking.confirmed_mean(best) is not None,
                             within_limits=limits_line(study) is not None, second=names[1] if len(names) > 1 else None)
    said = f"Best: trial #{best.number}, {how}."
    if (baseline := record.baseline(best)) is not None:
        searched = ranking.best_searched(trials)
        said = (f"Best: trial #{best.number}, baseline {baseline} (a hand-made model of the "
                f"reports, not a searched one), {how}. " + (
                    f"The best searched trial is #{searched.number} (val {ranking.val_accuracy(searched):.2%})."
                    if searched is not None else "No searched trial has completed yet."))
    return said


def outcome(study: optuna.Study) -> str | None:
    """One sentence when the study has no completed trial to show (why, if its trials failed), else None."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return "No trial has completed yet."
    reason, count = most_common_failure(failed)
    share = f"every trial failed ({len(failed)})" if len(failed) == len(trials) else \
        f"{len(failed)} of its {plural(len(trials), 'trial')} failed and none completed"
    return f"No trial completed: {share}; the most common reason ({count} of {len(failed)}): {reason}."


def limits_line(study: optuna.Study) -> str | None:
    """What the study's limits are and how many trials broke one; None for a study without limits."""
    stored = record.study_record(study).bounds
    if not stored:
        return None
    over = sum(record.outcome(t).over_limit is not None for t in study.get_trials(deepcopy=False))
    return f"Limits: {describe(stored)}. {plural(over, 'trial')} over a limit, stopped and never ranked."


CONFIRM_HEADER = ("trial", "model", "seeds", "val mean ± std", "val 95% interval", "test mean ± std",
                  "single run val")


def confirmation(trials: Sequence[FrozenTrial]) -> tuple[list[tuple[str, ...]], list[str]]:
    """The confirmed trials (best mean validation accuracy first) as table rows, and what they say of the winner."""
    confirmed = ranking.confirmed(trials)
    if not confirmed:
        return [], []
    table = []
    for t in confirmed:
        confirm = record.confirmation(t)
        val, test = confirm.val, confirm.test
        seeds = confirm.trained_seeds
        failed = len(confirm.seeds) - len(seeds)
        table.append((f"#{t.number}", record.baseline(t) or "searched",
                      ", ".join(map(str, seeds)) + (f" ({failed} diverged)" if failed else ""),
                      f"{val['mean']:.2%} ± {val['std']:.2%}" if val["std"] is not None else f"{val['mean']:.2%}",
                      f"{val['ci95'][0]:.2%} to {val['ci95'][1]:.2%}" if val["ci95"] else "one seed",
                      f"{test['mean']:.2%} ± {test['std']:.2%}" if test["std"] is not None else f"{test['mean']:.2%}",
                      f"{ranking.val_accuracy(t):.2%}"))
    top, single = confirmed[0], ranking.single_run_best(trials)
    said = [f"Confirmed winner: trial #{top.number}, {ranking.CONFIRMED_RULE} ({plural(len(confirmed), 'trial')} "
            "confirmed); `best`, `export` and this report name it."]
    if single is not top:
        said.append(f"The single-run best, trial #{single.number} (val {ranking.val_accuracy(single):.2%}), is not "
                    "the confirmed winner: its single run was luckier than its seeds.")
    return table, said


def _time_to_target(study: optuna.Study, trials: Sequence[FrozenTrial], spec: StudySpec | None) -> list[str]:
    """The time to target and pace, after the rule that stopped the study's runs (which the figure depends on)."""
    stored = record.study_record(study)
    rules = describe_stop_rules(stored.stop_rules)
    changed = [f"Changed {describe_accepted_change(accepted)}: ranked with the trials before it."
               for accepted in stored.accepted_changes]
    return [f"Stop rule: {rules}.", *changed, *timing.lines(timing.pace(list(trials), spec))]


def markdown_table(header: Sequence[str], table: Sequence[Sequence[str]]) -> list[str]:
    """Rows of plain text (a baseline's name, a failure's reason) as a Markdown table, each cell escaped."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(escape.markdown(cell) for cell in row) + " |" for row in table)]


def markdown(study: optuna.Study, listed: Sequence[str] = (), *, epochs: int | None = None,
             spec: StudySpec | None = None) -> str:
    """The table as Markdown, headed by the study name and its per-trial budget; then the confirmed trials, if
    any, and the time to target (`spec` gives the target; None: unknown). Every line of text is escaped, so that
    what a user named (the study, say) reads as it is: report.md and the dashboard note render no markup of theirs."""
    text = escape.markdown
    trials = ranking.study_trials(study)
    table = rows(study, listed, dataset=record.study_record(study).dataset)
    lines = [f"# {text(_title(study, epochs))}", ""]
    if said := limits_line(study):
        lines += [text(said), ""]
    if said := outcome(study):
        lines += [f"**{text(said)}**", ""]
    lines += [*markdown_table(HEADER, table), "", text(NOTE)]
    if said := winner(study, trials):
        lines += ["", text(said)]
    confirmed, verdict = confirmation(trials)
    if confirmed:
        lines += ["", "## Confirmation: the best trials trained again with new seeds", "",
                  *markdown_table(CONFIRM_HEADER, confirmed), "", *map(text, verdict)]
    lines += ["", "## Time to target", "", *(f"- {text(line)}" for line in _time_to_target(study, trials, spec))]
    return "\n".join(lines) + "\n"


def write_directory(study: optuna.Study, listed: Sequence[str] = (), *, epochs: int | None = None,
                    spec: StudySpec | None = None, out: Path) -> list[str]:
    """report.md, the PNG plots and an index.html showing both, in the folder `out`; the names written."""
    from hpsearch.results import plots  # matplotlib takes seconds to import: only this report needs it

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.md", markdown(study, listed, epochs=epochs, spec=spec))
    drawn = plots.write_plots(study, out, limits=spec.limits if spec is not None else None)
    trials = ranking.study_trials(study)
    table = rows(study, listed, dataset=record.study_record(study).dataset)
    confirmed, verdict = confirmation(trials)
    paragraphs = lambda lines: "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)
    figures = "\n".join(
        f"<h2>{html.escape(p.title)}</h2>\n<p>{html.escape(p.about)}</p>\n"
        + (f"<p><em>Not drawn: {html.escape(p.skipped)}.</em></p>" if p.skipped
           else (f"<p><strong>Read with care: this plot {html.escape(p.caveat)}.</strong></p>\n" if p.caveat else "")
           + f'<img src="{p.file}" alt="{html.escape(p.title)}">')
        for p in drawn)
    said, limits = outcome(study), limits_line(study)
    confirm_html = ("<h2>Confirmation: the best trials trained again with new seeds</h2>\n"
                    f"<table><thead><tr>{cells(CONFIRM_HEADER, 'th')}</tr></thead><tbody>\n"
                    + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in confirmed)
                    + f"\n</tbody></table>\n{paragraphs(verdict)}") if confirmed else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(_title(study, epochs))}</h1>
{f"<p>{html.escape(limits)}</p>" if limits else ""}
{f"<p><strong>{html.escape(said)}</strong></p>" if said else ""}
<table><thead><tr>{cells(HEADER, "th")}</tr></thead><tbody>
{"".join(f"<tr>{cells(row, 'td')}</tr>" for row in table)}
</tbody></table>
<p>{html.escape(NOTE)}</p>
{f"<p>{html.escape(best)}</p>" if (best := winner(study, trials)) else ""}
{confirm_html}
<h2>Time to target</h2>
{paragraphs(_time_to_target(study, trials, spec))}
{figures}
</body></html>
"""
    write_atomic(out / "index.html", page)
    return ["report.md", *(p.file for p in drawn if not p.skipped), "index.html"]
