"""A stored study refuses a study file it was not made for: other direction, objectives, split, seed or limits;
or one that changed what decides its results since its trials ran: epochs, data, a parameter's distribution."""

from __future__ import annotations

import datetime
import logging
import shutil
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from tests.conftest import TINY_DIGITS
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


# --- a study file that changed what decides the results -------------------------------------------

REFUSED = ("; best and report would rank them with new trials as if measured alike: rename the study (name: in the "
           "file) or use another --storage, or run with --accept-change to add to it anyway")


@pytest.fixture
def one_trial(write_study, storage):
    """tiny-digits run for one trial: 3 epochs, lr float [0.01, 0.2] log, width int [4, 16], four fixed values."""
    run(load_spec(write_study()), storage, RunOptions(device="cpu", n_trials=1))
    return load(storage).user_attrs["made_with"]


@pytest.mark.parametrize("overrides, change", [
    ({"budget": {"epochs": 4, "trials": 3}}, "budget.epochs 3 -> 4"),
    ({"space": {"lr": {"float": [0.001, 0.2], "log": True}, "width": {"int": [4, 16]}}},
     "space.lr float [0.01, 0.2] log -> float [0.001, 0.2] log"),
    ({"space": {"lr": {"float": [0.01, 0.2], "log": True}, "width": {"int": [4, 16], "step": 2}}},
     "space.width int [4, 16] -> int [4, 16] step 2"),
    ({"fixed": {**TINY_DIGITS["fixed"], "batch_size": 32}}, "fixed.batch_size 64 -> 32"),
    ({"space": {"lr": {"float": [0.01, 0.2], "log": True}}, "fixed": {**TINY_DIGITS["fixed"], "width": 8}},
     "fixed.width not fixed -> 8, space.width int [4, 16] -> not searched"),
    ({"space": {**TINY_DIGITS["space"], "weight_decay": {"float": [0, 0.001]}}},
     "space.weight_decay not searched -> float [0, 0.001]"),
])
def test_a_study_whose_file_changed_what_decides_its_results_is_refused_naming_the_change(
        write_study, storage, one_trial, overrides, change):
    result = CliRunner().invoke(main, ["run", "--study", str(write_study(**overrides)), "--storage", storage,
                                       "--device", "cpu"])
    assert result.exit_code == 2 and result.stderr == (
        f"error: study 'tiny-digits' in the storage changed since its 1 trial ran: {change}{REFUSED}\n")
    study = load(storage)
    assert len(study.trials) == 1 and study.user_attrs["made_with"] == one_trial  # untouched


@pytest.mark.parametrize("space, clash", [
    ({"lr": {"float": [0.01, 0.2]}, "width": {"int": [4, 16]}},
     "space.lr as float [0.01, 0.2] log, the file says float [0.01, 0.2]"),
    ({"lr": {"float": [0.01, 0.2], "log": True}, "width": {"choice": [4, 8, 16]}},
     "space.width as int [4, 16], the file says choice [4, 8, 16]"),
])
@pytest.mark.parametrize("accept", [False, True])
def test_a_distribution_optuna_cannot_sample_beside_the_old_is_refused_even_when_changes_are_accepted(
        write_study, storage, one_trial, space, clash, accept):
    """Optuna's ValueError as the trial started left a traceback and a trial failed without a reason."""
    args = ["run", "--study", str(write_study(space=space)), "--storage", storage, "--device", "cpu"]
    result = CliRunner().invoke(main, args + ["--accept-change"] * accept)
    assert result.exit_code == 2 and result.stderr == (
        f"error: study 'tiny-digits' in the storage searched {clash}: Optuna cannot sample one parameter as another "
        "kind, on another scale or among other choices in one study; rename the study (name: in the file) or use "
        "another --storage\n")
    assert len(load(storage).trials) == 1


