"""`hpsearch report`: the baselines-versus-search table, and with --out DIR the Markdown, real PNG plots and an
index page showing them."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import optuna
from click.testing import CliRunner
from markdown_it import MarkdownIt
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState
from optuna_dashboard import get_note
from PIL import Image

from hpsearch.cli import main
from hpsearch.results import report
from tests.helpers import assert_clean_error

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


def test_report_shows_finished_and_pending_baselines_and_the_best_searched(write_study, storage, tmp_path):
    path = write_study(baselines=["seed002-cnn-q9", "seed002-fc"], budget={"epochs": 2, "trials": 1})
    runner = CliRunner()
    assert runner.invoke(main, ["run", "--study", str(path), "--storage", storage]).exit_code == 0
    result = runner.invoke(main, ["report", "--study", str(path), "--storage", storage, "--out", "r.md"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "r.md").read_text().splitlines()
    q9 = next(line for line in lines if "seed002-cnn-q9" in line)
    fc = next(line for line in lines if "seed002-fc" in line)
    assert "78.20% test on cifar10" in q9 and "| 128,490 | 2 |" in q9 and "%" in q9.split("|")[5]
    assert "| pending | pending |" in fc and "0.00%" not in fc
    assert result.stdout == (tmp_path / "r.md").read_text()
    runner.invoke(main, ["run", "--study", str(path), "--storage", storage, "--n-trials", "2"])
    table = runner.invoke(main, ["report", "--study", str(path), "--storage", storage]).stdout
    assert "pending" not in table and "searched #1" in table


def test_a_two_objective_study_gets_its_report(front_study, tmp_path):
    url, path, _ = front_study
    result = CliRunner().invoke(main, ["report", "--study", str(path), "--storage", url, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert {"report.md", "history.png", "intermediate.png"} <= {p.name for p in (tmp_path / "r").iterdir()}


# Markdown, HTML, mathtext (an invalid one too), rich markup and an emoji code, in a name a study file allows.
HOSTILE_NAME = "<script>alert(1)</script> | *bold* _em_ $x^2$ `code` $a^$ [/x] [b]:smile:&amp;"
HOSTILE_REASON = "bad | <img src=x onerror=alert(1)>\n# forged *x*"


def start_tags(page: str) -> list[tuple[str, dict]]:
    found = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: found.append((tag, dict(attrs)))
    parser.feed(page)
    return found


def test_a_hostile_study_name_and_failure_reason_read_as_they_are_everywhere(write_study, storage, tmp_path):
    """report.md, the dashboard note, index.html, the plots and the terminal of a study whose name and a failure
    reason are Markdown, HTML, mathtext and rich markup: each shows them as they read, none runs them, nothing
    raises."""
    path = str(write_study(name=HOSTILE_NAME, budget={"epochs": 1, "trials": 2}))
    runner = CliRunner()
    run = ["run", "--study", path, "--storage", storage, "--device", "cpu", "--keep-weights", "0", "--n-trials", "1"]
    assert runner.invoke(main, run).exit_code == 0
    optuna.load_study(study_name=HOSTILE_NAME, storage=storage).add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, user_attrs={"baseline": "<b>x</b>|y", "failure": HOSTILE_REASON}))
    ran = runner.invoke(main, run)  # which writes the dashboard note again
    assert ran.exit_code == 0, ran.output
    assert f"study {HOSTILE_NAME} (1 epoch a trial" in ran.stderr  # the run's header: not read as rich markup
    assert f"study {HOSTILE_NAME}: 3 trials" in ran.stdout
    result = runner.invoke(main, ["report", "--study", path, "--storage", storage, "--out", "rep"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    out = tmp_path / "rep"
    title = f"{HOSTILE_NAME}: baselines and best searched trials, 1 epoch a trial"
    renderer = MarkdownIt("commonmark").enable(["table", "strikethrough"])

    for markdown in ((out / "report.md").read_text(), get_note(optuna.load_study(study_name=HOSTILE_NAME,
                                                                                    storage=storage))):
        rendered = renderer.render(markdown)
        assert html.unescape(re.search(r"<h1>(.*?)</h1>", rendered)[1]) == title
        rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
        assert rows and all(len(re.findall(r"<t[hd]>", row)) == 9 for row in rows)
        tags = {tag for tag, _ in start_tags(rendered)}
        assert tags <= {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "hr", "em"}
        assert "em" not in {tag for tag, _ in start_tags(rendered.partition("<hr")[0])}  # the note's footer only
    table = renderer.render((out / "report.md").read_text())
    cells = [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", table)]
    assert "<b>x</b>|y" in cells and "fail: " + HOSTILE_REASON.replace("\n", "\\n") in cells

    page = (out / "index.html").read_text()
    tags = start_tags(page)
    assert "script" not in {tag for tag, _ in tags} and "b" not in {tag for tag, _ in tags}
    assert {attrs["src"] for tag, attrs in tags if tag == "img"} <= set(PLOTS)
    assert html.unescape(re.search(r"<title>(.*?)</title>", page)[1]) == HOSTILE_NAME
    drawn = [name for name in PLOTS if (out / name).is_file()]
    assert {"pareto.png", "history.png", "intermediate.png"} <= set(drawn)
    for name in drawn:
        with Image.open(out / name) as image:
            image.verify()


def test_the_report_names_the_best_trial_and_how_it_was_chosen_and_a_winning_baseline_as_one(storage):
    from hpsearch.results.report import markdown
    from tests.helpers import stored_trial

    study = optuna.create_study(study_name="beaten", storage=storage, direction="maximize")
    study.add_trial(stored_trial(0.95, {"lr": 0.1}))
    study.add_trial(stored_trial(0.97, {}, baseline="seed003-tricks"))
    text = markdown(study)
    assert ("Best: trial #1, baseline seed003-tricks (a hand-made model of the reports, not a searched one), the "
            "highest validation accuracy of all completed trials, baselines included (of equal accuracies, the "
            "earliest). The best searched trial is #0 (val 95.00%).") in text
    study.add_trial(stored_trial(0.97, {"lr": 0.05}))  # as good as the baseline, later: the baseline stays best
    assert "Best: trial #1, baseline" in markdown(study)
    study.add_trial(stored_trial(0.99, {"lr": 0.07}))
    assert "Best: trial #3, the highest validation accuracy" in markdown(study)
