"""A trial whose model does not fit in the machine's memory fails alone, with its reason, and the study goes on."""

from __future__ import annotations

from optuna.trial import TrialState

from hpsearch.search.run import RunOptions, run
from hpsearch.studyfile.params import stored_params
from hpsearch.studyfile.schema import load_spec

# Two hidden layers of a million units: 10^12 weights, 4 TB of float32, which no CPU allocator grants.
TOO_BIG = [1_000_000, 1_000_000]


def test_a_model_larger_than_memory_fails_its_trial_only(write_study, storage):
    spec = load_spec(write_study(
        budget={"epochs": 1, "trials": 3},
        space={"head_widths": {"choice": [TOO_BIG, [16]]}},
        fixed={"blocks": 1, "convs_per_block": 1, "width": 4, "batch_size": 64}))
    study = run(spec, storage, RunOptions(device="cpu", n_trials=3, seed=0))
    widths = [stored_params(t.params)["head_widths"] for t in study.trials]
    assert widths == [[16], TOO_BIG, [16]]  # the seeded sampler's order: the one after the failure runs too
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = study.trials[1]
    assert failed.user_attrs["failure"].startswith("out of memory on the CPU (")
    assert "GiB asked at once; batch_size 64); memory freed, the study goes on" in failed.user_attrs["failure"]
