"""A study of the user's own model and data (tests/fixtures/labplugin's lab_models, a package that exists only in the
tests, put on sys.path): its builder's parameters searched and fixed beside hpsearch's, run with pruning, a limit
and a baseline, exported, trained again and confirmed to the same numbers, resumed exactly; a plugin's family and
dataset found by name; each broken builder one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from optuna.trial import TrialState

from hpsearch import api
from hpsearch.record import keys as A
from hpsearch.results.artifacts import read_header
from hpsearch.search.objective import RunEvents
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import parse_spec
from tests.conftest import forget_user_code, install_lab_plugin
from tests.helpers import invoke

OWN = {
    "name": "own-model",
    "dataset": {"name": "lab_models.data:digits_tensors", "options": {"limit": 600}, "validation": 0.15, "test": 0.2},
    "budget": {"epochs": 3, "trials": 5},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "median", "n_startup_trials": 1, "min_epochs": 1},
    "limits": {"params": 5000},  # model.width 8 has 5,226
    "space": {"model.width": {"int": [4, 8]}, "model.act": {"choice": ["relu", "gelu"]},
              "lr": {"float": [0.02, 0.2], "log": True}},
    "fixed": {"family": "lab_models.nets:build", "model.depth": 1, "batch_size": 64},
    "baselines": ["seed002-fc"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """lab_models on sys.path for this module's tests (a copy: one test edits its source)."""
    folder = install_lab_plugin(tmp_path_factory.mktemp("lab"))
    yield folder
    sys.path.remove(str(folder))
    forget_user_code()


@pytest.fixture(scope="module")
def own_run(site, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('own') / 'own.db'}"
    return url, api.run(OWN, storage=url, device="cpu", keep_weights=2)


def test_a_study_file_of_the_user_s_model_loads_without_torch_or_the_user_s_code(site, tmp_path):
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(OWN))
    script = ("import sys; from hpsearch.studyfile.schema import load_spec; spec = load_spec(sys.argv[1]); "
              "print(sorted(spec.space), spec.fixed['model.depth'], spec.dataset.options, "
              "'torch' in sys.modules, any(m.startswith('lab_models') for m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.stdout.strip() == "['lr', 'model.act', 'model.width'] 1 {'limit': 600} False False", done.stderr


def test_the_builder_s_parameters_are_searched_and_fixed_with_pruning_a_limit_and_a_baseline(own_run):
    _, result = own_run
    trials = result.study.trials
    searched = [t for t in trials if A.BASELINE not in t.user_attrs]
    assert len(trials) == 5 and {t.user_attrs.get(A.BASELINE) for t in trials} == {None, "seed002-fc"}
    assert all(set(t.params) == {"lr", "model.width", "model.act"} for t in searched)
    assert all(t.user_attrs[A.CONFIG]["model.depth"] == 1 and
               t.user_attrs[A.CONFIG]["family"] == "lab_models.nets:build" for t in searched)
    over = [t for t in searched if t.params["model.width"] == 8]
    assert over and all(t.user_attrs["over_limit"].startswith("params 5,226 over the limit 5,000") for t in over)
    code = searched[0].user_attrs[A.CODE]
    assert code["model"]["builder"] == "lab_models.nets:build" and len(code["model"]["sha256"]) == 64
    assert code["data"]["builder"] == "lab_models.data:digits_tensors"
    assert result.best is not None and result.best.val_accuracy > 0.5
    assert result.best.params["model.width"] < 8


def test_the_report_and_best_read_it_as_any_study(own_run):
    url, result = own_run
    tables = api.report_rows("own-model", storage=url)
    assert any("seed002-fc" in map(str, row) for row in tables.trials.rows)
    shown = invoke("best", "--study", "own-model", "--storage", url)
    assert shown.exit_code == 0 and "model.width" in shown.output


def test_export_records_the_builders_and_train_and_confirm_reproduce_the_trial(own_run, tmp_path):
    url, result = own_run
    exported = api.export("own-model", tmp_path / "best.yaml", storage=url)
    config = yaml.safe_load(exported.config.read_text())
    stored = result.study.trials[result.best.number]
    assert config["code"] == stored.user_attrs[A.CODE] and config["params"]["model.width"] == result.best.params[
        "model.width"]
    header = read_header(exported.weights)
    assert json.loads(header["record"])["code"] == stored.user_attrs[A.CODE]

    (run_again,) = api.train(exported.config, device="cpu").runs
    assert (run_again.val_accuracy, run_again.test_accuracy) == (result.best.val_accuracy, result.best.test_accuracy)
    model = api.load_model(config=exported.config)
    assert isinstance(model[0], torch.nn.Conv2d) and model[0].out_channels == result.best.params["model.width"]

    done = api.confirm("own-model", storage=url, top=1, seeds=1, device="cpu")
    assert len(done.table.rows) == 1


def test_a_study_starts_from_a_trial_of_the_user_s_model_with_its_architecture(own_run):
    url, result = own_run
    body = {"name": "own-transfer", "init": {"study": "own-model"}, "dataset": OWN["dataset"],
            "budget": {"epochs": 1, "trials": 2}, "sampler": {"name": "random", "seed": 0},
            "space": {"lr": {"float": [0.01, 0.1], "log": True}, "reinit_convs": {"int": [0, 1]}}}
    trials = api.run(body, storage=url, device="cpu").study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.user_attrs[A.INIT] == f"study own-model trial #{result.best.number}" for t in trials)
    assert all(t.user_attrs[A.CONFIG]["model.width"] == result.best.params["model.width"] for t in trials)


