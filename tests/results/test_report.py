"""`hpsearch report --out DIR`: the Markdown table, four real PNG plots and an index page showing them."""

from __future__ import annotations

import datetime

import optuna
from click.testing import CliRunner
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import get_note
from PIL import Image
from test_cli import assert_clean_error

from hpsearch.cli import main
from hpsearch.results import dashboard, ranking, report, timing
from hpsearch.studyfile.types import Limits

PLOTS = ("pareto.png", "history.png", "intermediate.png", "importances.png", "parallel.png")


def test_a_report_folder_holds_the_table_the_plots_and_an_index(shared_study, tmp_path):
    url, _, _ = shared_study
    result = CliRunner().invoke(main, ["report", "--study", "shared-digits", "--storage", url, "--out", "rep"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "rep"
    assert (out / "report.md").read_text() == result.stdout
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 15_000, (name, len(data))
        with Image.open(out / name) as image:
            image.verify()
            assert image.width >= 500 and image.height >= 300, (name, image.size)
    page = (out / "index.html").read_text()
    assert all(f'src="{name}"' in page for name in PLOTS)
    assert "<th>val acc</th>" in page and "searched #1" in page and "Not drawn" not in page


def test_plots_a_young_study_cannot_support_are_skipped_with_the_reason(write_study, storage, tmp_path):
    path = str(write_study(budget={"epochs": 1, "trials": 1}))
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--study", path, "--storage", storage, "--keep-weights", "0"]).exit_code == 0
    result = runner.invoke(main, ["report", "--study", path, "--storage", storage, "--out", "rep"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "history.png").is_file() and not (tmp_path / "rep" / "importances.png").exists()
    assert "Not drawn: needs two completed searched trials, the study has 1." in (tmp_path / "rep" / "index.html").read_text()
    (tmp_path / "taken").write_text("")
    assert_clean_error(runner.invoke(main, ["report", "--study", path, "--storage", storage, "--out", "taken"]),
                       "a file of that name exists")


def test_a_study_whose_trials_all_failed_gets_a_report_that_says_so(write_study, storage, tmp_path):
    path = str(write_study(space={"lr": {"choice": [100.0]}}, budget={"epochs": 2, "trials": 2},
                           fixed={"blocks": 1, "convs_per_block": 1, "width": 8, "batchnorm": False,
                                  "optimizer": "sgd", "momentum": 0.0}))
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--study", path, "--storage", storage, "--device", "cpu"]).exit_code == 1
    result = runner.invoke(main, ["report", "--study", path, "--storage", storage, "--out", "rep"])
    assert result.exit_code == 0, result.output
    said = "No trial completed: every trial failed (2); the most common reason (2 of 2): training loss became"
    assert said in result.stdout and said in (tmp_path / "rep" / "index.html").read_text()
    assert not list((tmp_path / "rep").glob("*.png"))
    assert "Not drawn: every trial failed (2 of 2)." in (tmp_path / "rep" / "index.html").read_text()


def test_importances_on_few_trials_say_so_and_a_constant_parameter_gets_no_axis(storage, tmp_path):
    study = optuna.create_study(study_name="few", storage=storage, direction="maximize")
    dists = {"lr": FloatDistribution(0.01, 0.2, log=True), "width": IntDistribution(4, 16)}
    for i, lr in enumerate((0.01, 0.03, 0.08, 0.15)):
        study.add_trial(optuna.trial.create_trial(
            value=0.5 + i / 10, params={"lr": lr, "width": 8}, distributions=dists,
            intermediate_values={1: 0.4 + i / 10, 2: 0.5 + i / 10},
            user_attrs={"param_count": 1_000 * (i + 1), "train_seconds": 1.0 + i}))
    written = report.write_directory(study, out=tmp_path / "rep")
    assert written == ["report.md", *PLOTS, "index.html"]
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Read with care: this plot rests on 4 completed searched trials; below 20 the importances" in page
    assert "a line through its values of lr, coloured by validation accuracy; width had one value in every " \
           "completed trial: no axis." in page


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


def ended(number: int, run: str, start_s: float, end_s: float, state: TrialState, value: float | None = None):
    """A trial of run `run` that ran from start_s to end_s seconds after a fixed instant, with those seconds."""
    t0 = datetime.datetime(2026, 1, 1)
    return FrozenTrial(number=number, state=state, value=value, values=None, trial_id=number,
                       datetime_start=t0 + datetime.timedelta(seconds=start_s),
                       datetime_complete=t0 + datetime.timedelta(seconds=end_s), params={}, distributions={},
                       user_attrs={"run": run, "seconds": end_s - start_s}, system_attrs={}, intermediate_values={})


def test_time_to_target_counts_the_runs_time_not_the_gap_between_them(storage, write_study):
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(write_study(target={"metric": "val_accuracy", "value": 0.9}))
    study = optuna.create_study(study_name="timed", storage=storage, direction="maximize")
    day = 86_400
    for trial in (ended(0, "a", 0, 10, TrialState.COMPLETE, 0.5), ended(1, "a", 10, 20, TrialState.PRUNED),
                  ended(2, "a", 20, 30, TrialState.FAIL), ended(3, "b", day, day + 10, TrialState.COMPLETE, 0.95),
                  ended(4, "b", day + 10, day + 30, TrialState.COMPLETE, 0.96)):
        study.add_trial(trial)
    assert timing.lines(timing.pace(study.get_trials(), spec)) == [
        "Time to target (val_accuracy >= 90.00%): reached by searched trial #3 after 40.0 s wall time and 40.0 s of training "
        "(device-seconds); 4 trials until then (2 complete, 1 pruned, 1 failed).",
        "Pace: 4 finished trials in 60.0 s wall time, 240 finished trials per hour."]
    markdown = report.markdown(study, spec=spec)
    assert "## Time to target\n\n- Time to target (val_accuracy >= 90.00%): reached by searched trial #3 after 40.0 s" \
        in markdown
    assert timing.lines(timing.pace(study.get_trials(), None))[0].startswith(
        "Time to target (target unknown (give the study file as --study)): 60.0 s wall time")


def test_a_baseline_that_meets_the_target_is_noted_and_the_search_still_has_to_reach_it(storage, write_study):
    from hpsearch.studyfile.schema import load_spec

    spec = load_spec(write_study(target={"metric": "test_accuracy", "value": 0.9}))
    study = optuna.create_study(study_name="timed", storage=storage, direction="maximize")
    first = ended(0, "a", 0, 10, TrialState.COMPLETE, 0.95)
    first.user_attrs.update(baseline="seed002-cnn-q9", test_accuracy=0.9917)
    second = ended(1, "a", 10, 30, TrialState.COMPLETE, 0.93)
    second.user_attrs.update(test_accuracy=0.93)
    for trial in (first, second):
        study.add_trial(trial)
    assert timing.lines(timing.pace(study.get_trials(), spec))[:2] == [
        "Time to target (test_accuracy >= 90.00%): reached by searched trial #1 after 30.0 s wall time and 30.0 s of "
        "training (device-seconds); 2 trials until then (2 complete, 0 pruned, 0 failed).",
        "Baseline seed002-cnn-q9 already meets the target: test 99.17%."]


def test_a_run_ends_with_its_time_to_target_and_writes_the_dashboard_note(write_study, storage):
    path = str(write_study(budget={"epochs": 2, "trials": 2}, target={"metric": "val_accuracy", "value": 0.3}))
    result = CliRunner().invoke(main, ["run", "--study", path, "--storage", storage, "--device", "cpu",
                                       "--keep-weights", "0", "--no-stop-at-target"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny-digits", storage=storage)
    first = study.trials[0]
    line = (f"Time to target (val_accuracy >= 30.00%): reached by searched trial #0 after "
            f"{timing.duration((first.datetime_complete - first.datetime_start).total_seconds())} wall time and "
            f"{timing.duration(first.user_attrs['seconds'])} of training (device-seconds); 1 trial until then "
            "(1 complete, 0 pruned, 0 failed).")
    assert line in result.stdout and "Pace: 2 finished trials in " in result.stdout
    note = get_note(study)
    assert note.startswith("# tiny-digits: baselines and best searched trials, 2 epochs a trial")
    assert "| #0 | searched #" in note and line in note and note.endswith(dashboard.NOTE_END)
    dashboard.write_note(study, "# rewritten")  # what a person wrote below the line stays
    from optuna_dashboard import save_note
    save_note(study, get_note(study) + "\nmy own remark")
    dashboard.write_note(study, "# again")
    assert get_note(study) == f"# again\n\n---\n{dashboard.NOTE_END}\nmy own remark"
