"""The pha command line and the console scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pha import __version__, cli

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli.main, ["--version"]).output == f"pha, version {__version__}\n"
    out = runner.invoke(cli.main, ["--help"]).output
    for name in ("install-agents", "lab", "status", "online-switch", "get-active-slaves"):
        assert name in out


@pytest.mark.parametrize("script", [*cli.CLS_COMMANDS, *cli.TOOLS, "pha"])
def test_console_scripts_answer_help(script: str) -> None:
    out = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout


def test_every_subcommand_answers_help() -> None:
    runner = CliRunner()
    for name in cli.main.list_commands(None):
        result = runner.invoke(cli.main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_install_agents(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["install-agents", "--ocf-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    vip = tmp_path / "resource.d" / "pha" / "vip"
    assert vip.stat().st_mode & 0o777 == 0o755
    # PHA_WORKER=0: in-process. As root the shim would otherwise start a detached worker on this
    # machine's default socket (/run/pha), which outlives the test for its 10 idle minutes.
    meta = subprocess.run([str(vip), "meta-data"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PHA_WORKER": "0"})
    assert meta.returncode == 0 and 'name="vip"' in meta.stdout
