"""Time to target and pace: the runs' busy time, not the gaps between them; a baseline at the target is noted."""

from __future__ import annotations

import datetime

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpsearch.results import report, timing


def ended(number: int, run: str, start_s: float, end_s: float, state: TrialState, value: float | None = None):
    """A trial of run `run` that ran from start_s to end_s seconds after a fixed instant, with those seconds."""
    t0 = datetime.datetime(2026, 1, 1)
    return FrozenTrial(number=number, state=state, value=value, values=None, trial_id=number,
                       datetime_start=t0 + datetime.timedelta(seconds=start_s),
                       datetime_complete=t0 + datetime.timedelta(seconds=end_s), params={}, distributions={},
                       user_attrs={"run": run, "seconds": end_s - start_s}, system_attrs={}, intermediate_values={})


def test_time_to_target_counts_the_runs_time_not_the_gap_between_them(storage, write_study):
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9}))
    study = optuna.create_study(study_name="timed", storage=storage, direction="maximize")
    day = 86_400
    reaching = ended(3, "b", day, day + 10, TrialState.COMPLETE, 0.95)
    reaching.user_attrs.update(test_accuracy=0.89)  # the stop is judged on validation: test is only shown
    for trial in (ended(0, "a", 0, 10, TrialState.COMPLETE, 0.5), ended(1, "a", 10, 20, TrialState.PRUNED),
                  ended(2, "a", 20, 30, TrialState.FAIL), reaching,
                  ended(4, "b", day + 10, day + 30, TrialState.COMPLETE, 0.96)):
        study.add_trial(trial)
    assert timing.lines(timing.pace(study.get_trials(), spec)) == [
        "Time to target (val_accuracy >= 90.00%): first reached by searched trial #3 (val 95.00%; test 89.00%, below "
        "the target) after 40.0 s wall time and 40.0 s of training (device-seconds); 4 trials until then (2 complete, "
        "1 pruned, 1 failed).",
        "Pace: 4 finished trials in 60.0 s wall time, 240 finished trials per hour."]
    markdown = report.markdown(study, spec=spec)
    assert ("## Time to target\n\n- Stop rule: not recorded: stored by an older hpsearch, whose runs stopped on the "
            "target's metric (test accuracy unless the study file named val_accuracy), so the test set may have "
            "decided when they ended.\n- Time to target (val_accuracy >= 90.00%): first reached by searched trial #3 "
            "(val 95.00%; test 89.00%, below the target) after 40.0 s") in markdown
    assert timing.lines(timing.pace(study.get_trials(), None))[0].startswith(
        "Time to target (target unknown (give the study file as --study)): 60.0 s wall time")


def test_a_baseline_that_meets_the_target_is_noted_and_the_search_still_has_to_reach_it(storage, write_study):
    """With a test target the study file accepts, the figures are judged on test, validation beside them."""
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(write_study(target={"metric": "test_accuracy", "value": 0.9,
                                         "test_set_stops_the_search": "report 003 stopped on test: compare alike"}))
    study = optuna.create_study(study_name="timed", storage=storage, direction="maximize")
    first = ended(0, "a", 0, 10, TrialState.COMPLETE, 0.95)
    first.user_attrs.update(baseline="seed002-cnn-q9", test_accuracy=0.9917)
    second = ended(1, "a", 10, 30, TrialState.COMPLETE, 0.93)
    second.user_attrs.update(test_accuracy=0.93)
    for trial in (first, second):
        study.add_trial(trial)
    assert timing.lines(timing.pace(study.get_trials(), spec))[:2] == [
        "Time to target (test_accuracy >= 90.00%): first reached by searched trial #1 (test 93.00%; val 93.00%, also "
        "at or above the target) after 30.0 s wall time and 30.0 s of training (device-seconds); 2 trials until then "
        "(2 complete, 0 pruned, 0 failed).",
        "Baseline seed002-cnn-q9 already meets the target: test 99.17%; val 95.00%, also at or above the target."]


@pytest.mark.parametrize("seconds, said", [(42.14, "42.1 s"), (119.94, "119.9 s"), (125, "2 min 5 s"),
                                           (7199, "119 min 59 s"), (7260, "2 h 01 min")])
def test_a_duration_reads_in_the_unit_that_suits_it(seconds, said):
    assert timing.duration(seconds) == said


def test_runs_that_overlap_count_once_and_a_trial_of_no_run_spans_itself():
    """Two machines' runs at once, then a trial stored without a run: 150 s + 20 s of wall time, not 250 s."""
    lone = ended(3, "x", 500, 520, TrialState.COMPLETE, 0.5)
    del lone.user_attrs["run"]
    trials = [ended(0, "a", 0, 100, TrialState.COMPLETE, 0.5), ended(1, "b", 50, 150, TrialState.COMPLETE, 0.6),
              ended(2, "b", 60, 70, TrialState.PRUNED), lone]
    paced = timing.pace(trials, None)
    assert (paced.study_wall_s, paced.finished, paced.reached_by) == (170.0, 4, None)
    assert paced.per_hour == pytest.approx(4 * 3600 / 170)
    assert timing.pace([], None).per_hour is None
