"""A study's PNG plots: the front plot with baselines named, limits drawn, over-limit trials off the front."""

from __future__ import annotations

import optuna
from PIL import Image

from hpsearch.results import ranking, report
from hpsearch.studyfile.types import Limits


def test_the_front_plot_names_baselines_draws_limits_and_leaves_over_limit_trials_off_the_front(storage, tmp_path):
    study = optuna.create_study(study_name="sizes", storage=storage, direction="maximize")
    points = [  # (val accuracy, parameters, seconds, baseline, over the parameter limit)
        (0.90, 2_000, 1.0, None, False), (0.95, 20_000, 2.0, None, False), (0.93, 50_000, 0.8, None, False),
        (0.97, 900_000, 9.0, None, True), (0.80, 5_000, 3.0, "seed001-cnn", False), (0.94, 40_000, 4.0, None, False)]
    for value, count, seconds, baseline, over in points:
        attrs = {"param_count": count, "train_seconds": seconds, **({"baseline": baseline} if baseline else {})}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs,
                                                  constraints={"params": 1.0 if over else -1.0}))
    trials = study.get_trials()
    assert [t.number for t in ranking.front(trials, against="params")] == [1, 0]
    assert [t.number for t in ranking.front(trials, against="train_seconds")] == [1, 2]
    report.write_directory(study, out=tmp_path / "rep", spec=None)
    data = (tmp_path / "rep" / "pareto.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 30_000
    with Image.open(tmp_path / "rep" / "pareto.png") as image:
        assert image.width >= 1200 and image.height >= 500, image.size
    from hpsearch.results import plots  # the limits of a study file are drawn too
    assert [p.file for p in plots.write_plots(study, tmp_path / "limits", Limits(params=100_000, train_seconds=5))
            if not p.skipped][0] == "pareto.png"


def test_trials_copied_from_another_study_are_drawn_in_no_plot_and_the_others_keep_their_numbers(tmp_path,
                                                                                                monkeypatch):
    from hpsearch.results import plots

    study = optuna.create_study(direction="maximize")
    for value, attrs in ((0.99, {"warm_start": {"study": "other", "trial": 4}}), (0.6, {}), (0.7, {})):
        study.add_trial(optuna.trial.create_trial(value=value, params={"lr": value / 10},
                                                  distributions={"lr": optuna.distributions.FloatDistribution(0, 1)},
                                                  user_attrs={"param_count": 10, "train_seconds": 1.0, **attrs}))
    drawn = []
    history = plots.optuna_plots.plot_optimization_history
    monkeypatch.setattr(plots.optuna_plots, "plot_optimization_history",
                        lambda seen, **kw: drawn.append(seen.get_trials()) or history(seen, **kw))
    assert not any(p.skipped for p in plots.write_plots(study, tmp_path / "plots") if p.file == "history.png")
    (trials,) = drawn
    assert [(t.number, t.state.name, t.value) for t in trials] == [(0, "FAIL", None), (1, "COMPLETE", 0.6),
                                                                   (2, "COMPLETE", 0.7)]
