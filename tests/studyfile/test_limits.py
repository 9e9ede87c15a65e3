"""Limits on digits: an over-limit trial stops (untrained where its size says so), is recorded with its
reason and an Optuna constraint, and never counts as the best or as reaching the target."""

from __future__ import annotations

import html
import json

import optuna
from click.testing import CliRunner
from optuna.trial import TrialState, create_trial

from hpsearch.cli import main
from hpsearch.results import ranking
from hpsearch.results.trials import first_reaching
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.limits import within_limits
from hpsearch.studyfile.schema import load_spec

PARAMS_LIMIT = 2000  # 171 * width + 10 parameters: widths up to 11 fit


def test_an_over_limit_model_is_never_trained_and_never_the_best(write_study, storage, tmp_path):
    path = write_study(limits={"params": PARAMS_LIMIT}, budget={"epochs": 2, "trials": 6})
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    over = [t for t in study.trials if t.user_attrs["param_count"] > PARAMS_LIMIT]
    within = [t for t in study.trials if t.user_attrs["param_count"] <= PARAMS_LIMIT]
    assert over and within, [t.user_attrs["param_count"] for t in study.trials]
    for trial in over:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 0
        assert not trial.intermediate_values and "test_accuracy" not in trial.user_attrs
        assert trial.user_attrs["over_limit"] == (f"params {trial.user_attrs['param_count']:,} over the limit "
                                                f"{PARAMS_LIMIT:,}: not trained")
        assert trial.constraints["params"] == trial.user_attrs["param_count"] - PARAMS_LIMIT > 0
        assert f"trial #{trial.number} over a limit: params" in result.stderr
    assert all(t.state == TrialState.COMPLETE and within_limits(t) for t in within)
    best = json.loads(CliRunner().invoke(main, ["best", "--study", str(path), "--storage", storage,
                                                "--format", "json"]).stdout)
    assert best["limits"] == {"params": PARAMS_LIMIT} and best["over_limit"] == len(over)
    assert best["best"]["number"] == ranking.best_trial(within).number
    assert best["best"]["param_count"] <= PARAMS_LIMIT
    assert f"limits params <= 2,000: {len(over)} trial" in result.stdout
    report = CliRunner().invoke(main, ["report", "--study", str(path), "--storage", storage, "--out", "rep"])
    said = f"Limits: params <= 2,000. {len(over)} trial"
    assert said in report.stdout and html.escape(said) in (tmp_path / "rep" / "index.html").read_text()


def test_a_train_seconds_limit_stops_a_trial_after_the_epoch_that_passes_it(write_study, storage):
    tight = run(load_spec(write_study(limits={"train_seconds": 0.001})), storage, RunOptions(device="cpu", n_trials=2))
    for trial in tight.trials:  # every epoch takes over a millisecond
        assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 1
        assert trial.user_attrs["over_limit"].startswith("train_seconds ")
        assert trial.user_attrs["over_limit"].endswith("over the limit 0.001 after epoch 1")
        assert trial.constraints["train_seconds"] == trial.user_attrs["train_seconds"] - 0.001 > 0
    loose = run(load_spec(write_study(name="loose", limits={"train_seconds": 1000})), storage,
                RunOptions(device="cpu", n_trials=1))
    (trial,) = loose.trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["epochs"] == 3
    assert trial.constraints == {"train_seconds": trial.user_attrs["train_seconds"] - 1000}


def test_a_trial_over_a_limit_never_reaches_the_target_nor_ranks(write_study):
    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9}, limits={"params": 100}))
    over = create_trial(value=0.99, user_attrs={"param_count": 150}, constraints={"params": 50})
    within = create_trial(value=0.95, user_attrs={"param_count": 90}, constraints={"params": -10})
    assert first_reaching([over], spec) is None and ranking.best_trial([over]) is None
    assert first_reaching([over, within], spec) is within and ranking.ranked([over, within]) == [within]
    assert ranking.front([over, within]) == [within]


def test_a_study_refuses_other_limits_than_its_trials_ran_under(write_study, storage):
    """Constraints are stored as measure minus limit: a changed limit would judge old trials by the old one."""
    run(load_spec(write_study(limits={"params": PARAMS_LIMIT}, sampler={"name": "gp", "seed": 0})), storage,
        RunOptions(device="cpu", n_trials=1))
    for limits, says in (({"params": 1000}, "params <= 1,000"), (None, "none"),
                         ({"params": PARAMS_LIMIT, "train_seconds": 60}, "params <= 2,000, train_seconds <= 60")):
        path = write_study(limits=limits, sampler={"name": "gp", "seed": 0})
        result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
        assert result.exit_code == 2 and result.stderr.strip() == (
            f"error: study 'tiny-digits' in the storage was made with limits params <= 2,000, the file says {says}: "
            "its trials were judged by the old limits; rename the study (name: in the file) or use another --storage")
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    assert len(study.trials) == 1 and study.user_attrs["limits"]["params"] == PARAMS_LIMIT  # untouched
