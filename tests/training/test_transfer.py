"""Studies that start from a trained model: weights really reused, frozen, re-initialised; torchvision files."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState
from safetensors.torch import save_file
from torch import nn

from hpsearch.cli import main
from hpsearch.errors import HpsearchError, SpecError
from hpsearch.results import ranking
from hpsearch.results.artifacts import (load_state_dict_file, load_trial_state_dict, read_header, save_state_dict,
                                       trial_weights_path)
from hpsearch.search.run import RunOptions, run
from hpsearch.storage import mask, secrets
from hpsearch.studyfile import params as P
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.schema import load_spec, parse_spec
from hpsearch.training import recipe, transfer
from hpsearch.training.devicedata import load
from hpsearch.training.models import build_model
from hpsearch.training.space import model_config, train_config
from hpsearch.training.train import make_optimizer
from hpsearch.record import Init
from tests.helpers import POSTGRES, assert_clean_error, needs_postgres

CPU = torch.device("cpu")
SOURCE_ARCHITECTURE = {"blocks": 3, "convs_per_block": 1, "width": 4, "batchnorm": False, "head_widths": [8]}


@pytest.fixture(scope="module")
def source(tmp_path_factory, image_folder):
    """A source study run on a generated 3-class folder, and its best config trained and saved with save_checkpoint."""
    root = tmp_path_factory.mktemp("source")
    image_folder(root / "breeds", ("beagle", "corgi", "pug"), per_class=8)
    raw = {"dataset": {"name": "imagefolder", "path": str(root / "breeds"), "image_size": 16, "validation": 3,
                       "test": 3},
           "budget": {"epochs": 1, "trials": 1}, "sampler": {"name": "random", "seed": 0},
           "fixed": {**SOURCE_ARCHITECTURE, "lr": 0.05, "batch_size": 6}}
    spec = parse_spec(raw, path=str(root / "breeds.yaml"), default_name="breeds")
    storage = f"sqlite:///{root / 'source.db'}"
    best = run(spec, storage, RunOptions(device="cpu", keep_weights=1)).best_trial
    config = best.user_attrs["config"]
    dogs = load(spec.dataset, CPU)
    model = recipe.train(config, dogs, epochs=2, seed=0).model
    transfer.save_checkpoint(root / "breeds.pt", model, config, dogs.shape)
    return SimpleNamespace(storage=storage, config=config, trial=best.number, checkpoint=root / "breeds.pt",
                           state={k: v.clone() for k, v in model.state_dict().items()})


@pytest.fixture
def fits(monkeypatch):
    """(model, weights when fit began, weights when it ended) of every trial that trains."""
    seen = []

    def recording_fit(model, *args, **kwargs):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        history = real_fit(model, *args, **kwargs)
        seen.append((model, before, {k: v.clone() for k, v in model.state_dict().items()}))
        return history

    real_fit = recipe.fit
    monkeypatch.setattr(recipe, "fit", recording_fit)
    return seen


@pytest.fixture
def pets(image_folder, isolated):
    """A cats-vs-dogs folder with its own validation split, in the tests' data folder."""
    image_folder(isolated / "data" / "pets" / "train", per_class=8, seed=1)
    image_folder(isolated / "data" / "pets" / "validation", per_class=3, seed=2)
    return {"name": "imagefolder", "path": "pets", "image_size": 16, "test": 4}


def conv_keys(model: nn.Module) -> list[str]:
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def same_architecture(config, source_config) -> bool:
    return all(config.get(k) == source_config.get(k) for k in P.ARCHITECTURE)


def test_transfer_trials_start_from_the_source_weights(source, pets, write_study, storage, fits):
    spec = load_spec(write_study(
        init={"weights": str(source.checkpoint)}, dataset=pets, budget={"epochs": 2, "trials": 1},
        space={"lr": {"float": [0.02, 0.1], "log": True}},
        fixed={"output": "sigmoid", "reinit_convs": 1, "freeze_convs": 1, "reused_lr_ratio": 0.5, "batch_size": 4}))
    (trial,) = run(spec, storage, RunOptions(device="cpu")).trials
    assert trial.state == TrialState.COMPLETE and 0 <= trial.value <= 1
    config = trial.user_attrs["config"]
    assert same_architecture(config, source.config) and config["pretrained"] and config["output"] == "sigmoid"
    assert trial.user_attrs["init"] == str(source.checkpoint)
    assert trial.user_attrs["trainable_count"] < trial.user_attrs["param_count"]

    (model, before, after), = fits
    reinit, frozen, trained = conv_keys(model)
    assert before.keys() == source.state.keys()  # same layers; only the output layer is new
    assert model[-1].out_features == 1 and source.state[f"{len(model) - 1}.weight"].shape[0] == 3
    assert not torch.equal(before[reinit], source.state[reinit])
    assert torch.equal(before[frozen], source.state[frozen]) and torch.equal(after[frozen], source.state[frozen])
    assert torch.equal(before[trained], source.state[trained]) and not torch.equal(after[trained], source.state[trained])
    hidden = f"{len(model) - 3}.weight"  # Linear(., 8), ReLU, then the new output layer
    assert torch.equal(before[hidden], source.state[hidden])


