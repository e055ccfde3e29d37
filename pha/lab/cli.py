"""`pha lab up | down | status | exec NODE CMD... | cut NODE | heal NODE`."""
from __future__ import annotations

import json
import subprocess
import sys

import click

from pha.lab import config
from pha.lab.core import Lab, LabError


def _lab(ctx: click.Context) -> Lab:
    try:
        return Lab.load(ctx.obj)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state", "state_dir", envvar=config.STATE_ENV, default=config.DEFAULT_STATE_DIR,
              show_default=True, type=click.Path(file_okay=False),
              help=f"Lab state directory (env {config.STATE_ENV}).")
@click.pass_context
def lab(ctx: click.Context, state_dir: str) -> None:
    """A PostgreSQL + corosync + pacemaker cluster in namespaces on this machine."""
    ctx.obj = state_dir


@lab.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, config.MAX_NODES),
              help="Number of cluster nodes.")
@click.option("--token", "token_ms", default=config.DEFAULT_TOKEN_MS, show_default=True,
              type=click.IntRange(200, 60000), help="Corosync token timeout (ms).")
@click.option("--pg-running", is_flag=True, help="Start PostgreSQL as a plain streaming cluster.")
@click.option("--no-pg", is_flag=True, help="No PostgreSQL.")
@click.option("--pg", "pg_version", envvar=config.PG_ENV, metavar="VERSION",
              help=f"PostgreSQL major version (env {config.PG_ENV}; default: the newest installed"
                   + (f", {config.PG_VERSION}" if config.PG_VERSION else "") + ").")
@click.option("--two-node", is_flag=True,
              help="With --nodes 2: corosync two_node, each side of a cut keeps quorum.")
@click.option("--force", is_flag=True, help="Tear down an existing lab first.")
@click.option("--no-fencing", is_flag=True,
              help="No BMCs and no fence devices, fencing off: for tests that must not fence.")
@click.pass_context
def up(ctx: click.Context, nodes: int, token_ms: int, pg_running: bool, no_pg: bool,
       pg_version: str | None, two_node: bool, force: bool, no_fencing: bool) -> None:
    """Bring the lab up."""
    try:
        timings = Lab(ctx.obj).up(nodes=nodes, token_ms=token_ms, pg=not no_pg, pg_running=pg_running,
                                  force=force, two_node=two_node, progress=click.echo,
                                  pg_version=pg_version, fence=not no_fencing)
    except (LabError, config.LabConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"lab up in {max(timings.values()):.1f}s (state {ctx.obj})")


@lab.command()
@click.option("--force", is_flag=True, help="Also remove leftover pha-* namespaces and the blackhole route.")
@click.pass_context
def down(ctx: click.Context, force: bool) -> None:
    """Stop everything in the lab and remove it."""
    the_lab = Lab(ctx.obj)
    if not the_lab.state_dir.exists() and not force:
        from pha.lab import network
        leftovers = network.existing_lab_netns()
        click.echo(f"no lab under {the_lab.state_dir}"
                   + (f"; leftover namespaces {', '.join(leftovers)}: use --force" if leftovers else ""))
        return
    seconds = the_lab.down(force=force)
    click.echo(f"lab down in {seconds:.1f}s")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Nodes, PIDs, IPs, and what each node's pacemaker sees."""
    report = _lab(ctx).status()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    client = report["client"]
    pg = f"PostgreSQL {report['pg_version']}" if report.get("pg_version") else "no PostgreSQL"
    click.echo(f"lab {report['state_dir']}: subnet {report['subnet']}, client {client['ip']} "
               f"({client['netns']}), blackhole route {'present' if report['blackhole'] else 'MISSING'}, {pg}")
    for node in report["nodes"]:
        line = (f"{node['name']:<8} {node['ip']:<12} pid {node['pid']!s:<8} "
                f"{'running' if node['running'] else 'STOPPED'}"
                f"{'' if node['connected'] else ' CUT'}")
        view = node.get("pacemaker", {})
        if "error" in view:
            line += f"  pacemaker: {view['error']}"
        elif view:
            line += (f"  online: {' '.join(view['online']) or '-'}"
                     f"  offline: {' '.join(view.get('offline', [])) or '-'}"
                     f"  DC: {view['dc'] or '-'}  {'quorate' if view['quorum'] else 'NO QUORUM'}")
        click.echo(line)


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--user", "-u", help="Run as this user.")
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec(ctx: click.Context, user: str | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in NODE (or in `client`), passing its exit code through."""
    the_lab = _lab(ctx)
    try:
        if node == "client":
            if user:
                raise click.UsageError("--user is for nodes, not the client")
            argv = the_lab.client_command(command)
        else:
            argv = the_lab.node_command(node, command, user)
    except (LabError, config.LabConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(subprocess.call(argv, env=Lab.command_env()))


@lab.command()
@click.argument("node")
@click.pass_context
def cut(ctx: click.Context, node: str) -> None:
    """Unplug NODE from the lab switch."""
    try:
        _lab(ctx).cut(node)
    except config.LabConfigError as exc:
        raise click.ClickException(str(exc)) from None


@lab.command()
@click.argument("node")
@click.pass_context
def heal(ctx: click.Context, node: str) -> None:
    """Plug NODE back into the lab switch."""
    try:
        _lab(ctx).heal(node)
    except config.LabConfigError as exc:
        raise click.ClickException(str(exc)) from None
