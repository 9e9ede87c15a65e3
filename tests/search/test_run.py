"""One worker on a study: baselines interleaved with the search, exact totals across runs, the target, seeding,
an interrupted trial resumed first."""

from __future__ import annotations

import datetime

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import FrozenTrial, TrialState

from hpsearch.cli import main
from hpsearch.search.objective import RunEvents
from hpsearch.search.run import DecisionView, RunBudget, RunOptions, SamplerSeed, baseline_due, run
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.params import MAX_SEED
from hpsearch.studyfile.schema import load_spec
from tests.helpers import load


def test_until_tops_the_study_up_to_a_total(write_study, storage):
    spec = load_spec(write_study(budget={"epochs": 1, "trials": 50}))
    run(spec, storage, RunOptions(device="cpu", n_trials=2))
    assert len(run(spec, storage, RunOptions(device="cpu", until=5)).trials) == 5
    assert len(run(spec, storage, RunOptions(device="cpu", until=4)).trials) == 5  # already there: nothing added


def test_a_resumed_single_process_run_draws_what_it_drew_before(write_study, storage):
    """The draws are pinned: the same as hpsearch drew before workers got streams of their own."""
    spec = load_spec(write_study(budget={"epochs": 1, "trials": 3}))
    run(spec, storage, RunOptions(device="cpu", n_trials=2))
    study = run(spec, storage, RunOptions(device="cpu", n_trials=3))
    assert [(t.params["lr"], t.params["width"]) for t in study.trials] == [
        (0.0852084800119005, 11), (0.051157506159354584, 11), (0.010807638389333237, 9),
        (0.036844060823428594, 11), (0.026901438939558462, 9)]


class InterruptAfterEpoch(RunEvents):
    """Ctrl-C right after trial `number` reports epoch `epoch` (where a kill between the report and
    the checkpoint used to lose that epoch)."""

    def __init__(self, number: int, epoch: int):
        self.number, self.epoch = number, epoch

    def epoch_finished(self, number, stats) -> None:
        if (number, stats.epoch) == (self.number, self.epoch):
            raise KeyboardInterrupt


def test_an_interrupted_trial_resumes_first_from_its_last_reported_epoch_and_forgets_the_failure(write_study,
                                                                                                 storage):
    spec = load_spec(write_study(baselines=["seed002-cnn-q9", "seed002-fc"], budget={"epochs": 3, "trials": 4}))
    with pytest.raises(KeyboardInterrupt):
        run(spec, storage, RunOptions(device="cpu"), events=InterruptAfterEpoch(1, 2))  # #0 is sampled, #1 a baseline
    interrupted = load(storage).trials[1]
    assert interrupted.user_attrs["baseline"] == "seed002-cnn-q9" and "interrupted" in interrupted.user_attrs["failure"]

    study = run(spec, storage, RunOptions(device="cpu", n_trials=1))
    resumed = [t for t in study.trials[2:] if t.state == TrialState.COMPLETE]
    assert [t.system_attrs.get("failed_trial") for t in resumed] == [1]  # the copy ran before baseline seed002-fc
    assert resumed[0].user_attrs["baseline"] == "seed002-cnn-q9"
    assert resumed[0].user_attrs["resumed_from_epoch"] == 2  # saved before epoch 2 was reported
    assert "failure" not in resumed[0].user_attrs


def test_a_second_run_continues_the_same_study(write_study, storage):
    spec = load_spec(write_study())
    run(spec, storage, RunOptions(device="cpu", n_trials=2))
    study = run(spec, storage, RunOptions(device="cpu", n_trials=2))
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    lrs = [t.params["lr"] for t in study.trials]
    assert len(set(lrs)) == 4  # the resumed sampler does not replay the first run's draws


def test_the_run_stops_once_a_trial_reaches_the_target(write_study, storage):
    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.5}, budget={"epochs": 3, "trials": 5}))
    assert len(run(spec, storage, RunOptions(device="cpu")).trials) == 1
    again = run(spec, storage, RunOptions(device="cpu", stop_at_target=False, n_trials=2))
    assert len(again.trials) == 3


