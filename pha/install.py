"""Install pha's OCF agents as `$OCF_ROOT/resource.d/pha/<agent>`."""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import click

import pha
from pha.files import write_atomic

AGENTS = ("pgsql", "vip", "lvsdr", "lvsdr-realsvr")
PROVIDER = "pha"
DEFAULT_OCF_ROOT = "/usr/lib/ocf"

SHIM = '''#!{python}
"""ocf:pha:{agent}: a thin shim into pha.agents.{module} (see pha/shim.py)."""
import sys
sys.path[:0] = {paths!r}
from pha.shim import main
main({agent!r})
'''


def render_shim(agent: str, python: str, paths: list[str]) -> str:
    """The executable for `agent`, run by `python` with pha found on `paths`."""
    return SHIM.format(python=python, agent=agent, module=agent.replace("-", "_"), paths=paths)


def install(ocf_root: Path, python: str = sys.executable) -> list[Path]:
    """Write every agent's shim under ocf_root; return the paths written."""
    target = Path(ocf_root) / "resource.d" / PROVIDER
    target.mkdir(parents=True, exist_ok=True)
    paths = [str(Path(pha.__file__).resolve().parent.parent), sysconfig.get_paths()["purelib"]]
    written = []
    for agent in AGENTS:
        path = target / agent
        write_atomic(str(path), render_shim(agent, f"{python} -IS", paths), mode=0o755)
        written.append(path)
    return written


@click.command("install-agents")
@click.option("--ocf-root", type=click.Path(file_okay=False), show_default=True,
              default=lambda: os.environ.get("OCF_ROOT", DEFAULT_OCF_ROOT),
              help="OCF root; agents go to OCF_ROOT/resource.d/pha/.")
def install_agents(ocf_root: str) -> None:
    """Install the OCF agents (ocf:pha:*) so Pacemaker and pcs can find them."""
    for path in install(Path(ocf_root)):
        click.echo(f"installed {path}")