def test_init_study_takes_the_source_trials_config_and_stored_weights(source, pets, write_study, storage, fits):
    """The `study` form: the weights the source study kept as an artifact, and the config of that trial."""
    stored = load_trial_state_dict(source.storage, "breeds", "best")
    spec = load_spec(write_study(init={"study": "breeds", "storage": source.storage}, dataset=pets,
                                 budget={"epochs": 1, "trials": 2}, space={}, fixed={"batch_size": 4},
                                 baselines=["seed000-scratch"]))
    searched, scratch = run(spec, storage, RunOptions(device="cpu")).trials  # the search goes first
    for trial in (scratch, searched):
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["init"] == f"study breeds trial #{source.trial}"
        assert same_architecture(trial.user_attrs["config"], source.config)
    assert scratch.user_attrs["config"]["pretrained"] is False and searched.user_attrs["config"]["pretrained"]
    (model, start, _), (_, scratch_start, _) = fits
    first = conv_keys(model)[0]
    assert torch.equal(start[first], stored[first]) and not torch.equal(scratch_start[first], stored[first])


def test_resnet18_starts_from_a_local_state_dict(image_folder, isolated, write_study, storage, fits):
    import torchvision

    torch.manual_seed(1)
    imagenet_layout = torchvision.models.resnet18(weights=None).state_dict()  # 1000 classes, as downloaded
    torch.save(imagenet_layout, isolated / "resnet18.pth")
    image_folder(isolated / "data" / "pets", per_class=6)
    spec = load_spec(write_study(
        init={"weights": "resnet18.pth"}, budget={"epochs": 1, "trials": 1}, space={},
        dataset={"name": "imagefolder", "path": "pets", "image_size": 32, "validation": 2, "test": 2},
        fixed={"family": "resnet18", "freeze_convs": 1, "batch_size": 8, "lr": 0.01}))
    (trial,) = run(spec, storage, RunOptions(device="cpu")).trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["config"]["family"] == "resnet18"
    (model, before, after), = fits
    assert model.fc.out_features == 2
    assert torch.equal(after["conv1.weight"], imagenet_layout["conv1.weight"])  # frozen
    assert torch.equal(before["layer4.1.conv2.weight"], imagenet_layout["layer4.1.conv2.weight"])
    assert not torch.equal(after["layer4.1.conv2.weight"], imagenet_layout["layer4.1.conv2.weight"])


def test_a_missing_weights_file_is_one_line_and_writes_nothing(write_study, storage, image_folder, isolated):
    image_folder(isolated / "data" / "pets", per_class=4)
    path = write_study(init={"weights": "resnet18-f37072fd.pth"}, space={}, fixed={"family": "resnet18"},
                       dataset={"name": "imagefolder", "path": "pets", "image_size": 32, "test": 2, "validation": 2})
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--study", str(path), "--storage", storage])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().startswith(f"error: init.weights: no file {isolated / 'resnet18-f37072fd.pth'}; hpsearch never")
    assert not Path(storage.removeprefix("sqlite:///")).exists()
    assert "error: no storage" in runner.invoke(main, ["best", "--study", "x", "--storage", storage]).stderr


def test_a_broken_safetensors_file_or_not_the_recorded_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a header")
    with pytest.raises(HpsearchError, match=r"^init.weights: .*broken.safetensors is not a safetensors file"):
        transfer.load_source(Init(weights=str(broken)), "")
    other = tmp_path / "other.safetensors"
    save_state_dict(nn.Linear(2, 2), other, {})
    with pytest.raises(HpsearchError, match=r"other.safetensors is not the file the trial started from \(sha256"):
        transfer.load_source(Init(weights=str(other), sha256="0" * 64), "")


