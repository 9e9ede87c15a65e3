"""`hpsearch report --out DIR`: the Markdown table, four real PNG plots and an index page showing them."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

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