def test_a_sampler_seed_at_the_top_of_its_range_wraps_when_a_worker_reseeds(write_study):
    seeded = optuna.create_study()
    SamplerSeed(load_spec(write_study()), MAX_SEED).follow(seeded, 3)  # as after another worker added 3 trials
    expected = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))  # MAX_SEED + 3, past 32 bits
    assert seeded.ask().suggest_float("x", 0, 1) == expected.ask().suggest_float("x", 0, 1)


def run_study(write_study, storage, n_trials, baselines=("seed002-cnn-q9", "seed002-fc"), **overrides):
    spec = load_spec(write_study(baselines=list(baselines), budget={"epochs": 2, "trials": n_trials},
                                 pruner={"name": "median", "n_startup_trials": 0, "min_epochs": 0}, **overrides))
    return run(spec, storage, RunOptions(device="cpu"))


def test_baselines_interleave_with_the_search_all_within_the_budget_and_once_across_runs(write_study, storage):
    run_study(write_study, storage, 3)
    study = run_study(write_study, storage, 2)
    tags = [t.user_attrs.get("baseline") for t in study.trials]
    # The search goes first; a baseline follows once the search has had more of the run's time; the last
    # trial of a 3-trial budget is the baseline still missing, so both ran within it; a second run adds none.
    assert tags == [None, "seed002-cnn-q9", "seed002-fc", None, None]
    q9 = study.trials[1]
    assert q9.state == TrialState.COMPLETE and q9.params == {}  # fixed: nothing sampled
    assert q9.user_attrs["config"] == BASELINES["seed002-cnn-q9"].config()
    assert q9.user_attrs["param_count"] == 128_490  # the q9 net rebuilt for 8x8 one-channel digits
    assert q9.user_attrs["epochs"] == 2  # a baseline is never pruned: it runs the study's budget


def past_trial(number, seconds, *, baseline=None, run="r", state=TrialState.COMPLETE):
    """A stored trial that started `number` minutes past noon and ran `seconds` (None: still running)."""
    start = datetime.datetime(2026, 12, 3, 12, number)
    end = None if seconds is None else start + datetime.timedelta(seconds=seconds)
    return FrozenTrial(number=number, state=state if seconds is not None else TrialState.RUNNING,
                       value=0.9 if state == TrialState.COMPLETE and seconds is not None else None, values=None,
                       datetime_start=start, datetime_complete=end, params={}, distributions={},
                       user_attrs={"run": run, **({"baseline": baseline} if baseline else {})}, system_attrs={},
                       intermediate_values={}, trial_id=number)


NOON = datetime.datetime(2026, 12, 3, 12, 30)


@pytest.mark.parametrize("trials, slots_left, due", [
    ([], 10, None),  # the search starts
    ([past_trial(0, 5)], 10, "b1"),  # the search had 5 s, the baselines none
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 10, None),  # b1 took more than the search
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1"), past_trial(2, 61)], 10, "b2"),
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 1, "b2"),  # one trial left: the missing baseline
    ([past_trial(0, 5), past_trial(1, 60, baseline="b1")], 2, None),  # two left: the search may take one
    ([past_trial(0, 500, run="earlier"), past_trial(1, 5)], 10, "b1"),  # only this run's time counts
    ([past_trial(0, 5), past_trial(1, 5, baseline="b1"), past_trial(2, 1, baseline="b2")], 1, None),  # all ran
    ([past_trial(0, 5), past_trial(1, 2, baseline="b1", state=TrialState.FAIL)], 10, "b2"),  # b1 failed: queued once
    # (a lost trial's copy is queued by retries.fail_lost_trials, and waits: see below)
    ([past_trial(0, None)], 10, "b1"),  # a running trial counts the time it has run so far (other workers)
])
def test_a_baseline_is_due_when_the_search_had_more_of_the_run_or_the_budget_needs_it(trials, slots_left, due):
    assert baseline_due(trials, ("b1", "b2"), "r", slots_left, NOON) == due


