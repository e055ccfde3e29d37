"""`pha gencfg CONFIG` and `pha setup CONFIG [--dry-run]`: config.ini to Pacemaker."""
from __future__ import annotations

import os

import click

from pha import config as config_ini
from pha import configschema
from pha import crm, deploy
from pha.commands import common
from pha.commands.common import EXIT_FAILED, EXIT_USAGE, Cluster, Failed, emit, json_option, say


def load_config(path: str) -> config_ini.Config:
    """config.ini, its warnings shown; a bad file ends the command with every problem named."""
    try:
        loaded = config_ini.load(path, lab_defaults=_lab_defaults)
    except config_ini.ConfigError as exc:
        raise Failed(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in {path}:\n{exc}",
                     EXIT_USAGE) from None
    for warning in loaded.warnings:
        say(f"warning: {warning}")
    return loaded


def _lab_defaults(values: dict) -> None:
    """A `lab = yes` config's unset values: the lab on this machine."""
    from pha.lab import ini
    ini.defaults(values)


def _runner(loaded: config_ini.Config) -> tuple[crm.Runner, str]:
    """Where setup runs Pacemaker's commands: this machine, or a lab config's node."""
    if not loaded["lab"]:
        return crm.run_command, os.uname().nodename
    from pha.lab import ini
    return ini.runner(loaded)


class _ListKeys(click.Option):
    """--list-keys: print the schema and exit, CONFIG not needed."""

    def handle_parse_result(self, ctx, opts, args):  # type: ignore[override]
        if opts.get("list_keys"):
            click.echo(configschema.describe(), nl=False)
            ctx.exit(0)
        return super().handle_parse_result(ctx, opts, args)


@click.command("gencfg")
@click.option("--list-keys", is_flag=True, cls=_ListKeys, is_eager=True, expose_value=False,
              help="Print every config.ini key with its type, default and meaning.")
@click.option("--pcs-version", metavar="X.Y", help="The pcs version the script is for "
              "(0.11 or 0.12 forms); default: this machine's pcs, else 0.11.")
@click.option("--fencing-option", type=click.Choice(["stonith-enabled", "fencing-enabled"]),
              help="The name of the cluster option that turns fencing on (fencing-enabled since "
              "Pacemaker 3.0.2); default: the one this machine's Pacemaker knows, else stonith-enabled.")
@click.argument("config", type=click.Path(dir_okay=False))
def gencfg_cmd(config: str, pcs_version: str | None, fencing_option: str | None) -> None:
    """Print the pcs script that configures the cluster CONFIG describes."""
    import dataclasses

    from pha import cluster
    loaded = load_config(config)
    try:
        versions = cluster.detect_versions()
        if pcs_version is not None:
            versions = dataclasses.replace(versions, pcs=cluster.parse_pcs_version(pcs_version))
        if fencing_option is not None:
            versions = dataclasses.replace(versions, fencing_enabled=fencing_option)
        click.echo(deploy.render_script(loaded, deploy.pcs_commands(loaded, versions)), nl=False)
    except ValueError as exc:
        raise Failed(f"{config}: {exc}", EXIT_USAGE) from None


@click.command("setup")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would change; push nothing.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the cluster is healthy after a change.")
@common.timeout_option(180)
@json_option
def setup_cmd(config: str, dry_run: bool, wait: bool, timeout: int, as_json: bool) -> None:
    """Configure the cluster as CONFIG says, in one CIB push; a second run changes nothing.

    Run on a cluster node (or, for `lab = yes`, on the lab's host).
    """
    loaded = load_config(config)
    where = "this node"
    try:
        run, where = _runner(loaded)
        if not dry_run and not loaded["lab"]:
            written = deploy.write_passfile(loaded)
            if written:
                say(f"wrote the replication password into {written} (0600): copy it to every node")
        result = deploy.setup(loaded, run, where, dry_run=dry_run, progress=say)
    except (deploy.SetupError, ValueError) as exc:
        raise Failed(str(exc), EXIT_FAILED) from None
    except OSError as exc:
        raise Failed(f"{where}: {exc}", EXIT_FAILED) from None
    except crm.CrmError as exc:
        raise Failed(f"{where}: {exc}", EXIT_FAILED) from None
    report = {"config": config, "where": result.where, "dry_run": dry_run, "changes": result.changes,
              "pushed": result.pushed}
    if not result.changes:
        text = f"{result.where}: the cluster already has this configuration; nothing to do"
    elif dry_run:
        text = "\n".join([f"{result.where}: would change:", *(f"  {c}" for c in result.changes)])
    else:
        text = f"{result.where}: pushed {len(result.changes)} change(s)"
    if result.pushed and wait:
        from pha.commands import status
        cluster = Cluster(crm.Crm(run, timeout=20.0))
        common.wait("a healthy cluster", lambda: _healthy(status, cluster), timeout)
        report["status"] = status.collect(cluster, read_lvs=False)
        text += "\n" + status.render(report["status"])
    emit(report, as_json, text)


def _healthy(status_module, cluster: Cluster) -> tuple[bool, str]:
    report = status_module.collect(cluster, read_lvs=False)
    return report["healthy"], "; ".join(report["problems"])
