"""What a trial costs before it trains (search/cost.py): multiply-adds counted on the meta device, a new study's
cheapest start-up draws run first, and a trial projected past what its run has left never trains or stops early."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpsearch.search import cost
from hpsearch.search.objective import make_objective
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile import params as P
from hpsearch.studyfile.schema import load_spec
from hpsearch.training import space
from hpsearch.training.devicedata import load


def test_multiply_adds_are_those_of_the_convs_and_the_linear_layers():
    # One 3x3 conv of 8 filters on an 8x8 one-channel image ('same' padding), a 2x2 max-pool, a linear layer.
    params = P.complete({"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False})
    conv = 8 * 8 * 8 * (1 * 3 * 3)  # output values x the multiply-adds of each
    linear = (8 * 4 * 4) * 10
    assert cost.multiply_adds(params, (1, 8, 8), 10) == conv + linear
    assert cost.multiply_adds({**params, "tta": "flip_translate"}, (1, 8, 8), 10) == conv + linear  # one pass
    # ResNet-9 on 8x8 images: BatchNorm over one image of 1x1 (a training-mode forward refuses it)
    assert cost.multiply_adds(P.complete({"family": "resnet9", "width": 8}), (1, 8, 8), 10) > 0


def test_a_trial_s_work_is_its_training_steps_and_its_evaluated_images():
    work = cost.Work(per_image=10, epochs=2, batch_size=4, steps_per_epoch=3, eval_images=5)
    assert work.multiply_adds == 10 * 2 * (3 * 3 * 4 + 5)  # a training image costs three forward passes
    assert work.seconds_from_step(1.2) == pytest.approx(2 * (3 * 1.2 + 5 * 1.2 / 12))


def test_a_candidate_is_projected_at_the_least_the_probes_allow():
    light, heavy = (cost.Work(per_image=n, epochs=1, batch_size=4, steps_per_epoch=3, eval_images=0) for n in (10, 40))
    speed = cost.Speed()
    assert speed.projected(light) is None  # no probe yet
    speed.measured(light, 1.0)
    assert speed.projected(heavy) == pytest.approx(3 * 1.0)  # no faster than the lighter step
    speed.measured(heavy, 2.0)  # four times the work in twice the time: overheads
    assert speed.projected(heavy) == pytest.approx(3 * 2.0)
    assert speed.projected(light) == pytest.approx(3 * 1.0)  # its own measure, above 2.0 / 4
    half = cost.Work(per_image=20, epochs=1, batch_size=4, steps_per_epoch=3, eval_images=0)
    assert speed.projected(half) == pytest.approx(3 * 1.0)  # heavier than one measured step, lighter than the other


@pytest.fixture
def cheap_and_dear(write_study):
    """A digits study whose draws cost from 1 to 64 units (width 4 to 64, with one conv of each)."""
    return load_spec(write_study(sampler={"name": "tpe", "seed": 3, "n_startup_trials": 3},
                                 budget={"epochs": 1, "trials": 4},
                                 space={"width": {"int": [4, 64], "log": True},
                                        "lr": {"float": [0.01, 0.2], "log": True}}))


def test_the_start_up_draws_are_the_cheapest_third_of_the_random_draws_cheapest_first(cheap_and_dear):
    digits = load(cheap_and_dear.dataset, torch.device("cpu"))
    drawn = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    every = sorted(cost.work(space.sample(drawn.ask(), cheap_and_dear), cheap_and_dear, digits).multiply_adds
                   for _ in range(3 * 3))
    chosen = cost.start_up_draws(cheap_and_dear, digits, 3, seed=5)
    priced = [cost.work(space.sample(optuna.trial.FixedTrial(p), cheap_and_dear), cheap_and_dear, digits).multiply_adds
              for p in chosen]
    assert priced == every[:3] and every[3] > every[2]


def test_a_new_study_starts_with_its_cheapest_draws_then_its_sampler_models(cheap_and_dear, storage):
    study = run(cheap_and_dear, storage, RunOptions(device="cpu"))
    digits = load(cheap_and_dear.dataset, torch.device("cpu"))
    assert [t.params for t in study.trials[:3]] == cost.start_up_draws(cheap_and_dear, digits, 3, seed=3)
    priced = [t.user_attrs["cost"]["multiply_adds"] for t in study.trials]
    assert priced[:3] == sorted(priced[:3]) and len(priced) == 4
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    again = run(cheap_and_dear, storage, RunOptions(device="cpu", n_trials=1))  # queued once, by the study
    assert len(again.trials) == 5 and "fixed_params" not in again.trials[4].system_attrs


def test_a_run_stopped_at_its_target_leaves_no_start_up_draw_waiting(write_study, storage):
    spec = load_spec(write_study(sampler={"name": "tpe", "seed": 3, "n_startup_trials": 5},
                                 target={"metric": "val_accuracy", "value": 0.05}))
    study = run(spec, storage, RunOptions(device="cpu"))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]


def trials_run(spec, time_left, n_trials=2, baseline=None):
    digits = load(spec.dataset, torch.device("cpu"))
    study = optuna.create_study(direction="maximize")
    if baseline:
        study.enqueue_trial({}, user_attrs={"baseline": baseline})
    study.optimize(make_objective(spec, digits, time_left=time_left), n_trials=n_trials)
    return study.trials


def test_past_what_the_run_has_left_a_trial_stops_after_its_first_steps_and_the_next_never_trains(write_study):
    first, second = trials_run(load_spec(write_study()), time_left=lambda: 0.001)  # batch 64: 19 steps an epoch
    assert first.state == second.state == TrialState.PRUNED
    assert first.user_attrs["stopped"].startswith("its measured pace projects ")
    assert first.user_attrs["stopped"].endswith(", more than the 0.0 s its run has left: stopped after its first steps")
    assert first.user_attrs["cost"]["step_seconds"] > 0 and first.user_attrs["epochs"] == 0
    assert second.user_attrs["stopped"].startswith("its training projects ")
    assert second.user_attrs["stopped"].endswith(": not trained") and "projected_seconds" in second.user_attrs["cost"]
    assert not first.intermediate_values and not second.intermediate_values and "over_limit" not in first.user_attrs


def test_a_trial_whose_epochs_project_past_what_is_left_stops_after_the_epoch(write_study):
    spec = load_spec(write_study(fixed={"blocks": 1, "convs_per_block": 1, "batch_size": 512}))  # 2 steps: no probe
    (trial,) = trials_run(spec, time_left=lambda: 0.001, n_trials=1)
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    assert trial.user_attrs["stopped"].startswith("the rest of its training (")
    assert trial.user_attrs["stopped"].endswith("its run has left: stopped after epoch 1")


def test_time_enough_trains_to_the_end_and_a_baseline_is_never_stopped_for_time(write_study):
    spec = load_spec(write_study())
    assert all(t.state == TrialState.COMPLETE for t in trials_run(spec, time_left=lambda: 1e6))
    (baseline,) = trials_run(spec, time_left=lambda: 0.001, n_trials=1, baseline="seed002-cnn-q9")
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["epochs"] == 3


def test_a_run_s_timeout_reaches_its_trials(write_study, storage):
    spec = load_spec(write_study(budget={"epochs": 2000, "trials": 1}))  # far more training than 2 s
    (trial,) = run(spec, storage, RunOptions(device="cpu", timeout=2)).trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs["stopped"].endswith("stopped after its first steps")
