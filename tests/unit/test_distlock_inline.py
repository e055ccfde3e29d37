"""`pha distlock` run inside the agent (run_inline): exit codes of bad input, no server needed."""
from __future__ import annotations

import pytest

from pha import distlock

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("args", [
    ["lock"],                                                # no --conninfo
    ["--conninfo", "host=lockhost", "--ttl", "0", "lock"],   # ttl out of range
    ["--conninfo", "host=lockhost", "grab"],                 # unknown action
])
def test_usage_errors_are_exit_2(args: list[str], capsys) -> None:
    assert distlock.run_inline(args) == 2
    assert "Error" in capsys.readouterr().err


def test_a_password_is_refused_before_any_connection(capsys) -> None:
    assert distlock.run_inline(["--conninfo", "host=lockhost password=secret", "lock"]) == 2
    assert "holds a password" in capsys.readouterr().err


def test_help_is_exit_0(capsys) -> None:
    assert distlock.run_inline(["--help"]) == 0
    assert "Take (lock), give up (unlock) or show (status)" in capsys.readouterr().out
