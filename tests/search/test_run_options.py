"""The options of run and worker that a hostile value could turn into a run that never ends."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hpsearch.cli import main


@pytest.mark.parametrize("command", ["run", "worker"])
@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "1e999", "0", "-5"])
def test_timeout_must_be_a_finite_number_of_seconds_above_0(command, timeout, tmp_path):
    result = CliRunner().invoke(main, [command, "--study", "digits-quick", "--storage", f"sqlite:///{tmp_path}/x.db",
                                       "--timeout", timeout])
    assert result.exit_code == 2 and "Traceback" not in result.output
    shown = {"1e999": "inf", "0": "0.0", "-5": "-5.0"}.get(timeout, timeout)
    assert (f"Invalid value for '--timeout': give a finite number of seconds above 0 (got {shown})"
            in result.stderr)
    assert not (tmp_path / "x.db").exists()
