"""Two objectives on digits: a multi-objective study whose result is the Pareto front, pruned epoch by epoch
through a single-objective view of its accuracy curves (Optuna refuses trial.report there)."""

from __future__ import annotations

import json
import random
import re

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.results import ranking
from hpsearch.search.run import RunOptions, run
from hpsearch.search.samplers import make_pruner
from hpsearch.studyfile.limits import within_limits
from hpsearch.studyfile.schema import load_spec

FRONT_DIGITS = {"name": "front-digits", "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
                "objectives": ["val_accuracy", "params"], "budget": {"epochs": 4, "trials": 10},
                "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                "space": {"lr": {"float": [1.0e-5, 0.2], "log": True}, "width": {"int": [4, 16]}},
                "fixed": {"blocks": 1, "convs_per_block": 1, "batchnorm": False, "batch_size": 128}}


@pytest.fixture(scope="module")
def front_study(tmp_path_factory):
    """One finished two-objective study (10 trials, median pruner), for the tests that only read it."""
    folder = tmp_path_factory.mktemp("front-study")
    path = folder / "front-digits.yaml"
    path.write_text(yaml.safe_dump(FRONT_DIGITS, sort_keys=False))
    url = f"sqlite:///{folder / 'front.db'}"
    return url, path, run(load_spec(path), url, RunOptions(device="cpu", keep_weights=10))


def dominates(a, b) -> bool:
    """a is at least as accurate and as small as b, and better on one."""
    (acc_a, size_a), (acc_b, size_b) = a.values, b.values
    return acc_a >= acc_b and size_a <= size_b and (acc_a > acc_b or size_a < size_b)


def test_a_two_objective_study_prunes_and_its_front_is_non_dominated(front_study):
    _, _, study = front_study
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and len(completed) >= 3, [t.state for t in study.trials]
    for trial in pruned:
        assert trial.user_attrs["epochs"] < 4 and "test_accuracy" not in trial.user_attrs
        assert len(trial.user_attrs["val_curve"]) == trial.user_attrs["epochs"]
    for trial in completed:
        assert trial.values[1] == trial.user_attrs["param_count"] and len(trial.user_attrs["val_curve"]) == 4
    front = ranking.front(study.trials)
    assert front and front[0] == ranking.best_trial(study.trials)
    assert [ranking.val_accuracy(t) for t in front] == sorted((ranking.val_accuracy(t) for t in front), reverse=True)
    for trial in front:
        assert not any(dominates(other, trial) for other in completed)
    on_front = {t.number for t in front}
    for trial in (t for t in completed if t.number not in on_front):
        assert any(dominates(point, trial) for point in front)


@pytest.mark.parametrize("pruner", [{"name": "median", "n_startup_trials": 2, "min_epochs": 1},
                                    {"name": "successive_halving", "min_epochs": 1},
                                    {"name": "hyperband", "min_epochs": 1}], ids=lambda p: p["name"])
def test_the_curve_view_prunes_as_the_pruner_does_on_one_objective(pruner):
    """The same curves, told to a single-objective study (trial.report) and to a two-objective one
    (curvepruning), get the same verdict at every epoch; successive halving's rungs carry over."""
    from hpsearch.search import (
        curvepruning,  # new with this test: imported here, so that the module's other tests run on main
    )

    options = {k: v for k, v in pruner.items() if k != "name"}
    single = optuna.create_study(study_name="same", direction="maximize", pruner=make_pruner(pruner["name"], options, 8))
    double = optuna.create_study(study_name="same", directions=["maximize", "minimize"],
                                 pruner=make_pruner(pruner["name"], options, 8))
    rng = random.Random(0)
    verdicts = []
    for _ in range(24):
        one, two = single.ask(), double.ask()
        rate, curve = rng.uniform(0.02, 0.3), []
        for epoch in range(1, 9):
            curve.append(min(1.0, rate * epoch + rng.uniform(-0.05, 0.05)))
            one.report(curve[-1], epoch)
            curvepruning.record(two, curve)
            verdicts.append(one.should_prune())
            assert curvepruning.should_prune(two) == verdicts[-1], (one.number, epoch)
            if verdicts[-1]:
                single.tell(one, state=TrialState.PRUNED)
                double.tell(two, state=TrialState.PRUNED)
                break
        else:
            single.tell(one, curve[-1])
            double.tell(two, (curve[-1], 1000))
    assert any(verdicts) and not all(verdicts)


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


def test_a_study_made_for_one_objective_refuses_a_file_with_two(write_study, storage):
    run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    path = write_study("two.yaml", objectives=["val_accuracy", "params"])
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "made for objectives val_accuracy, the file says val_accuracy, params: rename the study" in result.stderr
    assert len(optuna.load_study(study_name="tiny-digits", storage=storage).trials) == 1


def test_a_two_objective_study_gets_its_report(front_study, tmp_path):
    url, path, _ = front_study
    result = CliRunner().invoke(main, ["report", "--study", str(path), "--storage", url, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert {"report.md", "history.png", "intermediate.png"} <= {p.name for p in (tmp_path / "r").iterdir()}


def test_the_curve_view_keeps_the_study_attributes_so_plots_mark_the_confirmed_winner():
    from hpsearch.search.confirm import summarize
    from hpsearch.search.curvepruning import single_objective_view

    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, size in ((0.9, 1000), (0.8, 500)):
        study.add_trial(optuna.trial.create_trial(values=[accuracy, size], user_attrs={"param_count": size}))
    study.set_user_attr(ranking.confirm_key(1), summarize([{"seed": 1, "val_accuracy": 0.85, "test_accuracy": 0.85}]))
    study.set_user_attr(ranking.confirm_key(0), summarize([{"seed": 1, "val_accuracy": 0.7, "test_accuracy": 0.7}]))
    view = single_objective_view(study)
    assert ranking.best_trial(ranking.study_trials(view)).number == 1  # the single-run best is #0


def test_nsga2_searches_a_front_and_reads_the_limits(write_study, storage):
    """Optuna's NSGA-II by name: after its random first population it breeds the next from the front."""
    spec = load_spec(write_study(**{**FRONT_DIGITS, "budget": {"epochs": 2, "trials": 6}, "limits": {"params": 2000},
                                    "sampler": {"name": "nsga2", "seed": 0, "population_size": 3}}))
    study = run(spec, storage, RunOptions(device="cpu"))
    assert type(study.sampler).__name__ == "NSGAIISampler" and len(study.trials) == 6
    assert all(set(t.constraints) == {"params"} for t in study.trials)
    assert ranking.front(study.trials) and all(within_limits(t) for t in ranking.front(study.trials))
