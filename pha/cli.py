"""The `pha` command line, plus the `cls_*` and discovery console scripts.

Subcommands live in their own modules and are imported only when they run,
so `pha --help` stays fast and one broken module cannot break the others.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

from pha import __version__
from pha.commands.registry import COMMANDS

# pha subcommand -> ("module:attribute" of a click command or group, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "install-agents": ("pha.install:install_agents",
                       "Install the OCF agents under OCF_ROOT/resource.d/pha."),
    "lab": ("pha.lab.cli:lab", "A namespace lab cluster on this machine."),
    "distlock": ("pha.distlock:distlock",
                 "A lease in PostgreSQL: the pgsql agent's lock for 2-node clusters."),
    "health": ("pha.health.cli:health", "Serve HTTP health checks for HAProxy (run on every node)."),
    "haproxy-cfg": ("pha.haproxy:gencfg_haproxy", "Render a haproxy.cfg checked against pha health."),
    "get-active-slaves": ("pha.discovery:get_active_slaves_cmd",
                          "Print the streaming standbys, as the primary sees them."),
    "check-active-slave": ("pha.discovery:check_active_slave_cmd",
                           "Print t when HOST is a standby in recovery, else f."),
    **COMMANDS,  # the cluster commands: gencfg, setup, status, online-switch...
}

# Original pha4pgsql command name -> pha subcommand.
CLS_COMMANDS: dict[str, str] = {
    "cls_start": "start",
    "cls_stop": "stop",
    "cls_status": "status",
    "cls_master": "master",
    "cls_online_switch": "online-switch",
    "cls_cleanup": "cleanup",
    "cls_reset_master": "reset-master",
    "cls_repair_by_pg_rewind": "repair-by-pg-rewind",
    "cls_rebuild_slave": "rebuild-slave",
    "cls_maintenance": "maintenance",
    "cls_unmaintenance": "unmaintenance",
    "cls_maintenance_node": "maintenance-node",
    "cls_unmaintenance_node": "unmaintenance-node",
    "cls_standby_node": "standby-node",
    "cls_unstandby_node": "unstandby-node",
}

TOOLS: dict[str, str] = {
    "get_active_slaves": "get-active-slaves",
    "check_active_slave": "check-active-slave",
}


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (help needs none)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(sorted((name, SUBCOMMANDS[name][1]) for name in SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = CLS_COMMANDS.get(name, name)  # `pha cls_status` works too
        return _load(SUBCOMMANDS[name][0]) if name in SUBCOMMANDS else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pha")
def main() -> None:
    """pha: PostgreSQL high availability on Pacemaker/Corosync."""


def _run_as(subcommand: str) -> None:
    prog = os.path.basename(sys.argv[0])
    main(args=[subcommand, *sys.argv[1:]], prog_name=prog)


def cls_entry() -> None:
    """Entry point of every `cls_*` console script: dispatch on argv[0]."""
    _run_as(CLS_COMMANDS[os.path.basename(sys.argv[0])])


def tool_entry() -> None:
    """Entry point of `get_active_slaves` and `check_active_slave`."""
    _run_as(TOOLS[os.path.basename(sys.argv[0])])


if __name__ == "__main__":
    main()
