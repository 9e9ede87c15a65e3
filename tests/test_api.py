"""hpsearch.api, the functions the commands call: a study from a dict or a file, typed results, a trained model in
one call, the report as rows; values returned and nothing printed, hpsearch's one-line errors raised."""

from __future__ import annotations

import json

import pytest
import torch

from hpsearch import api
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.studyfile.schema import load_spec
from hpsearch.training import devicedata
from hpsearch.training.train import evaluate
from tests.conftest import TINY_DIGITS
from tests.helpers import invoke


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """TINY_DIGITS run from a dict through the api (3 trials, 3 epochs each, the best 2 keep their weights)."""
    folder = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{folder / 'api.db'}"
    return url, api.run(TINY_DIGITS, storage=url, device="cpu", keep_weights=2)


def test_a_run_from_a_dict_returns_what_the_command_prints(tiny_run):
    url, result = tiny_run
    assert result.end.trials == 3 and result.summary["complete"] == 3
    assert result.best == api.best("tiny-digits", storage=url)
    assert api.summary("tiny-digits", storage=url) == json.loads(
        invoke("best", "--study", "tiny-digits", "--storage", url, "--format", "json").stdout)


def test_the_best_trial_is_a_typed_frozen_value(tiny_run):
    url, _ = tiny_run
    best = api.best("tiny-digits", storage=url)
    assert isinstance(best, api.Trial) and best.state == "COMPLETE" and 0.5 < best.val_accuracy <= 1
    assert best.config["lr"] == best.params["lr"] and best.baseline is None
    with pytest.raises(AttributeError):
        best.number = 7


def test_a_stored_trial_loads_as_the_model_that_reached_its_accuracy(tiny_run, write_study):
    url, _ = tiny_run
    best = api.best("tiny-digits", storage=url)
    model = api.load_model(study="tiny-digits", storage=url)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    data = devicedata.load(load_spec(write_study()).dataset, torch.device("cpu"))
    assert evaluate(model, data, data.test_x, data.test_y) == best.test_accuracy
    by_number = api.load_model(study="tiny-digits", storage=url, trial=best.number)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), by_number.state_dict().values()))


def test_an_exported_config_loads_its_model_and_trains_again_to_the_same_numbers(tiny_run, tmp_path):
    url, _ = tiny_run
    exported = api.export("tiny-digits", tmp_path / "best.yaml", storage=url)
    assert exported.weights == tmp_path / "best.safetensors" and exported.front is None
    from_config = api.load_model(config=exported.config)
    from_study = api.load_model(study="tiny-digits", storage=url)
    assert all(torch.equal(a, b) for a, b in zip(from_config.state_dict().values(), from_study.state_dict().values()))
    seen = []
    trained = api.train(exported.config, device="cpu", on_seed=lambda run, config: seen.append((run.seed, config)))
    (run,) = trained.runs
    assert seen == [(run.seed, seen[0][1])] and seen[0][1].metrics["test_accuracy"] == run.test_accuracy
    assert (run.val_accuracy, run.test_accuracy) == (exported.trial.val_accuracy, exported.trial.test_accuracy)
    from_seed = api.load_model(weights=trained.out / f"seed-{run.seed}.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(from_seed.state_dict().values(), from_study.state_dict().values()))


def test_a_config_without_weights_beside_it_says_how_to_get_some(tiny_run, tmp_path):
    url, _ = tiny_run
    exported = api.export("tiny-digits", tmp_path / "best.yaml", storage=url, weights=False)
    with pytest.raises(HpsearchError, match="no weights beside it .best.safetensors.; export a trial that kept"):
        api.load_model(config=exported.config)
    with pytest.raises(HpsearchError, match="give one of study="):
        api.load_model(config=exported.config, study="tiny-digits")


def test_the_report_s_tables_come_as_rows(tiny_run):
    url, _ = tiny_run
    tables = api.report_rows("tiny-digits", storage=url)
    rows = tables.trials.as_dicts()
    assert [r["model"] for r in rows] == ["searched #1", "searched #2", "searched #3"]
    assert rows[0]["trial"] == f"#{api.best('tiny-digits', storage=url).number}"
    assert tables.confirmation.rows == () and tables.verdict == ()
    markdown = api.report("tiny-digits", storage=url).markdown
    assert all(f"| {' | '.join(row)} |" in markdown for row in tables.trials.rows)


def test_the_front_of_a_two_objective_study_is_a_list_of_trials(front_study):
    url, _, _ = front_study
    front = api.front("front-digits", storage=url)
    assert front and front[0] == api.best("front-digits", storage=url)
    assert [t.val_accuracy for t in front] == sorted((t.val_accuracy for t in front), reverse=True)
    assert [t.param_count for t in front] == sorted((t.param_count for t in front), reverse=True)
    with pytest.raises(HpsearchError, match="against='size': give one of"):
        api.front("front-digits", storage=url, against="size")


def test_confirm_returns_the_confirmed_trials_as_rows(write_study, storage):
    api.run(write_study(), storage=storage, device="cpu", n_trials=2)
    seen = []
    done = api.confirm("tiny-digits", storage=storage, top=1, seeds=2, device="cpu",
                       on_seed=lambda job, result: seen.append(job.seed))
    assert seen == [1, 2]
    (row,) = done.table.as_dicts()
    assert row["trial"] == f"#{api.best('tiny-digits', storage=storage).number}" and row["seeds"] == "1, 2"
    assert done.verdict[0].startswith("Confirmed winner: trial #")


def test_the_api_prints_nothing(write_study, storage, capfd):
    result = api.run(write_study(), storage=storage, device="cpu", n_trials=1)
    api.report_rows("tiny-digits", storage=storage)
    assert result.end.trials == 1
    assert capfd.readouterr() == ("", "")


def test_a_bad_study_dict_is_one_spec_error_naming_every_problem(storage):
    with pytest.raises(SpecError) as caught:
        api.run({"dataset": {"name": "digits"}, "budget": {"epochs": 0}}, storage=storage)
    assert str(caught.value).splitlines() == ["the study dict: name: must be a non-empty string",
                                              "the study dict: budget.epochs: must be a whole number >= 1, got 0"]


def test_workers_need_a_study_file(storage):
    with pytest.raises(HpsearchError, match="workers start from a study file"):
        api.run(TINY_DIGITS, storage=storage, device="cpu", workers=2)


def test_conflicting_totals_are_refused(storage):
    with pytest.raises(HpsearchError, match="give n_trials .trials to add. or until .a total to reach., not both"):
        api.run(TINY_DIGITS, storage=storage, n_trials=1, until=2)
