"""Prior knowledge the sampler learns from: another study's trials copied by warm_start: where they lie in the
space (counted nowhere), and baselines that lie in it recorded at their point of it."""

from __future__ import annotations

import re

import optuna
from optuna.search_space import intersection_search_space
from optuna.trial import TrialState

from hpsearch.results import ranking, timing
from hpsearch.results.trials import summarize
from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.schema import load_spec
from tests.helpers import POSTGRES, assert_clean_error, invoke, needs_postgres

NARROW = {"width": {"int": [4, 10]}, "lr": {"float": [0.01, 0.2], "log": True}}  # the tiny study's, width cut


def copied(study):
    return [t for t in study.trials if "warm_start" in t.user_attrs]


def test_a_new_study_starts_with_the_other_study_s_trials_that_lie_in_its_space(write_study, storage):
    source = run(load_spec(write_study("source.yaml", name="source", budget={"epochs": 2, "trials": 6})), storage,
                 RunOptions(device="cpu"))
    fitting = [t for t in source.trials if t.params["width"] <= 10]
    assert fitting and len(fitting) < len(source.trials)
    spec = load_spec(write_study(name="warm", space=NARROW, budget={"epochs": 2, "trials": 2},
                                 sampler={"name": "tpe", "seed": 0, "n_startup_trials": len(fitting) + 1},
                                 warm_start={"study": "source"}))
    study = run(spec, storage, RunOptions(device="cpu"))
    copies, own = copied(study), [t for t in study.trials if "warm_start" not in t.user_attrs]
    assert [(c.params, c.value) for c in copies] == [(t.params, t.value) for t in fitting]
    assert [c.user_attrs["warm_start"] for c in copies] == [{"study": "source", "trial": t.number} for t in fitting]
    assert all(c.distributions["width"] == optuna.distributions.IntDistribution(4, 10) for c in copies)
    # One start-up draw was left to queue (the copies count for the sampler), then TPE drew the second trial.
    assert len(own) == 2 and own[0].params != own[1].params
    assert "fixed_params" in own[0].system_attrs and "fixed_params" not in own[1].system_attrs

    summary = summarize(study)  # the copies are counted apart, and in nothing else
    assert summary["trials"] == summary["complete"] + summary["pruned"] == 2
    assert summary["warm_start"] == {"trials": len(copies), "from": ["source"]}
    assert ranking.best_trial(study.trials) in own and not any(ranking.counts(c) for c in copies)
    assert sum(timing.pace(study.trials, spec).counts.values()) == 2

    held = len(study.trials)
    again = run(spec, storage, RunOptions(device="cpu", n_trials=1))  # copied once, when the study began
    assert len(copied(again)) == len(copies) and len(again.trials) == held + 1


def test_a_warm_start_from_nowhere_or_another_dataset_is_refused_before_anything_is_made(write_study, storage):
    run(load_spec(write_study("source.yaml", name="source", budget={"epochs": 1, "trials": 1})), storage,
        RunOptions(device="cpu"))
    missing = write_study(name="warm", warm_start={"study": "nowhere"})
    assert_clean_error(invoke("run", "--study", str(missing), "--storage", storage, "--device", "cpu"),
                       "warm_start: no study named 'nowhere' in sqlite:///", "(studies there: source;")
    fashion = write_study(name="warm", dataset={"name": "fashion-mnist"}, warm_start={"study": "source"})
    assert_clean_error(invoke("run", "--study", str(fashion), "--storage", storage, "--device", "cpu"),
                       "warm_start: study 'source' in sqlite:///", "was made for dataset digits, this study is on "
                                                                   "fashion-mnist")
    assert optuna.get_all_study_names(storage) == ["source"]


@needs_postgres
def test_a_warm_start_storage_s_password_is_never_shown(write_study, storage):
    wrong = re.sub(r"://([^:@/]+)(:[^@]*)?@", r"://\1:hunter2-secret@", POSTGRES, count=1)
    path = write_study(name="warm", warm_start={"study": "source", "storage": wrong})
    result = invoke("run", "--study", str(path), "--storage", storage, "--device", "cpu")
    assert_clean_error(result, "warm_start: ")
    assert "hunter2-secret" not in result.output


LIES_IN_SPACE = {  # seed003-3block is the point lr 0.001, batch_size 4 of this space
    "space": {"lr": {"float": [0.0005, 0.5], "log": True}, "batch_size": {"choice": [4, 64]}},
    "fixed": {"blocks": 3, "convs_per_block": 2, "widths": [32, 64, 128], "kernel_size": 3, "padding": "same",
              "pool": "max", "pool_size": 2, "head_widths": [], "optimizer": "sgd", "momentum": 0.9,
              "batchnorm": False, "schedule": "constant", "weight_decay": 0.0, "augment": "none"}}


def test_a_baseline_that_lies_in_the_space_is_an_observation_the_sampler_learns_from(write_study, storage):
    spec = load_spec(write_study(**LIES_IN_SPACE, budget={"epochs": 1, "trials": 3},
                                 baselines=["seed003-3block", "seed002-cnn-q9"]))
    study = run(spec, storage, RunOptions(device="cpu"))
    by_name = {t.user_attrs.get("baseline"): t for t in study.trials}
    observed = by_name["seed003-3block"]
    assert observed.state == TrialState.COMPLETE and observed.params == {"lr": 0.001, "batch_size": 4}
    assert observed.distributions == by_name[None].distributions  # the space's, as a sampled trial's
    assert by_name["seed002-cnn-q9"].params == {}  # 128 filters and dropout: no point of this space
    # TPE's joint search space: the sampled trial and the observed baseline share it; q9 takes it away.
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert set(intersection_search_space([by_name[None], observed], include_pruned=True)) == {"lr", "batch_size"}
    assert intersection_search_space(finished, include_pruned=True) == {}

    # Copied into another study, the baseline is an observation there, not its baseline: that one runs its own.
    warm = load_spec(write_study(name="warm", **LIES_IN_SPACE, budget={"epochs": 1, "trials": 1},
                                 baselines=["seed003-3block"], warm_start={"study": "tiny-digits"}))
    study = run(warm, storage, RunOptions(device="cpu"))
    copy = next(t for t in copied(study) if t.params == observed.params)
    assert "baseline" not in copy.user_attrs and copy.value == observed.value
    assert [t.user_attrs.get("baseline") for t in study.trials if t not in copied(study)] == ["seed003-3block"]
