"""A trial's training state on disk: saved whole or not at all, read back, removed once the trial ends; a file
that cannot be resumed from is named in a warning and the trial starts again from epoch 1."""

from __future__ import annotations

import logging
import pickle
import random

import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.paths import slug
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training.checkpoint import Checkpoint, CheckpointFile
from hpsearch.training.models import build_model
from hpsearch.training.space import model_config, train_config
from hpsearch.training.train import fit, make_optimizer
from tests.helpers import WritesAFile

CPU = torch.device("cpu")
PARAMS = {"blocks": 1, "convs_per_block": 1, "width": 4, "batch_size": 256, "optimizer": "sgd_nesterov"}


def history(epochs: int) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.5, "seconds": 0.1} for e in range(1, epochs + 1)]


def snapshot(model: torch.nn.Module, epochs: int = 2) -> Checkpoint:
    return Checkpoint(epoch=epochs, model=model.state_dict(), optimizer=make_optimizer(model, TRAIN).state_dict(),
                      generator=torch.Generator().get_state(), cpu_rng=torch.get_rng_state(), cuda_rng=None,
                      history=history(epochs))


def model_of(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config({**PARAMS, "width": width}, (1, 8, 8), 10))


TRAIN = train_config(PARAMS, epochs=3, seed=0)


def warnings_about(caplog, file: CheckpointFile) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(file.path) in r.getMessage()]


def test_a_checkpoint_file_saves_loads_and_is_gone_once_deleted(tmp_path):
    file = CheckpointFile(tmp_path / "deeper" / "trial-0.pt")
    assert file.load() is None
    model = model_of(4)
    file.save(snapshot(model))
    saved = file.load(like=snapshot(model_of(4)))
    assert saved.epoch == 2 and torch.equal(saved.model["0.weight"], model.state_dict()["0.weight"])
    assert len(saved.history) == 2 and [p.name for p in file.path.parent.iterdir()] == ["trial-0.pt"]
    file.delete()
    assert file.load() is None and not file.path.exists()
    file.delete()  # already gone: nothing to do


