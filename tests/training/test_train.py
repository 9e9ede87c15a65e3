"""Real short trainings on digits: well above chance, repeatable to the bit, NaN caught."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hpsearch.studyfile import params as P
from hpsearch.studyfile.types import DatasetSpec
from hpsearch.training import devicedata as data
from hpsearch.training.checkpoint import CheckpointFile
from hpsearch.training.models import build_model
from hpsearch.training.space import model_config, train_config
from hpsearch.training import train as train_module
from hpsearch.training.train import (
    TrainingDiverged,
    WeightAverage,
    epoch_images,
    evaluate,
    fit,
    lr_factor,
    make_optimizer,
)

CPU = torch.device("cpu")
SMALL_CNN = {"blocks": 1, "convs_per_block": 1, "width": 16, "batch_size": 64, "lr": 0.05, "augment": "crop",
             "crop_padding": 1}


def train(params: dict, epochs: int = 4, seed: int = 0):
    d = data.load(DatasetSpec("digits"), CPU)
    torch.manual_seed(seed)
    model = build_model(model_config(params, d.shape, d.num_classes))
    history = fit(model, d, train_config(params, epochs=epochs, seed=seed))
    return model, d, history


def test_short_training_on_digits_reaches_well_above_chance():
    model, d, history = train(SMALL_CNN)
    assert [h.epoch for h in history] == [1, 2, 3, 4]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.9  # chance is 0.1
    assert evaluate(model, d, d.test_x, d.test_y) > 0.9


def test_same_seed_and_config_give_identical_numbers():
    first = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2)[2]]
    second = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2)[2]]
    other_seed = [(h.train_loss, h.val_accuracy) for h in train(SMALL_CNN, epochs=2, seed=1)[2]]
    assert first == second
    assert first != other_seed


def test_inside_an_epoch_fit_tells_how_far_it_has_got_and_trains_the_same_numbers(monkeypatch):
    """BATCHES_EVERY_S set to 0 stands for a slow epoch: on_batches hears of every batch."""
    d = data.load(DatasetSpec("digits"), CPU)
    steps = len(d.train_y) // SMALL_CNN["batch_size"]

    def fitted(on_batches=None) -> list[tuple[float, float]]:
        torch.manual_seed(0)
        model = build_model(model_config(SMALL_CNN, d.shape, d.num_classes))
        history = fit(model, d, train_config(SMALL_CNN, epochs=2, seed=0), on_batches=on_batches)
        return [(h.train_loss, h.val_accuracy) for h in history]

    monkeypatch.setattr(train_module, "BATCHES_EVERY_S", 0.0)
    told = []
    numbers = fitted(told.append)
    assert [(b.epoch, b.done) for b in told] == [(epoch, i) for epoch in (1, 2) for i in range(1, steps + 1)]
    assert all(b.epochs == 2 and b.total == steps and b.batch_size == 64 and b.images_per_s > 0 for b in told)
    assert told[-1].projected_s == pytest.approx(told[-1].seconds)  # the last batch: projected is what it took
    assert numbers == fitted()
    monkeypatch.setattr(train_module, "BATCHES_EVERY_S", 3600.0)  # an epoch of digits takes far less
    told.clear()
    fitted(told.append)
    assert told == []


def test_absurd_learning_rate_raises_diverged_with_its_reason():
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) in epoch 1"):
        train({**SMALL_CNN, "batchnorm": False, "lr": 1e6, "optimizer": "sgd", "momentum": 0.0}, epochs=2)


def test_on_epoch_can_stop_training_early():
    class Stop(Exception):
        pass

    seen = []

    def on_epoch(stats):
        seen.append(stats.epoch)
        if stats.epoch == 2:
            raise Stop

    d = data.load(DatasetSpec("digits"), CPU)
    model = build_model(model_config(SMALL_CNN, d.shape, d.num_classes))
    with pytest.raises(Stop):
        fit(model, d, train_config(SMALL_CNN, epochs=5, seed=0), on_epoch)
    assert seen == [1, 2]


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [1.0, 1.0, 1.0, 1.0]),
    ("cosine", [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]),
    ("warmup_linear", [0.5, 1.0, 1.0, 0.5]),
])
def test_learning_rate_schedules(schedule, expected):
    got = [lr_factor(schedule, step, 4, 0.5) for step in range(4)]
    assert got == pytest.approx(expected)


# --- the speed-run recipes (issue 14): tta, ema, BatchNorm groups, alternating flip -------------

RECIPES = {**SMALL_CNN, "augment": "flip_crop", "flip": "alternating", "tta": "flip_translate", "ema": 0.8,
           "bn_bias_lr_scale": 8.0, "bn_weight_decay": False}


def untrained(params: dict, d) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(params, d.shape, d.num_classes)).eval()


def accuracy_of(logits: torch.Tensor, y: torch.Tensor) -> float:
    predicted = (logits.squeeze(1) > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
    return (predicted == y).sum().item() / len(y)


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) in {-1, 1}, the uncovered edge filled by reflection (numpy's pad)."""
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    h, w = x.shape[2:]
    return padded[:, :, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_tta_averages_the_logits_of_mirrored_and_shifted_copies(output):
    d = data.load(DatasetSpec("digits"), CPU)
    if output == "sigmoid":  # a single logit: two classes
        keep = {split: getattr(d, f"{split}_y") < 2 for split in ("train", "val")}
        d = replace(d, classes=d.classes[:2], **{f"{s}_{part}": getattr(d, f"{s}_{part}")[keep[s]]
                                                 for s in keep for part in ("x", "y")})
    model = untrained({**SMALL_CNN, "output": output}, d)
    with torch.no_grad():
        x = d.normalize(d.val_x)
        plain, mirrored = model(x), model(x.flip(3))
        both_ways = lambda images: (model(images) + model(images.flip(3))) / 2
        translated = both_ways(x) / 2 + (both_ways(shifted(x, 1, 1)) + both_ways(shifted(x, -1, -1))) / 4
    assert not torch.allclose(plain, mirrored)  # the model is not mirror-symmetric
    assert evaluate(model, d, d.val_x, d.val_y) == accuracy_of(plain, d.val_y)
    assert evaluate(model, d, d.val_x, d.val_y, tta="flip") == accuracy_of((plain + mirrored) / 2, d.val_y)
    assert evaluate(model, d, d.val_x, d.val_y, tta="flip_translate") == accuracy_of(translated, d.val_y)
    assert evaluate(model, d, d.val_x, d.val_y, tta="flip") != evaluate(model, d, d.val_x, d.val_y)
    assert not torch.allclose(translated, (plain + mirrored) / 2)


def test_every_epoch_validates_with_the_trial_s_tta():
    model, d, history = train({**SMALL_CNN, "tta": "flip"}, epochs=1)
    assert history[-1].val_accuracy == evaluate(model, d, d.val_x, d.val_y, tta="flip")
    assert history[-1].val_accuracy != evaluate(model, d, d.val_x, d.val_y)


def test_weight_average_moves_towards_the_live_weights_with_its_decay_and_averages_batchnorm_statistics():
    live = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    average = WeightAverage(live, decay=0.5)
    before = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        for tensor in (live[0].weight, live[1].bias, live[1].running_mean, live[1].running_var):
            tensor.add_(1.0)
    live[1].num_batches_tracked += 3
    average.update(step=0)  # the first update's decay is min(0.5, 1/10): mostly the live weights
    for key, value in average.model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == 3  # copied, not averaged
        else:
            assert torch.allclose(value, 0.1 * before[key] + 0.9 * live.state_dict()[key]), key
    later = {k: v.clone() for k, v in average.model.state_dict().items()}
    average.update(step=1000)  # then the decay itself
    assert torch.allclose(average.model[1].running_var, 0.5 * later["1.running_var"] + 0.5 * live[1].running_var)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_evaluates_and_keeps_the_averaged_weights_while_training_follows_the_live_ones():
    live_model, d, live = train(SMALL_CNN, epochs=2)
    ema_model, _, averaged = train({**SMALL_CNN, "ema": 0.9}, epochs=2)
    assert [h.train_loss for h in averaged] == [h.train_loss for h in live]  # the average never feeds back
    assert [h.val_accuracy for h in averaged] != [h.val_accuracy for h in live]
    live_state, ema_state = live_model.state_dict(), ema_model.state_dict()
    assert not torch.equal(live_state["0.weight"], ema_state["0.weight"])
    assert not torch.equal(live_state["1.running_mean"], ema_state["1.running_mean"])
    assert averaged[-1].val_accuracy == evaluate(ema_model, d, d.val_x, d.val_y)  # the model fit hands back


def test_a_killed_run_resumes_bit_exactly_with_its_weight_average_and_alternating_flips(tmp_path):
    class Killed(Exception):
        pass

    def kill_after_2(stats):
        if stats.epoch == 2:
            raise Killed

    d = data.load(DatasetSpec("digits"), CPU)
    cfg = train_config(RECIPES, epochs=3, seed=0)
    whole = untrained(RECIPES, d)
    expected = fit(whole, d, cfg)
    checkpoint = CheckpointFile(tmp_path / "trial.pt")
    with pytest.raises(Killed):
        fit(untrained(RECIPES, d), d, cfg, kill_after_2, checkpoint=checkpoint)
    saved = checkpoint.load()
    assert saved.epoch == 2 and saved.average is not None
    assert not torch.equal(saved.average["0.weight"], saved.model["0.weight"])
    resumed = untrained(RECIPES, d)
    numbers = lambda history: [(h.epoch, h.train_loss, h.val_accuracy) for h in history]
    assert numbers(fit(resumed, d, cfg, checkpoint=checkpoint)) == numbers(expected)
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))


