"""`hpsearch report --out DIR`: the Markdown table, four real PNG plots and an index page showing them."""

from __future__ import annotations

import optuna
from click.testing import CliRunner
from optuna.distributions import FloatDistribution, IntDistribution
from PIL import Image

from hpsearch import report
from hpsearch.cli import main
from test_cli import assert_clean_error

PLOTS = ("history.png", "intermediate.png", "importances.png", "parallel.png")


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
            intermediate_values={1: 0.4 + i / 10, 2: 0.5 + i / 10}))
    written = report.write_directory(study, out=tmp_path / "rep")
    assert written == ["report.md", *PLOTS, "index.html"]
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Read with care: this plot rests on 4 completed searched trials; below 20 the importances" in page
    assert "a line through its values of lr, coloured by validation accuracy; width had one value in every " \
           "completed trial: no axis." in page
