"""The record, the one door to what hpsearch stores on Optuna's trials and studies: a trial's recipe survives its
three written forms (stored trial, exported config, weights header); what a trial, a study and a confirmation store
reads back as the typed values written, under the names earlier versions stored."""

from __future__ import annotations

import warnings

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from hpsearch import record
from hpsearch.record import Confirmation, Init, Provenance, SeedResult, TrialRecord
from hpsearch.record import keys as K
from hpsearch.results.artifacts import read_header, save_state_dict
from hpsearch.search.retries import queue_retry
from hpsearch.studyfile import params as P

DIGITS = {"name": "digits", "validation": 0.15, "test": 0.2, "split_seed": 0}
RECORDS = [
    TrialRecord(P.complete({"width": 6, "head_widths": [16]}), DIGITS, 2, 0),
    TrialRecord(P.complete({"pretrained": True, "freeze_convs": 1}), DIGITS, 3, 7,
                Init(study="src", trial=4, storage="sqlite:///a.db"), (1, 8, 8), 10),
    TrialRecord(P.complete({"pretrained": True, "reinit_convs": 1}), {**DIGITS, "name": "imagefolder",
                "path": "pets", "image_size": [16, 16], "resize": "squash"}, 1, 2**32 - 1,
                Init(weights="/w/src.safetensors", sha256="ab" * 32), (3, 16, 16), 2),
]


WHERE = Provenance(device="cpu", torch="2.x", optuna="5.x", dataset_source="/data/digits", worker="host:1")


def _started(study: optuna.Study, recipe: TrialRecord, **params) -> optuna.Trial:
    trial = study.ask()
    for name, value in params.items():
        trial.suggest_int(name, value, value)
    record.started(trial, recipe, WHERE)
    return trial


@pytest.mark.parametrize("recipe", RECORDS)
def test_the_stored_trial_gives_the_record_back(recipe):
    study = optuna.create_study(direction="maximize")
    trial = _started(study, recipe)
    record.ended(trial, epochs_trained=recipe.epochs, seconds=1.5)
    study.tell(trial, 0.9)
    stored = study.trials[0]
    assert record.stored_recipe(stored, split=recipe.dataset, seed=recipe.seed) == recipe
    assert record.provenance(stored) == WHERE


def test_epochs_trained_are_not_the_recipe_s_epochs():
    """A trial pruned after 2 of its 5 epochs trained 2; its recipe still trains 5. One that ended early without
    an epochs parameter of its own does not say what its recipe's were, and is refused rather than misread."""
    study = optuna.create_study(direction="maximize")
    own = TrialRecord(P.complete({"width": 6, "epochs": 5}), DIGITS, 5, 0)
    trial = _started(study, own)
    record.ended(trial, epochs_trained=2, seconds=1.0)
    study.tell(trial, state=TrialState.PRUNED)
    budget = TrialRecord(P.complete({"width": 6}), DIGITS, 4, 0)
    trial = _started(study, budget)
    record.pruned(trial, train_seconds=0.5, over_limit="params 99 over the limit 10")
    record.ended(trial, epochs_trained=1, seconds=0.6)
    study.tell(trial, state=TrialState.PRUNED)
    pruned, over = study.trials
    assert record.outcome(pruned).epochs_trained == 2
    assert record.stored_recipe(pruned, split=DIGITS, seed=0).epochs == 5
    assert (record.outcome(over).epochs_trained, record.outcome(over).over_limit) == (1, "params 99 over the limit 10")
    with pytest.raises(ValueError, match="only a completed trial records the epochs of its recipe"):
        record.stored_recipe(over, split=DIGITS, seed=0)


def test_a_trial_s_outcome_reads_back_as_written():
    study = optuna.create_study(direction="maximize")
    trial = _started(study, RECORDS[0])
    record.joined(trial, "run-1")
    record.built(trial, 1234)
    record.trained(trial, trainable_count=1000, train_seconds=2.5, val_accuracy=0.91, test_accuracy=0.9)
    record.ended(trial, epochs_trained=2, seconds=3.25)
    study.tell(trial, 0.91)
    trial = _started(study, RECORDS[0])
    record.failed(trial, "the loss diverged (NaN)")
    record.ended(trial, epochs_trained=0, seconds=0.1)
    study.tell(trial, state=TrialState.FAIL)
    done, failed = study.trials
    did = record.outcome(done)
    assert (did.epochs_trained, did.seconds, did.train_seconds, did.val_accuracy, did.test_accuracy,
            did.param_count, did.device, did.failure) == (2, 3.25, 2.5, 0.91, 0.9, 1234, "cpu", None)
    assert (record.run_id(done), record.measured(done, "params"), record.measured(done, "train_seconds")) == \
        ("run-1", 1234, 2.5)
    assert record.outcome(failed).failure == "the loss diverged (NaN)" and record.run_id(failed) is None


def test_a_queued_copy_of_a_failed_trial_keeps_what_to_run_and_optuna_s_chain(storage):
    """Optuna's retry helpers follow the chain of attempts; the copy keeps the baseline's name and the epochs
    reported, not why its first attempt failed; Optuna's warning that its helpers are experimental never shows."""
    study = optuna.create_study(storage=storage, direction="maximize")
    record.queue_baseline(study, {"x": 1}, "seed002-fc")
    for attempt in range(2):  # the baseline's trial #0 fails, then its copy #1
        trial = study.ask()
        trial.suggest_int("x", 1, 1)
        if attempt == 0:
            trial.report(0.5, 1)
        record.failed(trial, f"worker lost ({attempt})")
        study.tell(trial, state=TrialState.FAIL)
        with warnings.catch_warnings():
            warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
            queue_retry(study, study.trials[-1])
            assert record.retry_history(study.trials[-1]) == list(range(attempt + 1))
    trial = study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        assert record.first_attempt(trial) == 0 and trial.number == 2
    assert record.queued_params(trial) == {"x": 1}
    copy = study.trials[-1]
    assert record.baseline(copy) == "seed002-fc" and record.outcome(copy).failure is None
    assert copy.intermediate_values == {1: 0.5}