def test_batchnorm_parameters_get_their_own_learning_rate_and_weight_decay():
    d = data.load(DatasetSpec("digits"), CPU)
    model = untrained(SMALL_CNN, d)  # 0: conv (no bias before BatchNorm), 1: BatchNorm, ... last: linear
    conv, bn, linear = model[0], model[1], model[-1]
    groups = lambda **settings: [(g["lr_scale"], g["weight_decay"], {id(p) for p in g["params"]})
                                 for g in make_optimizer(model, train_config(settings, epochs=1, seed=0), reused).param_groups]
    ids = lambda *params: {id(p) for p in params}
    reused = ()
    assert groups() == [(1.0, 5e-4, ids(*model.parameters()))]  # the default: one group, as before
    assert groups(bn_bias_lr_scale=64.0) == [(1.0, 5e-4, ids(conv.weight, bn.weight, *linear.parameters())),
                                            (64.0, 5e-4 / 64, ids(bn.bias))]
    assert groups(bn_bias_lr_scale=64.0, bn_weight_decay=False) == [
        (1.0, 5e-4, ids(conv.weight, *linear.parameters())), (1.0, 0.0, ids(bn.weight)),
        (64.0, 0.0, ids(bn.bias))]
    reused = ("0.weight", "1.weight", "1.bias")  # a transfer's reused layers: the ratio composes
    assert groups(bn_bias_lr_scale=64.0, pretrained=True, reused_lr_ratio=0.25) == [
        (1.0, 5e-4, ids(*linear.parameters())), (0.25, 5e-4, ids(conv.weight, bn.weight)),
        (16.0, 5e-4 / 64, ids(bn.bias))]


