"""Time to target: how much wall time, device time and how many trials a study spent before its search first
reached the target (a baseline that meets it is noted, not counted), and how many trials it finishes an hour.
The target is judged as a run judges it when it decides to stop: on validation accuracy, unless the study file
accepts a test target; the other accuracy of the trial that reached it is shown beside it.

Wall time is the time during which the study's runs were running trials: from the start of each run's
first trial to the end of its last (runs are told apart by the trials' `run` attribute; runs that
overlapped, on several machines, count once), so the days between two runs of a study do not count
and the time to read a dataset before the first trial does not either. Device-seconds add up each
trial's own `seconds`: with several workers they exceed the wall time.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from hpsearch import record
from hpsearch.results.trials import FINISHED, baseline_note, first_reaching, is_warm_start, target_figures
from hpsearch.studyfile.types import StudySpec


@dataclass(frozen=True)
class Pace:
    target: str  # the study's target, described, or "none"
    reached_by: int | None  # the sampled trial that first reached it
    reached_figures: str | None  # its accuracy the target is judged on, and the other beside it (target_figures)
    wall_s: float  # until then, or the whole study so far if not reached
    device_s: float
    counts: dict[str, int]  # complete, pruned, failed: the trials started before the target was reached (or all)
    finished: int  # in the whole study
    study_wall_s: float
    baseline_notes: tuple[str, ...] = ()  # the baselines that meet the target, each as study.baseline_note says

    @property
    def per_hour(self) -> float | None:
        return self.finished * 3600 / self.study_wall_s if self.study_wall_s > 0 else None


def pace(trials: list[FrozenTrial], spec: StudySpec | None) -> Pace:
    """The study's time to target (spec None: a study whose target is unknown) and its finished trials per hour;
    trials copied from another study (warm_start) ran there, not here."""
    trials = [t for t in trials if not is_warm_start(t)]
    ended = sorted((t for t in trials if t.datetime_complete is not None), key=lambda t: t.datetime_complete)
    reached = first_reaching(ended, spec) if spec is not None else None
    until = None if reached is None else reached.datetime_complete
    before = [t for t in trials if t.datetime_start is not None and (until is None or t.datetime_start < until)]
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    for t in before:
        key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}.get(t.state)
        if key is not None:
            counts[key] += 1
    return Pace(target=spec.describe_target() if spec is not None else "unknown",
                reached_by=None if reached is None else reached.number,
                reached_figures=None if reached is None else target_figures(reached, spec),
                wall_s=_busy_seconds(trials, until), device_s=sum(record.outcome(t).seconds or 0.0 for t in before),
                counts=counts, finished=sum(t.state in FINISHED for t in trials), study_wall_s=_busy_seconds(trials),
                baseline_notes=tuple(note for t in ended if spec is not None and (note := baseline_note(t, spec))))


def _busy_seconds(trials: list[FrozenTrial], until: datetime.datetime | None = None) -> float:
    """Seconds covered by the runs' spans (first trial start to last trial end of each run), up to `until`."""
    spans: dict[object, list[datetime.datetime]] = {}
    for t in trials:
        if t.datetime_start is None or (until is not None and t.datetime_start >= until):
            continue
        end = t.datetime_complete or t.datetime_start
        end = min(end, until) if until is not None else end
        run = record.run_id(t) or ("trial", t.number)  # a trial of no known run spans itself
        span = spans.setdefault(run, [t.datetime_start, end])
        span[0], span[1] = min(span[0], t.datetime_start), max(span[1], end)
    total, covered_to = 0.0, None
    for start, end in sorted(spans.values()):
        if covered_to is not None:
            start = max(start, covered_to)
        if end > start:
            total += (end - start).total_seconds()
        covered_to = end if covered_to is None else max(covered_to, end)
    return total


def duration(seconds: float) -> str:
    """'42.1 s', '12 min 5 s', '3 h 07 min'."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min {int(seconds % 60)} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def lines(p: Pace) -> list[str]:
    """The summary the end of a run, `report` and the dashboard note show."""
    counts = f"{p.counts['complete']} complete, {p.counts['pruned']} pruned, {p.counts['failed']} failed"
    trials = sum(p.counts.values())
    trials = f"{trials} trial{'' if trials == 1 else 's'}"
    if p.reached_by is not None:
        first = (f"Time to target ({p.target}): first reached by searched trial #{p.reached_by} "
                 f"({p.reached_figures}) after "
                 f"{duration(p.wall_s)} wall time and {duration(p.device_s)} of training (device-seconds); "
                 f"{trials} until then ({counts}).")
    else:
        why = "no target" if p.target == "none" else \
            "target unknown (give the study file as --study)" if p.target == "unknown" else f"target {p.target}: not reached yet"
        first = (f"Time to target ({why}): {duration(p.wall_s)} wall time and {duration(p.device_s)} of training "
                 f"(device-seconds) so far; {trials} ({counts}).")
    rate = f"{p.per_hour:,.0f} finished trials per hour" if p.per_hour is not None else "no finished trial yet"
    notes = [f"{note[0].upper()}{note[1:]}." for note in p.baseline_notes]
    return [first, *notes, f"Pace: {p.finished} finished trial{'' if p.finished == 1 else 's'} in "
                           f"{duration(p.study_wall_s)} wall time, {rate}."]