def test_a_confirmation_reads_back_from_the_study_as_stored():
    """What `hpsearch confirm` stores on the study, seed by seed, and what earlier versions stored (no device)."""
    study = optuna.create_study(direction="maximize")
    seeds = (SeedResult(1, 0.9, 0.89, 2.0, device="cpu"), SeedResult(2, failure="the loss diverged (NaN)"))
    confirmation = Confirmation(seeds, {"mean": 0.9, "std": None, "ci95": None}, {"mean": 0.89})
    record.store_confirmation(study, 3, confirmation)
    study.set_user_attr("confirm #5", {"seeds": [{"seed": 7, "val_accuracy": 0.8, "test_accuracy": 0.7,
                                                  "seconds": 1.0}], "val": {"mean": 0.8}, "test": {"mean": 0.7}})
    stored = record.study_record(study).confirmations
    assert stored[3] == confirmation and stored[3].trained_seeds == [1] and stored[3].mean_val == 0.9
    assert stored[5].by_seed()[7] == SeedResult(7, 0.8, 0.7, 1.0) and stored[5].seeds[0].device is None


def test_a_study_s_record_reads_back_as_written():
    study = optuna.create_study(direction="maximize")
    assert not record.study_record(study).by_hpsearch
    record.study_made(study, dataset="digits", epochs=4, spec_path="/s/study.yaml", split=DIGITS, seed=3)
    record.held_limits(study, {"params": 1000, "train_seconds": None})
    made = record.study_record(study)
    assert (made.dataset, made.epochs, made.spec_path, made.split, made.seed, made.bounds, made.by_hpsearch) == \
        ("digits", 4, "/s/study.yaml", DIGITS, 3, {"params": 1000}, True)


def test_the_stored_names_are_those_earlier_versions_wrote():
    """Studies stored by earlier versions keep opening (tests/e2e/test_old_studies.py): no name changes."""
    assert (K.CONFIG, K.EPOCHS_TRAINED, K.SECONDS, K.TRAIN_SECONDS, K.VAL_ACCURACY, K.TEST_ACCURACY, K.FAILURE,
            K.OVER_LIMIT, K.STOPPED, K.BASELINE, K.RUN, K.WEIGHTS, K.CURVE, K.PRUNER_ATTRS) == (
        "config", "epochs", "seconds", "train_seconds", "val_accuracy", "test_accuracy", "failure", "over_limit",
        "stopped", "baseline", "run", "weights_artifact", "val_curve", "pruner_attrs")
    assert (K.STUDY_SPLIT, K.STUDY_SEED, K.STUDY_EPOCHS, K.STUDY_SPEC_PATH, K.CONFIRMED, K.CONFIRM_CLAIMS) == (
        "dataset_split", "seed", "epochs", "spec_path", "confirm #", "hpsearch:confirm_claims")


@pytest.mark.parametrize("recipe", RECORDS)
def test_the_exported_config_gives_the_record_back(recipe):
    assert TrialRecord.from_config(yaml.safe_load(yaml.safe_dump(recipe.config()))) == recipe


@pytest.mark.parametrize("recipe", RECORDS)
def test_a_weights_files_header_gives_the_record_back(recipe, tmp_path):
    path = tmp_path / "w.safetensors"
    save_state_dict(torch.nn.Linear(2, 2), path, recipe.header())
    assert TrialRecord.from_header(read_header(path)) == recipe


def test_what_older_hpsearch_wrote_still_reads():
    """A config from before init, input_shape and classes; a transfer trial stored before its `source`
    attribute (its `init` words name the study's own storage's trial); a header with no record."""
    old = {"dataset": DIGITS, "epochs": 2, "seed": 0, "params": {"width": 6}}
    assert TrialRecord.from_config(old) == TrialRecord({"width": 6}, DIGITS, 2, 0)
    attrs = {"config": {"pretrained": True}, "epochs": 2, "init": "study src trial #1", "input_shape": [1, 8, 8]}
    read = TrialRecord.from_attrs(attrs, split=DIGITS, seed=0, storage="sqlite:///x.db")
    assert (read.init, read.epochs) == (Init("src", 1, "sqlite:///x.db"), 2)
    assert TrialRecord.from_attrs({**attrs, "init": "/w/a.pt"}, split=DIGITS, seed=0).init == Init(weights="/w/a.pt")
    assert TrialRecord.from_header({"params": "{}"}) is None


def test_a_record_never_holds_a_password():
    """Every written form of a record is masked, a password read from an earlier version's record too."""
    url = "postgresql://bob:s3cret@db:5432/hpsearch?sslpassword=k3y"
    init = Init.from_dict({"study": "src", "storage": url})
    recipe = TrialRecord(P.complete({"pretrained": True}), DIGITS, 2, 0, init)
    assert recipe.init.storage == "postgresql://bob:***@db:5432/hpsearch?sslpassword=***"
    for form in (recipe.trial_attrs(), recipe.config(), recipe.header()):
        assert "s3cret" not in str(form) and "k3y" not in str(form)