def test_fit_steps_each_group_at_its_scaled_learning_rate():
    d = data.load(DatasetSpec("digits"), CPU)
    params = {**SMALL_CNN, "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant",
              "augment": "none", "batch_size": 256}
    moved = {}
    for scale in (1.0, 1000.0):
        model = untrained(params, d)
        start = model[1].bias.detach().clone()
        fit(model, d, train_config({**params, "bn_bias_lr_scale": scale}, epochs=1, seed=0))
        moved[scale] = (model[1].bias.detach() - start).abs().sum().item()
    assert moved[1000.0] > 50 * moved[1.0]


def test_alternating_flip_mirrors_each_image_on_every_other_epoch_through_the_shuffle():
    d = data.load(DatasetSpec("digits"), CPU)
    n = len(d.train_y)
    images = torch.randint(0, 256, d.train_x.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    d = replace(d, train_x=images, train_y=torch.arange(n))  # the label names the image
    mirrored = {}
    for flip in ("alternating", "random"):
        cfg, generator = train_config({"augment": "flip", "flip": flip}, epochs=3, seed=0), torch.Generator().manual_seed(0)
        mirrored[flip] = []
        for epoch in (1, 2, 3):
            x, ids = epoch_images(d, cfg, epoch, generator)
            assert not torch.equal(ids, torch.arange(n))  # shuffled
            flipped = (x == images[ids].flip(3)).flatten(1).all(1)
            assert torch.equal(flipped | (x == images[ids]).flatten(1).all(1), torch.ones(n, dtype=torch.bool))
            mirrored[flip].append(torch.empty(n, dtype=torch.bool).index_put_((ids,), flipped))
    first, second, third = mirrored["alternating"]
    assert 0.4 < first.float().mean() < 0.6
    assert torch.equal(second, ~first) and torch.equal(third, first)
    first, second, _ = mirrored["random"]
    assert 0.4 < (first == second).float().mean() < 0.6


def test_lr_per_1024_scales_the_learning_rate_with_the_batch_size():
    assert train_config({"lr_per_1024": 0.4, "batch_size": 256}, epochs=1, seed=0).lr == 0.1
    assert train_config({"lr_per_1024": 0.4, "batch_size": 32}, epochs=1, seed=0).lr == 0.4 * 32 / 1024
    assert "lr" not in P.complete({"lr_per_1024": 0.4})  # replaced: not recorded as if it counted
    assert train_config({"lr": 0.3}, epochs=1, seed=0).lr == 0.3


def test_the_recipes_stay_bit_reproducible_on_the_cpu():
    runs = [train(RECIPES, epochs=epochs, seed=seed) for seed, epochs in ((0, 2), (0, 2), (1, 1))]
    numbers = [[(h.train_loss, h.val_accuracy) for h in history] for _, _, history in runs]
    assert numbers[0] == numbers[1] and numbers[0][0] != numbers[2][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()))