def test_weights_that_do_not_fit_are_refused_before_any_trial(source, pets, write_study, storage):
    spec = load_spec(write_study(init={"weights": str(source.checkpoint)}, space={}, fixed={},
                                 budget={"epochs": 1, "trials": 1}, dataset={**pets, "image_size": 24}))
    with pytest.raises(transfer.HpsearchError, match="source was trained on 3x16x16 images, this data is 3x24x24"):
        run(spec, storage, RunOptions(device="cpu"))


def test_more_layers_to_reinit_and_freeze_than_the_model_has_fail_that_trial(source, pets, write_study, storage):
    spec = load_spec(write_study(init={"weights": str(source.checkpoint)}, dataset=pets, space={},
                                 budget={"epochs": 1, "trials": 1}, fixed={"reinit_convs": 2, "freeze_convs": 2}))
    (trial,) = run(spec, storage, RunOptions(device="cpu")).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure"] == "reinit_convs 2 + freeze_convs 2 exceed the model's 3 conv layers"


def test_report_000_exp4_leaves_its_stated_trainable_parameters():
    exp4 = BASELINES["seed000-freeze-1"]
    with torch.device("meta"):
        model = build_model(model_config(exp4.config(), exp4.input_shape, exp4.num_classes))
    source = transfer.Source(model.state_dict(), exp4.config(), exp4.input_shape, Init(weights="itself"))
    reused = transfer.apply(model, source, exp4.config(), exp4.input_shape)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == exp4.trainable_count == 92_865
    assert reused == {"3.weight", "3.bias", "6.weight", "6.bias"}  # convs 2 and 3: trained at reused_lr_ratio


def test_reused_parameters_form_their_own_learning_rate_group():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].bias.requires_grad_(False)
    optimizer = make_optimizer(model, train_config({"pretrained": True, "reused_lr_ratio": 0.25}, epochs=1, seed=0),
                               reused={"0.weight"})
    assert [(g["lr_scale"], len(g["params"])) for g in optimizer.param_groups] == [(1.0, 2), (0.25, 1)]


@pytest.mark.parametrize("overrides, key, message", [
    ({"fixed": {"freeze_convs": 1}}, "fixed.freeze_convs", "only for a study with init:"),
    ({"space": {"pretrained": {"choice": [True, False]}}}, "space.pretrained", "only for a study with init:"),
    ({"init": {"study": "breeds"}, "space": {"width": {"int": [4, 8]}}}, "space.width",
     "the architecture comes from init"),
    ({"init": {"study": "breeds", "weights": "w.pt"}}, "init", "must be one of {study: NAME, trial: best}"),
    ({"init": {"study": "breeds", "trial": "last"}}, "init.trial", "best or a trial number"),
    ({"baselines": ["seed000-freeze-1"]}, "baselines", "seed000-freeze-1 starts from trained weights: it needs init:"),
    ({"init": {"weights": "w.pt"}, "baselines": ["seed000-catsdogs"], "space": {}}, "baselines",
     "seed000-catsdogs has an architecture of its own"),
])
def test_transfer_keys_are_validated(write_study, overrides, key, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_study(**overrides))
    assert any(p.startswith(f"{key}: ") and message in p for p in caught.value.problems), caught.value.problems


