"""Names and study files built to break things: overlong or control-character names, alias bombs and huge
values are each refused in one short line, quickly, and never echoed raw."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.errors import SpecError
from hpsearch.studyfile.schema import MAX_YAML_VALUES, load_spec, load_yaml

STUDY = {"dataset": "digits", "budget": {"epochs": 1, "trials": 1}}


def write_study(tmp_path, **changes) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **changes}))
    return str(path)


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("name, why", [("x" * 300, "is 300 characters long: at most 128"),
                                       ("evil\x1b[31mred", "holds control characters ('\\x1b')"),
                                       ("two\nlines", "holds control characters ('\\n')")])
def test_a_study_files_name_is_limited_when_loaded(tmp_path, name, why):
    with pytest.raises(SpecError, match="name: " + __import__("re").escape(why)):
        load_spec(write_study(tmp_path, name=name))


@pytest.mark.parametrize("command", ["best", "report", "dashboard"])
@pytest.mark.parametrize("name, why", [("n" * 300, "at most 128"), ("a\x1b]0;pwned\x07b", "control characters")])
def test_a_study_name_on_the_command_line_is_checked_and_never_echoed_raw(tmp_path, monkeypatch, command, name, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hpsearch.db").write_bytes(b"")
    line = one_line_error(CliRunner().invoke(main, [command, "--study", name]))
    assert why in line and "\x1b" not in line and "File name too long" not in line and len(line) < 200


def test_nested_aliases_are_refused_before_they_expand(tmp_path):
    """The 447-byte kind: nine levels of nine aliases each stand for 9**9 values."""
    levels = ["a0: &a0 [lr, lr, lr, lr, lr, lr, lr, lr, lr]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join(levels) + "\n"
    with pytest.raises(yaml.YAMLError, match="its aliases expand to"):
        load_yaml(text)
    path = tmp_path / "bomb.yaml"
    path.write_text(text + yaml.safe_dump(STUDY))
    line = one_line_error(CliRunner().invoke(main, ["run", "--study", str(path)]))
    assert f"at most {MAX_YAML_VALUES:,}" in line and len(line) < 300


def test_aliases_a_study_really_uses_still_load():
    assert load_yaml("w: &w [32, 64]\nx: *w\n") == {"w": [32, 64], "x": [32, 64]}


def test_a_huge_value_is_echoed_as_a_short_excerpt(tmp_path):
    path = write_study(tmp_path, space={"optimizer": {"choice": ["x" * 1_000_000]}})
    line = one_line_error(CliRunner().invoke(main, ["run", "--study", path]))
    assert "(1,000,002 characters)" in line and len(line) < 400