def damaged(kind: str, path, marker) -> None:
    good = CheckpointFile(path)
    good.save(snapshot(model_of(4)))
    whole = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(whole[:len(whole) // 2])
    elif kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 2\n")
    elif kind == "a pickle that runs code":
        torch.save({**vars(snapshot(model_of(4))), "epoch": WritesAFile(marker)}, path)
    elif kind == "a plain pickle":
        path.write_bytes(pickle.dumps({"epoch": 2}))
    elif kind == "foreign tensors":
        torch.save({"weight": torch.ones(3)}, path)
    elif kind == "history and epochs disagree":
        torch.save({**vars(snapshot(model_of(4))), "history": history(1)}, path)


DAMAGES = ["truncated", "random bytes", "empty", "text", "a pickle that runs code", "a plain pickle", "foreign tensors",
           "history and epochs disagree"]


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_or_foreign_checkpoint_is_a_warning_naming_it_and_no_resume(kind, tmp_path, caplog):
    marker = tmp_path / "written-by-unpickling"
    file = CheckpointFile(tmp_path / "trial-0.pt")
    damaged(kind, file.path, marker)
    assert file.load(like=snapshot(model_of(4))) is None
    (warning,) = warnings_about(caplog, file)
    assert warning.startswith(f"cannot resume from the checkpoint {file.path} (") and warning.endswith(
        "): the trial starts again from epoch 1")
    assert not marker.exists()


def test_the_pickle_that_runs_code_would_have_run_it_unsafely(tmp_path):
    """The case above tests something: torch.load without weights_only creates the file."""
    marker = tmp_path / "written-by-unpickling"
    damaged("a pickle that runs code", tmp_path / "trial-0.pt", marker)
    torch.load(tmp_path / "trial-0.pt", weights_only=False)
    assert marker.exists()


def test_a_checkpoint_of_another_model_or_another_trial_is_not_resumed(tmp_path, caplog):
    file = CheckpointFile(tmp_path / "trial-0.pt", recipe='{"width": 8}')
    file.save(snapshot(model_of(8)))
    assert file.load(like=snapshot(model_of(4))) is None
    assert "(its model has 0.weight of shape (8, 1, 3, 3), the model's is (4, 1, 3, 3))" in warnings_about(caplog,
                                                                                                        file)[-1]
    assert CheckpointFile(file.path, recipe='{"width": 4}').load(like=snapshot(model_of(8))) is None
    assert "(another trial's: its recipe differs from this trial's)" in warnings_about(caplog, file)[-1]
    assert CheckpointFile(file.path, recipe='{"width": 8}').load(like=snapshot(model_of(8))) is not None
    averaged = snapshot(model_of(8))
    averaged.average = model_of(8).state_dict()
    assert file.load(like=averaged) is None
    assert "it holds no weight average, but this run averages the weights (ema)" in warnings_about(caplog, file)[-1]


def test_a_checkpoint_written_before_checkpoints_carried_a_recipe_is_resumed(tmp_path):
    unlabelled = CheckpointFile(tmp_path / "trial-0.pt")
    unlabelled.save(snapshot(model_of(4)))
    assert CheckpointFile(unlabelled.path, recipe='{"width": 4}').load(like=snapshot(model_of(4))).epoch == 2


def test_a_checkpoint_that_cannot_be_written_warns_once_and_leaves_no_partial_file(tmp_path, caplog):
    (tmp_path / "a-file").write_text("in the way of the folder")
    file = CheckpointFile(tmp_path / "a-file" / "trial-0.pt")
    file.save(snapshot(model_of(4)))
    file.save(snapshot(model_of(4)))
    (warning,) = warnings_about(caplog, file)
    assert warning == (f"cannot write the checkpoint {file.path} (File exists): the trial trains on, and a "
                       "retried copy would resume from an older checkpoint or from epoch 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_fit_given_an_unfit_checkpoint_trains_from_epoch_1_as_without_one(tmp_path, caplog):
    d = data.load(DatasetSpec("digits"), CPU)
    file = CheckpointFile(tmp_path / "trial-0.pt")
    file.save(snapshot(model_of(8), epochs=2))  # another width: fit must not load any of it
    numbers = lambda run: [(h.epoch, h.train_loss, h.val_accuracy) for h in run]
    assert numbers(fit(model_of(4), d, TRAIN, checkpoint=file)) == numbers(fit(model_of(4), d, TRAIN))
    assert len(warnings_about(caplog, file)) == 1


STUDY = {"name": "resumed", "dataset": {"name": "digits", "validation": 0.15, "test": 0.2},
         "budget": {"epochs": 2, "trials": 1}, "sampler": {"name": "random", "seed": 0},
         "space": {"lr": {"float": [0.01, 0.1], "log": True}}, "fixed": PARAMS}


@pytest.mark.parametrize("kind", ["truncated", "a pickle that runs code"])
def test_a_run_whose_trial_finds_a_damaged_checkpoint_trains_it_from_epoch_1_to_the_same_result(kind, tmp_path,
                                                                                               caplog):
    (tmp_path / "resumed.yaml").write_text(yaml.safe_dump(STUDY))
    run = lambda name: CliRunner().invoke(main, ["run", "--study", "resumed.yaml", "--storage", f"sqlite:///{name}.db",
                                                 "--device", "cpu", "--keep-weights", "0"])
    assert run("clean").exit_code == 0
    path = tmp_path / "damaged-files" / "checkpoints" / slug("resumed") / "trial-0.pt"
    path.parent.mkdir(parents=True)
    marker = tmp_path / "written-by-unpickling"
    damaged(kind, path, marker)
    result = run("damaged")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    shown = path.relative_to(tmp_path)  # as the storage URL gives it
    assert any(f"cannot resume from the checkpoint {shown} (" in r.getMessage() for r in caplog.records)
    (clean,) = optuna.load_study(study_name="resumed", storage="sqlite:///clean.db").trials
    (again,) = optuna.load_study(study_name="resumed", storage="sqlite:///damaged.db").trials
    assert again.state == optuna.trial.TrialState.COMPLETE and "resumed_from_epoch" not in again.user_attrs
    assert (again.value, again.user_attrs["test_accuracy"]) == (clean.value, clean.user_attrs["test_accuracy"])
    assert not path.exists() and not marker.exists()
