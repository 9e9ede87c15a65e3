"""Storage URLs a user may write: every form of password stays out of every message, and storages no study can
be kept in are refused in one line before anything is made."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hpsearch.cli import main
from hpsearch.storage import mask, secrets

SECRET = "S3cr3tX"

# URL forms with the password somewhere: user part (empty user, ':' or an escaped '@' in it), libpq's query
# parameters; port 1 on localhost refuses at once.
PASSWORD_FORMS = [
    f"postgresql://:{SECRET}@127.0.0.1:1/db",
    f"postgresql://bob:{SECRET}@127.0.0.1:1/db",
    f"postgresql://bob:pa:{SECRET}@127.0.0.1:1/db",
    f"postgresql://bob:p%40{SECRET}@127.0.0.1:1/db",
    f"postgresql://bob@127.0.0.1:1/db?password={SECRET}",
    f"postgresql://bob@127.0.0.1:1/db?sslmode=require&sslpassword={SECRET}",
    f"postgresql+psycopg://bob:{SECRET}@127.0.0.1:1/db?PASSWORD={SECRET}",
    f"postgresql://bob:p@{SECRET}@127.0.0.1:1/db",  # an unescaped @: refused, never sent to the driver
]


@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_mask_hides_every_form_of_password(url):
    assert SECRET not in mask(url) and "***" in mask(url)
    assert any(SECRET in s for s in secrets(url))


def test_mask_leaves_urls_without_passwords_alone():
    for url in ("sqlite:///hpsearch.db", "sqlite:////tmp/a@b:c.db", "postgresql://bob@db.example:5432/hp",
                "postgresql://db.example/hp?sslmode=require"):
        assert mask(url) == url and secrets(url) == []


@pytest.mark.parametrize("command", ["best", "dashboard", "run", "export", "report"])
@pytest.mark.parametrize("url", PASSWORD_FORMS)
def test_no_command_shows_a_password(command, url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ["-o", "t.yaml"] if command == "export" else []
    result = CliRunner().invoke(main, [command, "--study", "digits-quick", "--storage", url, *out])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert SECRET not in result.output and "***" in result.output


def test_an_unescaped_at_in_the_password_names_the_fix():
    result = CliRunner().invoke(main, ["best", "--study", "x", "--storage", PASSWORD_FORMS[-1]])
    assert result.exit_code != 0 and "holds an unescaped @: write it as %40" in result.output


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&cache=shared"])
@pytest.mark.parametrize("command", ["run", "best"])
def test_in_memory_sqlite_is_refused_before_anything_is_made(url, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [command, "--study", "digits-quick", "--storage", url])
    assert result.exit_code != 0 and "in-memory SQLite storage vanishes when the run ends" in result.output
    assert len(result.output.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
