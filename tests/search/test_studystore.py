"""A stored study refuses a study file it was not made for: other direction, objectives, split, seed or limits."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from tests.helpers import invoke, load, outcome

FIXTURES = Path(__file__).parents[1] / "fixtures"
PARAMS_LIMIT = 2000  # 171 * width + 10 parameters: widths up to 11 fit


@pytest.mark.parametrize("made_for", ["minimize", "another dataset"])
def test_a_same_named_study_made_for_something_else_is_refused_untouched(write_study, storage, made_for):
    if made_for == "minimize":
        optuna.create_study(study_name="tiny-digits", storage=storage, direction="minimize")
    else:
        run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    before = len(load(storage).trials)
    path = write_study("other.yaml", **({} if made_for == "minimize" else {"dataset": {"name": "fashion-mnist"}}))
    code, _, err = outcome(invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu"))
    assert code == 2 and "Traceback" not in err and "rename the study" in err, err
    assert len(load(storage).trials) == before


def test_a_study_refuses_another_split_or_seed_than_its_trials_ran_on(write_study, storage):
    """export rebuilds every trial with the split and seed the study recorded: a trial run on others would not
    train to its numbers again."""
    run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    for overrides, says in (({"seed": 1}, "dataset.validation 0.15, dataset.test 0.2, dataset.split_seed 0, seed 1"),
                            ({"dataset": {"name": "digits", "validation": 0.3, "test": 0.2}},
                             "dataset.validation 0.3, dataset.test 0.2, dataset.split_seed 0, seed 0")):
        result = CliRunner().invoke(main, ["run", "--study", str(write_study(**overrides)), "--storage", storage])
        assert result.exit_code == 2 and result.stderr.strip() == (
            "error: study 'tiny-digits' in the storage was made with dataset.validation 0.15, dataset.test 0.2, "
            f"dataset.split_seed 0, seed 0, the file says {says}: its trials were trained and measured on those; "
            "rename the study (name: in the file) or use another --storage")
    assert len(optuna.load_study(study_name="tiny-digits", storage=storage).trials) == 1


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


def test_a_study_made_for_one_objective_refuses_a_file_with_two(write_study, storage):
    run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    path = write_study("two.yaml", objectives=["val_accuracy", "params"])
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "made for objectives val_accuracy, the file says val_accuracy, params: rename the study" in result.stderr
    assert len(optuna.load_study(study_name="tiny-digits", storage=storage).trials) == 1


def test_a_study_records_its_stop_rule_and_an_old_one_says_its_earlier_trials_ran_under_the_older_rule(
        write_study, storage, tmp_path):
    from hpsearch.search.studystore import open_study

    study = open_study(load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9})), storage)
    assert study.user_attrs["stop_rules"] == [{"from_trial": 0, "metric": "val_accuracy"}]
    shutil.copy(FIXTURES / "old.db", tmp_path / "old.db")  # 3 trials stored by an hpsearch before the record
    old = f"sqlite:///{tmp_path / 'old.db'}"
    said = invoke("best", "--study", "tiny", "--storage", old).stdout
    assert "stop rule: not recorded: stored by an older hpsearch" in said
    tiny = load_spec(FIXTURES / "tiny.yaml")
    assert open_study(tiny, old).user_attrs["stop_rules"] == [{"from_trial": 3, "metric": None}]
    said = invoke("best", "--study", "tiny", "--storage", old).stdout
    assert "stop rule: trials #0 to #2 ran under an older hpsearch" in said and \
        "; from trial #3 on, no target, a run stops at its budget\n" in said
