"""Results for stdout: a trial in one line, and `best` as text, JSON or YAML."""

from __future__ import annotations

import json
import re

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.results import ranking
from hpsearch.results.render import describe_trial, render
from hpsearch.results.report import NO_FAILURE_REASON
from hpsearch.results.trials import summarize
from tests.helpers import invoke, stored_trial


def test_best_says_what_the_study_holds(storage):
    study = optuna.create_study(study_name="held", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")  # as hpsearch marks the studies it makes
    study.add_trial(stored_trial(0.9, {"lr": 0.1, "head_widths": "[256]"}))
    study.enqueue_trial({"lr": 0.05})  # a retried copy, queued: it has not run
    text = invoke("best", "--study", "held", "--storage", storage).stdout
    assert text.startswith("study held: 1 trial (1 complete, 0 pruned, 0 failed); 1 queued to run next\n")
    as_yaml = yaml.safe_load(invoke("best", "--study", "held", "--storage", storage, "--format", "yaml").stdout)
    assert as_yaml["trials"] == 1 and as_yaml["waiting"] == 1
    assert as_yaml["best"]["params"] == {"lr": 0.1, "head_widths": [256]}  # a list, not its JSON text


def test_best_of_a_baseline_shows_no_empty_searched_params(storage):
    study = optuna.create_study(study_name="base", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")  # as hpsearch marks the studies it makes
    study.add_trial(stored_trial(0.9, {}, baseline="seed001-cnn"))
    text = invoke("best", "--study", "base", "--storage", storage).stdout
    assert "best trial #0 (baseline seed001-cnn)" in text and "searched params" not in text
    assert "best trial #0 (baseline seed001-cnn): the highest validation accuracy of all completed trials, baselines " \
           "included\n" in text  # how it was chosen, beside the first trial to reach the target


def test_best_shows_a_stored_name_on_its_own_line_whatever_it_holds(storage):
    """A baseline's name as a foreign or damaged study may store it: escaped, so it cannot forge a line."""
    study = optuna.create_study(study_name="odd", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")
    study.add_trial(stored_trial(0.9, {}, baseline="q9\nerror: forged\x1b[2J"))
    text = invoke("best", "--study", "odd", "--storage", storage).stdout
    assert "best trial #0 (baseline q9\\nerror: forged\\x1b[2J): the highest" in text and "\x1b" not in text
    assert not any(line.startswith("error") for line in text.splitlines())


def test_best_of_a_trial_that_recorded_only_its_validation_accuracy_says_what_is_missing(storage):
    """A trial another program added (or an older hpsearch stored) without test accuracy, size or time was a
    traceback in `best`."""
    study = optuna.create_study(study_name="bare", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5, user_attrs={"val_accuracy": 0.5}))
    result = invoke("best", "--study", "bare", "--storage", storage)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert [line[17:] for line in result.stdout.splitlines()
            if line.startswith(("  test accuracy", "  parameters", "  epochs", "  seconds", "  device"))] == [
        "not recorded"] * 5


def test_best_lists_the_front_and_export_takes_any_point(front_study, tmp_path):
    url, path, study = front_study
    front = ranking.front(study.trials)
    runner = CliRunner()
    text = runner.invoke(main, ["best", "--study", str(path), "--storage", url]).stdout
    assert f"Pareto front of val accuracy (higher) and params (lower): {len(front)} trial" in text
    for trial in front:
        assert re.search(rf"#{trial.number} +{ranking.val_accuracy(trial):.4f} ", text), text
    listed = json.loads(runner.invoke(main, ["best", "--study", str(path), "--storage", url, "--format", "json"]).stdout)
    assert [t["number"] for t in listed["front"]] == [t.number for t in front]
    assert listed["objectives"] == ["val_accuracy", "params"] and listed["best"]["number"] == front[0].number

    point = front[-1]
    result = runner.invoke(main, ["export", "--study", str(path), "--storage", url, "--trial", str(point.number),
                                  "-o", str(tmp_path / "point.yaml")])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "point.yaml").read_text())
    assert config["trial"] == point.number and config["metrics"]["val_accuracy"] == ranking.val_accuracy(point)
    assert config["metrics"]["param_count"] == point.values[1]
    result = runner.invoke(main, ["export", "--study", str(path), "--storage", url, "-o", str(tmp_path / "top.yaml")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "top.yaml").read_text())["trial"] == front[0].number
    assert f"note: trial #{front[0].number} is the most accurate of {len(front)} trial" in result.stderr


def numbered(trial: optuna.trial.FrozenTrial, number: int = 4) -> optuna.trial.FrozenTrial:
    trial.number = number
    return trial


@pytest.mark.parametrize("trial, line", [
    (numbered(stored_trial(0.91234, baseline="seed002-fc")),
     "trial #4 (seed002-fc) complete: val 0.9123, test 0.9123, 1,000 params, 3 epochs, 1.0s"),
    (numbered(optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5, 2: 0.25},
                                        user_attrs={"epochs": 2, "seconds": 2.25})),
     "trial #4 pruned after epoch 2 (val 0.2500), 2.2s"),
    (numbered(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={
        "epochs": 0, "over_limit": "params 5,000 over the limit 2,000: not trained"})),
     "trial #4 over a limit: params 5,000 over the limit 2,000: not trained"),
    (numbered(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"failure": "training loss became nan"})),
     "trial #4 failed: training loss became nan"),
    (numbered(optuna.trial.create_trial(state=TrialState.FAIL)), f"trial #4 failed: {NO_FAILURE_REASON}"),
    (numbered(optuna.trial.create_trial(state=TrialState.WAITING)), "trial #4 waiting"),
], ids=["complete", "pruned", "over-limit", "failed", "failed-silently", "waiting"])
def test_a_trial_in_one_line_whatever_its_state(trial, line):
    assert describe_trial(trial) == line


def test_a_summary_renders_as_json_yaml_or_text_and_says_when_nothing_completed(storage):
    study = optuna.create_study(study_name="young", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    summary = summarize(study)
    assert json.loads(render(summary, "json")) == yaml.safe_load(render(summary, "yaml")) == summary
    assert render(summary, "text").splitlines() == [
        "study young: 1 trial (0 complete, 0 pruned, 1 failed)", f"stop rule: {summary['stop_rule']}",
        "no completed trial yet"]
    assert render({**summary, "limits": {"params": 2000}, "over_limit": 1}, "text").splitlines()[2:] == [
        "limits params <= 2,000: 1 trial over a limit, stopped and never counted",
        "no completed trial within the limits yet"]
