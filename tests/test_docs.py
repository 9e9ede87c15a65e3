"""The docs: the generated reference lists everything the code knows, every `hpsearch` command the README
and the docs show is one the CLI accepts, and the site builds with `mkdocs build --strict` (where
mkdocs is installed; CI installs the `docs` extra and builds it too)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from hpsearch.cli import main
from hpsearch.studyfile import catalog
from hpsearch.studyfile.baselines import BASELINES
from hpsearch.studyfile.components import PRUNERS, SAMPLERS
from hpsearch.studyfile.families import FAMILIES
from hpsearch.studyfile.params import PARAMS
from hpsearch.studyfile.types import DATASETS

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def _study_file_page() -> str:
    return hooks.expand((ROOT / "docs" / "reference" / "study-file.md").read_text())


def test_the_study_file_reference_lists_every_parameter_dataset_family_sampler_pruner_and_baseline():
    page = _study_file_page()
    for names, row in ((PARAMS, "<span id=\"{}\">`{}`</span>"), (DATASETS.values(), "| `{}` |"),
                       (FAMILIES.values(), "| `{}` |"), (SAMPLERS.values(), "| `{}` |"),
                       (PRUNERS.values(), "| `{}` |"), (BASELINES.values(), "| `{}` |")):
        missing = [n.name for n in names if row.format(n.name, n.name) not in page]
        assert not missing, f"not in the generated reference: {missing}"


def test_the_reference_lists_every_shipped_study_with_its_file():
    page = _study_file_page()
    for path in catalog.shipped_study_files():
        assert f"| `{path.stem}` |" in page and f"### {path.stem}\n" in page


def test_the_command_reference_holds_every_commands_help():
    page = hooks.expand((ROOT / "docs" / "reference" / "commands.md").read_text())
    ctx = click.Context(main, info_name="hpsearch")
    for name in hooks.command_names():
        assert f"## {name}\n\n```text\nUsage: hpsearch {name} [OPTIONS]" in page
        for option in main.get_command(ctx, name).params:
            if isinstance(option, click.Option) and not option.hidden:
                assert option.opts[-1] in page, f"{name}: {option.opts[-1]} missing"


def test_every_page_expands_and_every_benchmark_result_has_a_section():
    for page in PAGES:
        hooks.expand(page.read_text())  # an unknown marker raises
    page = hooks.benchmarks()
    for path in (ROOT / "bench" / "results").glob("*.json"):
        assert f"### {path.stem}\n" in page and "**command**" in page


def test_the_readme_keeps_the_install_and_test_commands_ci_runs_and_stays_short():
    """.ci/run takes the first `$ pip install ...` and `$ pytest ...` lines of the README and runs them."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert [line for line in lines if line.startswith("$ pip install ")][:1] == [
        '$ pip install -e ".[dev]" && hpsearch run --study digits-quick']
    assert [line for line in lines if line.startswith("$ pytest")][:1] == ["$ pytest -q"]
    assert len(lines) <= 150


def test_every_page_quotes_the_one_demo_transcript_and_the_readme_holds_its_copy():
    """docs/transcripts/digits-quick.txt is the demo every page shows: the pages include it (hooks' `demo` parts), no
    page quotes a line of it by hand, and the README, read unbuilt on GitHub, holds it whole, as recorded."""
    said, lines = hooks.demo_transcript()
    assert said.startswith("recorded 2026-") and " CPU with " in said and lines[0].startswith("$ hpsearch run")
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- demo transcript:", 1)[1].split("```console\n", 1)[1].split("\n```\n", 1)[0]
    assert block.splitlines() == lines
    output = {line for line in lines[1:] if len(line) > 30}
    for page in PAGES:
        assert not output & set(page.read_text().splitlines()), f"{page.name} quotes the demo by hand: include it"
    built = hooks.expand((ROOT / "docs" / "concepts" / "baselines.md").read_text())
    assert "\n".join(lines[lines.index("search against the baselines:"):]) in built and said in built