def test_an_interrupted_trial_of_the_user_s_model_resumes_to_the_same_numbers(site, tmp_path):
    class InterruptAfterEpoch(RunEvents):
        def epoch_finished(self, number, stats) -> None:
            if stats.epoch == 2:
                raise KeyboardInterrupt

    body = {**OWN, "name": "own-resume", "baselines": [], "pruner": {"name": "none"}, "budget": {"epochs": 3,
                                                                                                  "trials": 1}}
    spec = parse_spec(body, path="own-resume", default_name="own-resume")
    whole = run(spec, f"sqlite:///{tmp_path / 'whole.db'}", RunOptions(device="cpu")).trials[0]
    url = f"sqlite:///{tmp_path / 'cut.db'}"
    with pytest.raises(KeyboardInterrupt):
        run(spec, url, RunOptions(device="cpu"), events=InterruptAfterEpoch())
    resumed = [t for t in run(spec, url, RunOptions(device="cpu", n_trials=1)).trials if t.state == TrialState.COMPLETE]
    assert resumed[0].user_attrs[A.RESUMED_FROM_EPOCH] == 2
    assert resumed[0].user_attrs["val_accuracy"] == whole.user_attrs["val_accuracy"]
    assert resumed[0].user_attrs["test_accuracy"] == whole.user_attrs["test_accuracy"]


def test_mlflow_logs_the_builder_s_parameters_beside_hpsearch_s(site, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="MLflow is an optional extra")
    from hpsearch.search.tracking import experiment_name

    body = {**OWN, "name": "own-mlflow", "baselines": [], "budget": {"epochs": 1, "trials": 1}}
    tracking, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'own.db'}"
    api.run(body, storage=storage, device="cpu", mlflow=tracking)
    mlflow.set_tracking_uri(tracking)
    (logged,) = mlflow.search_runs(experiment_names=[experiment_name("own-mlflow", storage)],
                                   filter_string="params.family != ''",
                                   output_format="list")
    assert logged.data.params["family"] == "lab_models.nets:build" and logged.data.params["model.depth"] == "1"
    assert 4 <= int(logged.data.params["model.width"]) <= 8


def test_a_plugin_s_family_and_dataset_are_searched_by_name(site, tmp_path):
    body = {"name": "lab-net", "dataset": {"name": "lab-digits", "options": {"limit": 500}},
            "budget": {"epochs": 2, "trials": 2}, "sampler": {"name": "random", "seed": 0},
            "space": {"model.units": {"int": [8, 32]}}, "fixed": {"family": "labnet", "model.layers": 1}}
    result = api.run(body, storage=f"sqlite:///{tmp_path / 'lab.db'}", device="cpu")
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 2
    assert all(8 <= t.params["model.units"] <= 32 for t in result.study.trials)
    assert result.study.trials[0].user_attrs[A.CODE]["model"]["builder"] == "lab_models.nets:build_labnet"
    assert result.study.trials[0].user_attrs[A.PARAM_COUNT] == 64 * result.study.trials[0].params[
        "model.units"] + result.study.trials[0].params["model.units"] * 11 + 10


def test_the_reference_docs_list_a_plugin_s_family_and_dataset(site):
    from tests.test_docs import hooks

    assert "`labnet`" in hooks.families() and "lab_models.nets:build_labnet" in hooks.families()
    assert "`model.units`" in hooks.parameters() and "`lab-digits`" in hooks.datasets()


@pytest.mark.parametrize("family, dataset, says", [
    ("nowhere_at_all.nets:build", "lab-digits", "family: model builder nowhere_at_all.nets:build: cannot import "
                                                "nowhere_at_all.nets (ModuleNotFoundError: No module named "
                                                "'nowhere_at_all'): install its package"),
    ("lab_models.nets:raises", "lab-digits", "model builder lab_models.nets:raises raised ValueError: depth 1 is too "
                                             "deep for this lab"),
    ("lab_models.nets:not_a_module", "lab-digits", "model builder lab_models.nets:not_a_module returned a dict, not a "
                                                   "torch.nn.Module"),
    ("labnet", "lab_models.data:raises", "data builder lab_models.data:raises raised FileNotFoundError: no file "),
    ("labnet", "lab_models.data:one_value", "data builder lab_models.data:one_value returned a dict: return (train_x, "
                                            "train_y, test_x, test_y)"),
])
def test_a_broken_builder_ends_the_run_in_one_line_naming_it(site, tmp_path, family, dataset, says):
    body = {"name": "broken", "dataset": {"name": dataset}, "budget": {"epochs": 1, "trials": 1},
            "fixed": {"family": family, "model.layers": 1, "model.units": 8} if family == "labnet"
            else {"family": family, "model.depth": 1, "model.width": 4}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(body))
    result = invoke("run", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 'b.db'}", "--device", "cpu")
    assert result.exit_code != 0 and says in result.stderr, result.output
    assert "Traceback" not in result.output


def test_train_says_in_one_line_when_the_builder_s_code_changed(own_run, site, tmp_path):
    url, _ = own_run
    exported = api.export("own-model", tmp_path / "best.yaml", storage=url)
    nets = site / "lab_models" / "nets.py"
    nets.write_text(nets.read_text() + "\n# tuned since\n")
    forget_user_code()
    result = invoke("train", "--config", str(exported.config), "--device", "cpu")
    said = [line for line in result.output.splitlines() if "is not the code" in line]
    assert result.exit_code == 0 and len(said) == 1
    assert "the model builder lab_models.nets:build is not the code that trained the trial" in said[0]