def test_accept_change_goes_on_and_records_the_change_once(write_study, storage, one_trial, caplog):
    path = write_study(budget={"epochs": 2, "trials": 3})
    args = ["run", "--study", str(path), "--storage", storage, "--device", "cpu", "--n-trials", "1"]
    with caplog.at_level(logging.WARNING, logger="hpsearch.search"):
        result = CliRunner().invoke(main, args + ["--accept-change"])
    assert result.exit_code == 0, result.output
    study = load(storage)
    (accepted,) = study.user_attrs["accepted_changes"]
    assert accepted["from_trial"] == 1 and accepted["changes"] == ["budget.epochs 3 -> 2"]
    assert datetime.datetime.fromisoformat(accepted["at"]).tzinfo is not None
    assert study.user_attrs["made_with"] == {**one_trial, "budget.epochs": 2}
    assert [t.user_attrs["epochs"] for t in study.trials] == [3, 2]
    (said,) = [r.getMessage() for r in caplog.records]
    assert said == ("study tiny-digits: accepted budget.epochs 3 -> 2; trials from #1 on run under the change "
                    "(recorded in the study's accepted_changes)")
    again = CliRunner().invoke(main, args)  # the record is the new one: nothing changed since
    assert again.exit_code == 0, again.output
    assert len(load(storage).user_attrs["accepted_changes"]) == 1 and len(load(storage).trials) == 3
    # best and report say it: their ranking mixes trials made before and after the change.
    change = f"from trial #1 on, budget.epochs 3 -> 2 (accepted {accepted['at']})"
    best = CliRunner().invoke(main, ["best", "--study", "tiny-digits", "--storage", storage])
    assert f"changed {change}: ranked with the trials before it" in best.stdout.splitlines()
    report = CliRunner().invoke(main, ["report", "--study", "tiny-digits", "--storage", storage])
    assert f"- Changed {change}: ranked with the trials before it." in report.stdout.splitlines()


def test_what_a_run_may_change_is_no_change(write_study, storage, one_trial):
    """Trials, timeout, a new baseline, sampler and pruner, target and about leave the results measured alike."""
    path = write_study(about="another text", budget={"epochs": 3, "trials": 7}, baselines=["seed002-cnn-q9"],
                       sampler={"name": "tpe", "seed": 5, "n_startup_trials": 2},
                       pruner={"name": "median", "n_startup_trials": 1, "min_epochs": 1},
                       target={"metric": "val_accuracy", "value": 0.99})
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                       "--n-trials", "1", "--timeout", "600", "--no-stop-at-target"])
    assert result.exit_code == 0, result.output
    study = load(storage)
    assert len(study.trials) == 2 and "accepted_changes" not in study.user_attrs
    assert study.user_attrs["made_with"] == one_trial


def test_an_image_folder_that_grew_is_refused_before_any_trial_and_a_copy_elsewhere_is_not(
        write_study, storage, image_folder, isolated):
    """Its classes are known only once it is read: the check comes then, before a trial starts. The same images
    under another data folder (another machine's copy, new mtimes) are the same data. (Each run reads its folder
    from another --data-dir: a process reads a dataset once.)"""
    image_folder(isolated / "data" / "pets", ("cat", "dog"), per_class=6)
    path = write_study(dataset={"name": "imagefolder", "path": "pets", "image_size": 8, "validation": 4, "test": 4},
                       budget={"epochs": 1, "trials": 1}, space={"lr": {"float": [0.01, 0.1]}},
                       fixed={"blocks": 1, "batch_size": 4})
    args = ["run", "--study", str(path), "--storage", storage, "--device", "cpu"]
    assert CliRunner().invoke(main, args).exit_code == 0
    images = load(storage).user_attrs["made_with"]["dataset images"]
    image_folder(isolated / "copy" / "pets", ("cat", "dog"), per_class=6)
    result = CliRunner().invoke(main, args + ["--data-dir", str(isolated / "copy")])
    assert result.exit_code == 0, result.output
    image_folder(isolated / "grown" / "pets", ("cat", "dog", "frog", "owl"), per_class=6)
    result = CliRunner().invoke(main, args + ["--data-dir", str(isolated / "grown")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("decoding pets/")]
    assert line.startswith(
        "error: study 'tiny-digits' in the storage changed since its 2 trials ran: dataset classes 2 [\"cat\", "
        f"\"dog\"] -> 4 [\"cat\", \"dog\", \"frog\", \"owl\"], dataset images sha256 {images[:12]} -> sha256 ")
    assert line.endswith(REFUSED)
    assert len(load(storage).trials) == 2


def test_workers_are_not_started_on_a_changed_study(write_study, storage, one_trial, isolated):
    result = CliRunner().invoke(main, ["run", "--study", str(write_study(budget={"epochs": 1, "trials": 3})),
                                       "--storage", storage, "--device", "cpu", "--workers", "2"])
    assert result.exit_code == 2 and result.stderr == (
        f"error: study 'tiny-digits' in the storage changed since its 1 trial ran: budget.epochs 3 -> 1{REFUSED}\n")
    assert not (isolated / "test-files" / "logs").exists() and len(load(storage).trials) == 1


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