def test_each_error_the_troubleshooting_page_lists_is_one_the_code_says():
    """The page quotes each error with `…` for what varies; every piece between is in hpsearch's source (adjacent
    string literals joined), so an error reworded in the code fails here until the page says it anew."""
    source = "".join(path.read_text() for path in (ROOT / "hpsearch").rglob("*.py"))
    source = re.sub(r"[\"']\s*\n\s*(?:\+\s*)?[rbf]*[\"']", "", source)  # "a "\n  f"b" -> "ab"
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    errors = [re.sub(r"^`+ ?|( ?`+)$", "", row.split(" | ")[0].removeprefix("| "))
              for row in page.splitlines() if row.startswith("| `")]
    assert len(errors) >= 15
    for error in errors:
        for piece in error.split("…"):
            piece = piece.strip(" ,;:()")
            assert len(piece) < 6 or piece in source, f"troubleshooting.md: {piece!r} of {error!r} is not in the code"


def test_the_licence_the_changelog_and_the_site_name_this_version():
    import hpsearch

    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert f"\n## {hpsearch.__version__}\n" in (ROOT / "CHANGELOG.md").read_text()
    assert hooks.on_config({"site_name": "hpsearch"})["site_name"] == f"hpsearch {hpsearch.__version__}"
    assert hooks.expand("<!-- generated: changelog -->") == (ROOT / "CHANGELOG.md").read_text().rstrip("\n")


def test_every_page_the_readme_links_to_exists():
    for target in re.findall(r"\]\(((?:docs|bench)/[^)#]+)", (ROOT / "README.md").read_text()):
        assert (ROOT / target).is_file(), target


# --- every command shown is one the CLI accepts -----------------------------------------------------------

def _shown_commands(path: Path) -> list[str]:
    """The `hpsearch ...` command lines in a Markdown file's fenced code blocks, comments removed."""
    commands, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            continue
        text = line.strip().removeprefix("$ ")
        for part in text.split("&&"):
            part = part.split(" # ")[0].strip()
            if part.startswith("hpsearch ") or part == "hpsearch":
                commands.append(part)
    return commands


SHOWN = [(path.relative_to(ROOT).as_posix(), command)
         for path in [ROOT / "README.md", *PAGES] for command in _shown_commands(path)]


def test_the_docs_show_commands():
    assert len(SHOWN) > 30 and {c.split()[1] for _, c in SHOWN} >= set(hooks.command_names())


@pytest.mark.parametrize("where,command", SHOWN, ids=[f"{w}: {c}" for w, c in SHOWN])
def test_a_command_in_the_docs_is_one_the_cli_accepts(where, command, tmp_path, monkeypatch):
    """Parsed as `hpsearch` would parse it (command, options, their types), without running it."""
    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[1:]
    root = click.Context(main, info_name="hpsearch")
    if not args or args[0].startswith("-"):
        assert all(a in {"--version", "--help", "-h"} for a in args), f"{where}: {command}"
        return
    name, rest = args[0], args[1:]
    cmd = main.get_command(root, name)
    assert cmd is not None, f"{where}: no command {name!r} in {command!r}"
    for param in cmd.params:  # a file the command must find (train --config) is made empty here
        if isinstance(param, click.Option) and isinstance(param.type, click.Path) and param.type.exists:
            for i, arg in enumerate(rest[:-1]):
                if arg in param.opts:
                    Path(rest[i + 1]).touch()
    try:
        cmd.make_context(name, rest, parent=root)
    except click.exceptions.Exit:  # --help
        pass
    except click.UsageError as exc:
        pytest.fail(f"{where}: `{command}` is refused: {exc.format_message()}")


# --- the site builds -----------------------------------------------------------------------------------------

def test_mkdocs_builds_the_site_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip('mkdocs-material is not installed (pip install -e ".[docs]")')
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "study-file" / "index.html").is_file()