def test_a_transfer_space_samples_within_the_source_s_conv_layers(source, pets, write_study, storage):
    spec = load_spec(write_study(init={"weights": str(source.checkpoint)}, dataset=pets,
                                 budget={"epochs": 1, "trials": 6}, fixed={"batch_size": 4},
                                 space={"reinit_convs": {"int": [0, 3]}, "freeze_convs": {"int": [1, 3]}}))
    trials = run(spec, storage, RunOptions(device="cpu")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6, [t.user_attrs.get("failure") for t in trials]
    used = [t.params["reinit_convs"] + t.params["freeze_convs"] for t in trials]
    assert max(used) == 3  # the source's 3 conv layers, all of them, and never more


def test_a_transfer_trial_trains_again_to_its_numbers_through_export_train_and_confirm(write_study, storage, tmp_path):
    """export -> train and confirm start from the source's stored weights as the trial did: its numbers, exactly;
    the trained weights file alone then rebuilds the model as an init source."""
    invoke = CliRunner().invoke
    run(load_spec(write_study("src.yaml", name="src", budget={"epochs": 2, "trials": 1}, space={},
                              fixed={"blocks": 2, "width": 6, "head_widths": [16], "batch_size": 64})),
        storage, RunOptions(device="cpu", keep_weights=1))

    def transfer_trial(seed: int):
        spec = load_spec(write_study(f"xfer{seed}.yaml", name=f"xfer{seed}", seed=seed, init={"study": "src"},
                                     budget={"epochs": 2, "trials": 1}, space={},
                                     fixed={"freeze_convs": 1, "reused_lr_ratio": 0.5, "batch_size": 64}))
        (trial,) = run(spec, storage, RunOptions(device="cpu", keep_weights=0)).trials
        return trial

    trial = transfer_trial(0)
    assert trial.user_attrs["config"]["pretrained"]
    assert trial.user_attrs["trainable_count"] < trial.user_attrs["param_count"]
    assert invoke(main, ["export", "--study", "xfer0", "--storage", storage, "-o", "xfer.yaml"]).exit_code == 0
    config = yaml.safe_load((tmp_path / "xfer.yaml").read_text())
    assert config["init"] == {"study": "src", "trial": 0, "storage": storage} and config["input_shape"] == [1, 8, 8]
    result = invoke(main, ["train", "--config", "xfer.yaml", "--out", "again", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (again,) = json.loads((tmp_path / "again" / "results.json").read_text())["seeds"]
    assert (again["val_accuracy"], again["test_accuracy"]) == (trial.value, trial.user_attrs["test_accuracy"])

    result = invoke(main, ["confirm", "--study", "xfer0", "--storage", storage, "--top", "1", "--seeds", "1",
                           "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (confirmed,) = ranking.study_trials(optuna.load_study(study_name="xfer0", storage=storage))[0].user_attrs[
        "confirm"]["seeds"]
    seed1 = transfer_trial(1)  # the same trial in a study whose training seed is confirm's first
    assert (confirmed["val_accuracy"], confirmed["test_accuracy"]) == (seed1.value, seed1.user_attrs["test_accuracy"])

    rebuilt = transfer.load_source(Init(weights=str(tmp_path / "again" / "seed-0.safetensors")), storage)
    assert rebuilt.config == config["params"] and rebuilt.input_shape == (1, 8, 8) and len(rebuilt.init.sha256) == 64


def _postgres_source(write_study) -> str:
    """A one-trial study run on the PostgreSQL server (its URL holds a password), weights kept; its name."""
    name = f"src-{uuid.uuid4().hex[:8]}"
    run(load_spec(write_study("src.yaml", name=name, budget={"epochs": 1, "trials": 1}, space={},
                              fixed={"blocks": 1, "width": 4, "head_widths": [], "batch_size": 64})),
        POSTGRES, RunOptions(device="cpu", keep_weights=1))
    return name


def _transfer_from(source: str, write_study, storage: str) -> tuple[optuna.trial.FrozenTrial, Path]:
    """A one-trial study on `storage` starting from the source's trial, its password in the study file."""
    path = write_study("xfer-study.yaml", name="xfer", init={"study": source, "storage": POSTGRES},
                       budget={"epochs": 1, "trials": 1}, space={}, fixed={"freeze_convs": 1, "batch_size": 64})
    result = CliRunner().invoke(main, ["run", "--study", str(path), "--storage", storage, "--device", "cpu",
                                       "--keep-weights", "1"])
    assert result.exit_code == 0, result.output
    assert not any(s in result.output for s in secrets(POSTGRES))
    return optuna.load_study(study_name="xfer", storage=storage).trials[0], path


def _trains_again(trial, out: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--config", "exported.yaml", "--out", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (again,) = json.loads((tmp_path / out / "results.json").read_text())["seeds"]
    assert (again["val_accuracy"], again["test_accuracy"]) == (trial.value, trial.user_attrs["test_accuracy"])


@needs_postgres
def test_a_source_storage_s_password_is_kept_nowhere_and_given_again_where_needed(write_study, storage, tmp_path,
                                                                                  monkeypatch):
    """The study file gives the source's storage with its password; no stored attribute, kept weights, export,
    retrained weights or output holds it. export -> train and confirm take it from $HPSEARCH_STORAGE, and without
    it say so in one line."""
    source = _postgres_source(write_study)
    try:
        trial, study_file = _transfer_from(source, write_study, storage)
        assert trial.user_attrs["source"] == {"study": source, "trial": 0, "storage": mask(POSTGRES)}
        invoke = CliRunner().invoke
        outputs = [invoke(main, ["export", "--study", "xfer", "--storage", storage, "-o", "exported.yaml"])]
        assert yaml.safe_load((tmp_path / "exported.yaml").read_text())["init"]["storage"] == mask(POSTGRES)
        assert (tmp_path / "exported.safetensors").is_file()
        outputs.append(invoke(main, ["train", "--config", "exported.yaml", "--out", "again", "--device", "cpu"]))
        assert_clean_error(outputs[-1], "set $HPSEARCH_STORAGE to that URL with its password", mask(POSTGRES))
        assert len(outputs[-1].stderr.splitlines()) == 1

        monkeypatch.setenv("HPSEARCH_STORAGE", POSTGRES)  # the route the storage URL itself takes
        _trains_again(trial, "again", tmp_path)
        outputs.append(invoke(main, ["confirm", "--study", "xfer", "--storage", storage, "--top", "1", "--seeds", "1",
                                     "--device", "cpu"]))
        assert outputs[-1].exit_code == 0, outputs[-1].output
        (confirmed,) = ranking.study_trials(optuna.load_study(study_name="xfer", storage=storage))[0].user_attrs[
            "confirm"]["seeds"]
        assert "failure" not in confirmed
        for result in outputs:
            assert not any(s in result.output for s in secrets(POSTGRES))
        written = [p for p in tmp_path.rglob("*") if p.is_file() and p != study_file]
        assert any(p.suffix == ".safetensors" for p in written) and any(p.suffix == ".db" for p in written)
        for path in written:
            assert not any(s.encode() in path.read_bytes() for s in secrets(POSTGRES)), path
    finally:
        optuna.delete_study(study_name=source, storage=POSTGRES)


@needs_postgres
def test_a_password_an_earlier_version_stored_is_shown_masked_and_never_used(write_study, storage, tmp_path,
                                                                             monkeypatch):
    """A transfer trial stored by an earlier hpsearch, the password in the clear in its `source` attribute and its
    kept weights' header: export masks both (the tensors copied bit for bit), and train still takes the password
    from $HPSEARCH_STORAGE, not from the stored copy."""
    source = _postgres_source(write_study)
    try:
        trial, _ = _transfer_from(source, write_study, storage)
        (password,) = secrets(POSTGRES)
        with sqlite3.connect(tmp_path / "test.db") as db:  # as an earlier hpsearch stored it
            db.execute("UPDATE trial_user_attributes SET value_json = replace(value_json, '***', ?) WHERE key = "
                       "'source'", (password,))
        kept = trial_weights_path(storage, trial)
        header = read_header(kept)
        save_file(load_state_dict_file(kept), str(kept),
                  {**header, "record": header["record"].replace("***", password)})
        assert password.encode() in kept.read_bytes()

        result = CliRunner().invoke(main, ["export", "--study", "xfer", "--storage", storage, "-o", "exported.yaml"])
        assert result.exit_code == 0 and password not in result.output
        assert yaml.safe_load((tmp_path / "exported.yaml").read_text())["init"]["storage"] == mask(POSTGRES)
        exported = tmp_path / "exported.safetensors"
        assert password.encode() not in exported.read_bytes()
        assert password not in (tmp_path / "exported.yaml").read_text()
        assert json.loads(read_header(exported)["record"])["init"]["storage"] == mask(POSTGRES)
        weights = load_state_dict_file(exported)
        assert list(weights) == list(load_state_dict_file(kept))
        assert all(torch.equal(weights[k], v) for k, v in load_state_dict_file(kept).items())
        assert transfer.load_source(Init(weights=str(exported)), storage).config == trial.user_attrs["config"]

        result = CliRunner().invoke(main, ["train", "--config", "exported.yaml", "--out", "again", "--device", "cpu"])
        assert_clean_error(result, "$HPSEARCH_STORAGE")
        monkeypatch.setenv("HPSEARCH_STORAGE", POSTGRES)
        _trains_again(trial, "again", tmp_path)
    finally:
        optuna.delete_study(study_name=source, storage=POSTGRES)


def test_a_transfer_study_run_before_its_source_names_the_source_study_and_the_storage(write_study, tmp_path):
    """catsdogs-transfer run first, in an empty folder: not "no storage hpsearch.db", but which study to run."""
    path = write_study(init={"study": "stanford-dogs", "trial": "best"}, space={"lr": {"float": [0.01, 0.1]}},
                       fixed={"batch_size": 64})
    result = CliRunner().invoke(main, ["run", "--study", str(path)])
    assert_clean_error(result, "init.study: the source study 'stanford-dogs' is not there: no storage "
                               "sqlite:///hpsearch.db yet; run it first (hpsearch run --study stanford-dogs) or set "
                               "init.storage to the storage that holds it")
    assert not (tmp_path / "hpsearch.db").exists()
