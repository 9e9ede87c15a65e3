"""A finished benchmark run's study read back: hpsearch's summary, and the time to its target.

Shared by gpu_suite.py (whose machine installs hpsearch only once its setup stage has run, hence the imports
inside the functions) and time_to_target.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path


def stored_study(storage: Path, name: str | None = None):
    """The study `name` (None: the first) in an SQLite file, or None where a run stopped before making it."""
    import optuna

    url = f"sqlite:///{storage}"
    names = optuna.get_all_study_names(url) if storage.is_file() else []
    name = name or next(iter(names), None)
    return optuna.load_study(study_name=name, storage=url) if name in names else None


def study_summary(storage: Path, name: str | None = None) -> dict:
    """hpsearch's own summary (counts by state, the best trial) of a study in an SQLite file, with its
    finished trials per hour."""
    from hpsearch.results.trials import FINISHED, summarize

    study = stored_study(storage, name)
    if study is None:
        return {"trials": 0}
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.datetime_complete]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds() if done else 0
    finished = sum(t.state in FINISHED for t in trials)
    return {**summarize(study), "finished_per_hour": round(finished * 3600 / span, 1) if span else None}


def time_to_target(storage: Path, study_arg: str, started: float) -> dict:
    """Wall time from the command's start (`started`, time.time()) to the end of the first sampled trial that met
    the study's target, and what ran until then. A baseline meeting it does not count, as it does not stop the
    run: which baselines met it is recorded apart."""
    from hpsearch.record import keys as A
    from hpsearch.results.trials import first_reaching, is_baseline, meets_target, target_metric
    from hpsearch.studyfile.catalog import load_study_spec

    spec = load_study_spec(study_arg)
    study = stored_study(storage, spec.name)
    if study is None:
        return {"trials": 0}
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    summary = {**study_summary(storage, spec.name), "target": spec.describe_target(),
               "baselines_at_target": [{"baseline": t.user_attrs[A.BASELINE], "trial": t.number,
                                        "val_accuracy": target_metric(t, "val_accuracy"),
                                        "test_accuracy": t.user_attrs.get(A.TEST_ACCURACY)}
                                       for t in done if is_baseline(t) and meets_target(t, spec)]}
    reached = first_reaching(done, spec)  # sampled trials only: a baseline does not stop the run
    if reached is None:
        return {**summary, "reached": False}
    until = [t for t in done if t.datetime_complete <= reached.datetime_complete]
    return {**summary, "reached": True, "trial": reached.number, "trial_params": reached.params,
            "trial_val_accuracy": target_metric(reached, "val_accuracy"),
            "trial_test_accuracy": reached.user_attrs.get(A.TEST_ACCURACY),
            "trial_epochs": reached.user_attrs.get(A.EPOCHS_TRAINED), "trial_param_count": reached.user_attrs.get(A.PARAM_COUNT),
            "wall_s_to_target": round((reached.datetime_complete
                                       - datetime.datetime.fromtimestamp(started)).total_seconds(), 1),
            "trials_until_then": {state: sum(t.state.name.lower() == state for t in until)
                                  for state in ("complete", "pruned", "fail")}}
