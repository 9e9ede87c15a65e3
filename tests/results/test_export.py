"""Export a trial, train it again: the config stands alone and the CPU numbers come back exactly."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from safetensors.torch import load_file

from hpsearch.results.artifacts import load_trial_state_dict
from hpsearch.results.export import read_config
from hpsearch.studyfile import params as P
from tests.helpers import assert_clean_error, invoke


def best_trial(study):
    return max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)


def test_export_then_train_gives_the_trial_its_numbers_again(shared_study, tmp_path):
    url, _, study = shared_study
    best = best_trial(study)
    result = invoke("export", "--study", "shared-digits", "--storage", url, "-o", "best.yaml")
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert config["trial"] == best.number and config["epochs"] == 3 and config["seed"] == 0
    assert config["dataset"] == {"name": "digits", "validation": 0.15, "test": 0.2, "split_seed": 0}
    assert config["params"] == P.complete(best.user_attrs["config"])
    assert set(config["params"]) >= {"blocks", "width", "lr", "optimizer", "batch_size", "schedule", "augment"}
    assert config["metrics"]["val_accuracy"] == best.value
    assert config["metrics"]["test_accuracy"] == best.user_attrs["test_accuracy"]
    assert config["versions"]["torch"] == torch.__version__ and "hpsearch" in config["versions"]
    assert config["weights"]["file"] == "best.safetensors" and (tmp_path / "best.safetensors").is_file()

    result = invoke("train", "--config", "best.yaml", "--seeds", "2", "--out", "retrained", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"seed 0: val {best.value:.4f}, test {best.user_attrs['test_accuracy']:.4f}" in result.stdout
    assert ": identical)" in result.stdout and "mean ± sample std over 2 seeds" in result.stdout
    out = tmp_path / "retrained"
    assert (out / "config.yaml").read_bytes() == (tmp_path / "best.yaml").read_bytes()
    results = json.loads((out / "results.json").read_text())
    assert [s["seed"] for s in results["seeds"]] == [0, 1]
    assert results["seeds"][0]["val_accuracy"] == best.value
    assert results["seeds"][0]["test_accuracy"] == best.user_attrs["test_accuracy"]
    # The same seed trains the same weights, bit for bit: the trial's stored ones and the retrained ones.
    stored = load_trial_state_dict(url, "shared-digits", best.number)
    retrained = load_file(str(out / "seed-0.safetensors"))
    assert stored.keys() == retrained.keys() and all(torch.equal(stored[k], retrained[k]) for k in stored)
    assert (out / "seed-1.safetensors").is_file()


def test_a_json_export_reads_back_as_the_same_config(shared_study, tmp_path):
    url, _, _ = shared_study
    for name in ("best.json", "best.yaml"):
        assert invoke("export", "--study", "shared-digits", "--storage", url, "-o", name, "--no-weights").exit_code == 0
    assert "weights" not in json.loads((tmp_path / "best.json").read_text())
    assert read_config(tmp_path / "best.json") == read_config(tmp_path / "best.yaml")


def test_a_trial_without_weights_exports_its_config_and_says_so(shared_study, tmp_path):
    url, _, study = shared_study
    dropped = min(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    result = invoke("export", "--study", "shared-digits", "--storage", url, "--trial", str(dropped.number), "-o", "t.yaml")
    assert result.exit_code == 0, result.output
    assert f"trial #{dropped.number} has no stored weights" in result.stderr
    assert yaml.safe_load((tmp_path / "t.yaml").read_text())["trial"] == dropped.number


def test_export_refuses_what_it_cannot_write(shared_study):
    url, _, study = shared_study
    pruned = next(t for t in study.trials if t.state == TrialState.PRUNED)
    assert_clean_error(invoke("export", "--study", "shared-digits", "--storage", url, "--trial", "99", "-o", "x.yaml"),
                       "has no trial #99")
    assert_clean_error(invoke("export", "--study", "shared-digits", "--storage", url, "--trial", str(pruned.number),
                              "-o", "x.yaml"), f"trial #{pruned.number} is pruned, not complete")
    assert_clean_error(invoke("export", "--study", "shared-digits", "--storage", url, "-o", "x.txt"),
                       "must end in .yaml, .yml or .json")
    assert_clean_error(invoke("export", "--study", "nope", "--storage", url, "-o", "x.yaml"), "no study named 'nope'")


def test_export_of_a_failed_trial_says_failed(storage):
    study = optuna.create_study(study_name="broken", storage=storage, direction="maximize")
    study.set_user_attr("dataset", "digits")  # as hpsearch marks the studies it makes
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert_clean_error(invoke("export", "--study", "broken", "--storage", storage, "--trial", "0", "-o", "x.yaml"),
                       "trial #0 is failed, not complete: export a completed trial")


@pytest.mark.parametrize("body, problems", [
    ("params: {lr: -1, wings: 2}\nepochs: 0\n",
     ["format: missing", "dataset: missing", "epochs: must be a whole number >= 1", "params.lr: -1 must be in",
      "params.wings: unknown parameter"]),
    ("[1, 2]\n", ["must be a mapping written by `hpsearch export`"]),
    ("format: hpsearch-config/1\ndataset: {name: [digits], validation: 0.1, test: 0.2, split_seed: 0}\n"
     "epochs: 1\nseed: 0\nparams: {}\n", ['dataset.name: unknown dataset ["digits"]']),
    ("format: hpsearch-config/1\ndataset: {name: digits, validation: ten, test: 0.2, split_seed: x}\n"
     "epochs: 1\nseed: 0\nparams: {}\nmetrics: {val_accuracy: high}\nversions: 2.15\n",
     ['dataset.validation: must be a fraction in (0, 1) or a whole count, got "ten"',
      'dataset.split_seed: must be an integer from 0 to 4294967295, got "x"',
      "metrics.val_accuracy: must be an accuracy (a number), got 'high'",
      "versions: must be a mapping, as `hpsearch export` writes it, got 2.15"]),
    ("format: hpsearch-config/1\ndataset: {name: digits, validation: 0.1, test: 0.2, split_seed: 0}\n"
     "epochs: 1\nseed: 0\nparams: {}\nmetrics: 0.98\n", ["metrics: must be a mapping"]),
    ("format: hpsearch-config/1\ndataset: {name: digits, validation: 0.1, test: 0.2, split_seed: 0}\n"
     "epochs: 25\nseed: 0\nparams: {epochs: 6}\n", ["params.epochs: 6, but epochs is 25: a trial trains its "
                                                    "params.epochs"]),
    ("format: hpsearch-config/1\ndataset: {name: mnist9, validation: 0.1, test: 0.2, split_seed: 0}\n"
     "epochs: 1\nseed: 0\nparams: {}\n", ['dataset.name: unknown dataset "mnist9"']),
    ("format: hpsearch-config/1\ndataset: {name: imagefolder, validation: 0.1, test: 0.2, data_dir: /x}\n"
     "epochs: 1\nseed: 0\nparams: {}\n", ["dataset.split_seed: missing (`hpsearch export` writes it)",
                                         "dataset.data_dir: belongs to the machine, not the config",
                                         "dataset.path: must be the image folder"]),
])
def test_a_bad_config_lists_every_problem_without_a_traceback(tmp_path, body, problems):
    (tmp_path / "bad.yaml").write_text(body)
    result = invoke("train", "--config", "bad.yaml")
    assert_clean_error(result, *(f"bad.yaml: {p}" for p in problems))
    assert not (tmp_path / "bad-trained").exists()


def test_a_config_that_is_not_yaml_is_one_line_naming_where(tmp_path):
    (tmp_path / "bad.yaml").write_text("params: {lr: 0.1\nepochs: [\n")
    result = invoke("train", "--config", "bad.yaml")
    assert_clean_error(result, "bad.yaml: line 2, column 7: not valid YAML (expected ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_report_and_train_make_the_folders_they_write_into_or_say_why_not(shared_study, tmp_path):
    url, _, _ = shared_study
    result = invoke("export", "--study", "shared-digits", "--storage", url, "-o", "new/deeper/best.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new/deeper/best.yaml").is_file() and (tmp_path / "new/deeper/best.safetensors").is_file()
    result = invoke("report", "--study", "shared-digits", "--storage", url, "--out", "notes/r.md")
    assert result.exit_code == 0 and (tmp_path / "notes/r.md").read_text() == result.stdout
    (tmp_path / "taken").write_text("a file, not a folder")
    assert_clean_error(invoke("export", "--study", "shared-digits", "--storage", url, "-o", "taken/best.yaml"),
                       "-o: cannot make the folder taken (")
    assert_clean_error(invoke("report", "--study", "shared-digits", "--storage", url, "--out", "taken/r.md"),
                       "--out: cannot make the folder taken (")
    assert_clean_error(invoke("report", "--study", "shared-digits", "--storage", url, "--out", "taken/r"),
                       "--out: cannot make the folder taken/r (")
    assert_clean_error(invoke("train", "--config", "new/deeper/best.yaml", "--out", "taken/t"),
                       "--out: cannot make the folder taken/t (")
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


def test_a_study_that_predates_the_recorded_split_is_exported_from_its_study_file(shared_study, tmp_path):
    url, path, study = shared_study
    old = optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.db'}", study_name="shared-digits",
                              direction="maximize")
    old.set_user_attr("spec_path", str(tmp_path / "moved.yaml"))  # as studies made before export existed
    old.add_trial(best_trial(study))
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    assert_clean_error(invoke("export", "--study", "shared-digits", "--storage", storage, "-o", "a.yaml"),
                       "does not record its dataset split and seed", "give the study file as --study FILE")
    result = invoke("export", "--study", str(path), "--storage", storage, "-o", "b.yaml")
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert exported["dataset"]["validation"] == 0.15 and exported["seed"] == 0


def test_the_speed_run_model_options_are_searched_recorded_exported_and_trained_again(write_study, storage, tmp_path):
    """family, width_multiplier, whiten and dirac_init in space and fixed: the trial's config holds them, and
    `train` rebuilds the same model (whitening filters refitted from the same training images) to the bit."""
    from hpsearch.search.run import RunOptions, run
    from hpsearch.studyfile.schema import load_spec

    path = write_study(name="model-options", budget={"epochs": 2, "trials": 2},
                       space={"family": {"choice": ["cnn"]}, "whiten": {"int": [1, 2]},
                              "width_multiplier": {"float": [0.5, 1.0]}},
                       fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "dirac_init": True, "batch_size": 64})
    study = run(load_spec(path), storage, RunOptions(device="cpu"))
    best = best_trial(study)
    assert {"whiten", "width_multiplier", "family"} <= best.params.keys()
    assert best.user_attrs["config"]["dirac_init"] is True and best.user_attrs["config"]["whiten"] in (1, 2)
    assert invoke("export", "--study", "model-options", "--storage", storage, "-o", "best.yaml").exit_code == 0
    config = yaml.safe_load((tmp_path / "best.yaml").read_text())["params"]
    assert {k: config[k] for k in ("whiten", "width_multiplier", "dirac_init")} == {
        k: best.user_attrs["config"][k] for k in ("whiten", "width_multiplier", "dirac_init")}

    result = invoke("train", "--config", "best.yaml", "--seeds", "1", "--out", "retrained", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"seed 0: val {best.value:.4f}, test {best.user_attrs['test_accuracy']:.4f}" in result.stdout
    stored = load_trial_state_dict(storage, "model-options", best.number)
    retrained = load_file(str(tmp_path / "retrained" / "seed-0.safetensors"))
    assert stored.keys() == retrained.keys() and all(torch.equal(stored[k], retrained[k]) for k in stored)


def test_a_trial_with_the_speed_run_recipes_is_recorded_exported_and_trained_again_to_the_same_numbers(
        write_study, storage, tmp_path):
    from hpsearch.search.run import RunOptions, run
    from hpsearch.studyfile.schema import load_spec

    recipes = {"augment": "flip_crop", "flip": "alternating", "tta": "flip_translate", "ema": 0.8,
               "bn_bias_lr_scale": 8.0, "bn_weight_decay": False, "lr_per_1024": 0.8}
    path = write_study(budget={"epochs": 2, "trials": 1}, space={"width": {"int": [4, 8]}},
                       fixed={"blocks": 1, "convs_per_block": 1, "batch_size": 64, **recipes})
    study = run(load_spec(path), storage, RunOptions(device="cpu", keep_weights=1))
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["config"].items() >= recipes.items()
    assert "lr" not in trial.user_attrs["config"]
    assert invoke("export", "--study", "tiny-digits", "--storage", storage, "-o", "best.yaml").exit_code == 0
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["params"].items() >= recipes.items()
    result = invoke("train", "--config", "best.yaml", "--out", "retrained", "--device", "cpu")
    assert result.exit_code == 0, result.output
    retrained = json.loads((tmp_path / "retrained" / "results.json").read_text())["seeds"][0]
    assert (retrained["val_accuracy"], retrained["test_accuracy"]) == (trial.value, trial.user_attrs["test_accuracy"])
    stored = load_trial_state_dict(storage, "tiny-digits", trial.number)  # the averaged weights, kept
    again = load_file(str(tmp_path / "retrained" / "seed-0.safetensors"))
    assert stored.keys() == again.keys() and all(torch.equal(stored[k], again[k]) for k in stored)


def test_a_short_trial_is_exported_with_its_epochs_and_trains_again_to_its_numbers(write_study, storage, tmp_path):
    """A trial that trains fewer epochs than the budget (`epochs` fixed at 2 of 3) lays its learning-rate schedule
    over its own 2: it is not the budget's run cut short, and `train` gives it its numbers again."""
    from hpsearch.search.run import RunOptions, run
    from hpsearch.studyfile.schema import load_spec
    from hpsearch.training import recipe
    from hpsearch.training.devicedata import load

    path = write_study(budget={"epochs": 3, "trials": 1}, space={"width": {"int": [4, 8]}},
                       fixed={"blocks": 1, "convs_per_block": 1, "batch_size": 64, "lr": 0.1, "epochs": 2})
    study = run(load_spec(path), storage, RunOptions(device="cpu", keep_weights=1))
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and list(trial.intermediate_values) == [1, 2]
    assert trial.user_attrs["epochs"] == trial.user_attrs["config"]["epochs"] == 2
    config = trial.user_attrs["config"]
    data = load(load_spec(path).dataset, torch.device("cpu"))
    short = recipe.train(config, data, epochs=2, seed=0)
    cut = recipe.train({k: v for k, v in config.items() if k != "epochs"}, data, epochs=3, seed=0)
    assert short.val_accuracy == trial.value and short.history[0].train_loss != cut.history[0].train_loss

    assert invoke("export", "--study", "tiny-digits", "--storage", storage, "-o", "short.yaml").exit_code == 0
    config = yaml.safe_load((tmp_path / "short.yaml").read_text())
    assert config["epochs"] == config["params"]["epochs"] == 2
    result = invoke("train", "--config", "short.yaml", "--out", "retrained", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert ": identical)" in result.stdout
    stored = load_trial_state_dict(storage, "tiny-digits", trial.number)
    again = load_file(str(tmp_path / "retrained" / "seed-0.safetensors"))
    assert stored.keys() == again.keys() and all(torch.equal(stored[k], again[k]) for k in stored)


def test_export_of_a_study_whose_best_is_a_baseline_says_so_and_names_the_best_searched_trial(storage, tmp_path):
    """The default stays the trial `best` names (one rule for every winner); a baseline is never handed over unsaid."""
    from tests.helpers import stored_trial

    study = optuna.create_study(study_name="beaten", storage=storage, direction="maximize")
    study.set_user_attr("dataset_split", {"name": "digits", "validation": 0.15, "test": 0.2, "split_seed": 0})
    study.set_user_attr("seed", 0)
    study.add_trial(stored_trial(0.95, {"lr": 0.1}))
    study.add_trial(stored_trial(0.97, {}, baseline="seed003-tricks"))
    result = invoke("export", "--study", "beaten", "--storage", storage, "-o", str(tmp_path / "best.yaml"),
                    "--no-weights")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"wrote {tmp_path / 'best.yaml'} (trial #1, baseline seed003-tricks, val 0.9700, test 0.9700)",
        "trial #1: the highest validation accuracy of all completed trials, baselines included (of equal accuracies, "
        "the earliest)",
        "note: trial #1 is baseline seed003-tricks, a hand-made model of the reports, not a searched trial; the best "
        "searched trial is #0 (val 0.9500, test 0.9500): --trial 0 exports it"]
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["baseline"] == "seed003-tricks"
    chosen = invoke("export", "--study", "beaten", "--storage", storage, "-o", str(tmp_path / "searched.yaml"),
                    "--no-weights", "--trial", "0")
    assert chosen.stderr.splitlines() == [f"wrote {tmp_path / 'searched.yaml'} (trial #0, val 0.9500, test 0.9500)"]