def test_the_decision_view_reads_each_finished_trial_once_and_keeps_what_decisions_read():
    """Across steps, the view holds what a full scan would pick (this run's trials, baselines, retried copies,
    unfinished ones) and counts the finished trials, without looking at a finished trial twice."""
    earlier = [past_trial(n, 5, run="earlier") for n in range(4)]
    earlier[1].set_user_attr("baseline", "b1")
    copy = past_trial(4, 5, run="earlier")
    copy.state, copy.datetime_complete = TrialState.WAITING, None
    copy.system_attrs["retry_history"] = [2]
    ours = past_trial(5, None)
    view = DecisionView("r")
    view.update([*earlier, copy, ours])
    assert ([t.number for t in view.trials], view.finished) == ([1, 4, 5], 4)
    copy.state, copy.user_attrs["run"] = TrialState.COMPLETE, "r"
    ours.state = TrialState.PRUNED
    looked_at = []
    for trial in earlier:  # a finished trial is never looked at again
        trial.user_attrs = _Watched(trial.user_attrs, looked_at)
    view.update([*earlier, copy, ours, past_trial(6, 5, run="other"), past_trial(7, None)])
    assert ([t.number for t in view.trials], view.finished, looked_at) == ([1, 4, 5, 7], 7, [])


class _Watched(dict):
    def __init__(self, attrs, looked_at):
        super().__init__(attrs)
        self.looked_at = looked_at

    def get(self, *args):
        self.looked_at.append(args[0])
        return super().get(*args)

    def __contains__(self, key):
        self.looked_at.append(key)
        return super().__contains__(key)


def test_a_waiting_copy_goes_before_any_baseline():
    waiting = past_trial(1, 5, baseline="b1")
    waiting.state = TrialState.WAITING
    assert baseline_due([past_trial(0, 5), waiting], ("b1", "b2"), "r", 1, NOON) is None


def test_a_baseline_waits_while_the_run_searches_and_is_noted_when_it_meets_the_target(write_study, storage):
    path = write_study(baselines=["seed002-cnn-q9"], budget={"epochs": 2, "trials": 3},
                       target={"metric": "val_accuracy", "value": 0.5},
                       space={"lr": {"float": [1e-6, 2e-6], "log": True}})  # the search cannot learn in 2 epochs
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    # Searching for the target, the baseline waits until the budget's last trial, so that it still runs.
    assert [t.user_attrs.get("baseline") for t in study.trials] == [None, None, "seed002-cnn-q9"]
    q9 = study.trials[2]
    assert q9.value >= 0.5 and all(t.value < 0.5 for t in study.trials[:2])
    test = q9.user_attrs["test_accuracy"]
    note = (f"baseline seed002-cnn-q9 already meets the target: val {q9.value:.2%}; test {test:.2%}, "
            f"{'also at or above' if test >= 0.5 else 'below'} the target")
    assert f"  {note}\n" in result.stderr and f"B{note[1:]}." in result.stdout
    assert "target val_accuracy >= 50.00%: not reached yet" in result.stdout


def test_once_the_search_reaches_the_target_the_run_runs_the_baselines_then_stops(write_study, storage):
    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.5}, budget={"epochs": 3, "trials": 10},
                                 baselines=["seed002-cnn-q9", "seed002-fc"]))
    study = run(spec, storage, RunOptions(device="cpu"))
    assert [t.user_attrs.get("baseline") for t in study.trials] == [None, "seed002-cnn-q9", "seed002-fc"]
    assert study.trials[0].value >= 0.5 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_while_the_run_searches_for_its_target_a_baseline_waits_unless_the_budget_needs_it_then_runs():
    searched = [past_trial(0, 5)]  # without a target to stop at, b1 would be due (see above)
    assert baseline_due(searched, ("b1", "b2"), "r", 10, NOON, target="searching") is None
    assert baseline_due(searched, ("b1", "b2"), "r", 2, NOON, target="searching") == "b1"
    took_longer = [past_trial(0, 5), past_trial(1, 60, baseline="b1")]  # interleaving, b2 would wait (see above)
    assert baseline_due(took_longer, ("b1", "b2"), "r", 10, NOON, target="reached") == "b2"


def test_a_run_ends_when_what_its_timeout_leaves_is_shorter_than_its_fastest_completed_trial(write_study):
    budget = RunBudget(load_spec(write_study()), RunOptions(timeout=100), "r")
    view = DecisionView("r")
    view.update([past_trial(0, 5)])
    assert budget.decide(view, 5) == "start"
    took = past_trial(1, 150)
    took.set_user_attr("train_seconds", 150.0)
    view.update([past_trial(0, 5), took])
    assert budget.decide(view, 5) == "done" and RunBudget(budget.spec, RunOptions(), "r").seconds_left() is None
