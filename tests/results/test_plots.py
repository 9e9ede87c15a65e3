"""A study's PNG plots: the front plot with baselines named, limits drawn, over-limit trials off the front."""

from __future__ import annotations

import matplotlib.pyplot as plt
import optuna
from PIL import Image

from hpsearch.results import report
from hpsearch.studyfile.types import Limits


def drawn(ax) -> dict[str, list[tuple[float, float]]]:
    """What a panel shows: each labelled scatter's and line's points, by label, and each annotation's text."""
    shown = {c.get_label(): [tuple(p) for p in c.get_offsets().tolist()] for c in ax.collections}
    shown |= {line.get_label(): [tuple(p) for p in line.get_xydata().tolist()] for line in ax.get_lines()}
    return shown | {f"text {t.get_text()}": [tuple(t.xy)] for t in ax.texts}


def test_the_front_plot_names_baselines_draws_limits_and_leaves_over_limit_trials_off_the_front(storage, tmp_path):
    from hpsearch.results import plots

    study = optuna.create_study(study_name="sizes", storage=storage, direction="maximize")
    points = [  # (val accuracy, parameters, seconds, baseline, over the parameter limit)
        (0.90, 2_000, 1.0, None, False), (0.95, 20_000, 2.0, None, False), (0.93, 50_000, 0.8, None, False),
        (0.97, 900_000, 9.0, None, True), (0.80, 5_000, 3.0, "seed001-cnn", False), (0.94, 40_000, 4.0, None, False)]
    for value, count, seconds, baseline, over in points:
        attrs = {"param_count": count, "train_seconds": seconds, **({"baseline": baseline} if baseline else {})}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs,
                                                  constraints={"params": 1.0 if over else -1.0}))
    figure = plots._pareto(study, Limits(params=100_000, train_seconds=5)).figure
    by_size, by_time = (drawn(ax) for ax in figure.axes)
    assert by_size == {
        "searched trial (4)": [(2_000, 0.90), (20_000, 0.95), (50_000, 0.93), (40_000, 0.94)],
        "over a limit (1)": [(900_000, 0.97)],  # the most accurate trial, off the front and never the best
        "baseline": [(5_000, 0.80)], "text seed001-cnn": [(5_000, 0.80)],
        "Pareto front (2)": [(2_000, 0.90), (20_000, 0.95)],
        "best (trial #1)": [(20_000, 0.95)],
        "limit: 100,000 parameters": [(100_000, 0.0), (100_000, 1.0)]}  # axvline: axis coordinates in y
    assert by_time["Pareto front (2)"] == [(0.8, 0.93), (2.0, 0.95)]
    assert by_time["limit: 5 s"] == [(5, 0.0), (5, 1.0)]
    assert figure.get_suptitle() == "sizes: validation accuracy against size and training time (6 completed trials)"
    plt.close(figure)

    report.write_directory(study, out=tmp_path / "rep", spec=None)  # the report draws it too, as a whole PNG
    with Image.open(tmp_path / "rep" / "pareto.png") as image:
        assert image.format == "PNG" and image.width >= 1200 and image.height >= 500, image.size


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
