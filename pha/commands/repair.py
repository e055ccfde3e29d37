"""Bringing a broken standby back: `pha repair-by-pg-rewind` and `pha rebuild-slave`.

Both run on the broken node, with the same flow: put the node in standby (so
Pacemaker stops PostgreSQL there and leaves it alone), rewind it with
pg_rewind or copy it afresh with pg_basebackup from the writer VIP, remove
the pgsql agent's fork verdict, clear the node's failures, take it out of
standby and wait until it streams. Passwords never reach argv: libpq reads
the agent's passfile (PGPASSFILE). The node's own configuration files in
PGDATA (postgresql.conf, pg_hba.conf, ...) are kept: both tools would copy the
primary's over them.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import click

from pha.commands import common
from pha.commands.common import (ATTR_DATA, EXIT_REFUSED, HEALTHY_DATA, Cluster, Failed, emit, json_option,
                                 say, timeout_option)
from pha.commands.control import standby_node, unstandby_node

CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
TOOL_TIMEOUT = 3600


class LocalPostgres:
    """This node's PostgreSQL, as the pgsql resource's parameters describe it."""

    def __init__(self, settings: dict[str, str], resource: str) -> None:
        self.settings = settings
        self.pgdata = settings["pgdata"]
        self.bindir = os.path.dirname(settings["pgctl"])
        self.account = pwd.getpwnam(settings["pgdba"])
        self.marker = os.path.join(settings["tmpdir"], f"{resource}.state.forked")

    def running(self) -> bool:
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def is_empty(self) -> bool:
        try:
            return not os.listdir(self.pgdata)
        except FileNotFoundError:
            return True

    def source_conninfo(self) -> str:
        """The writer VIP as libpq sees it; no password (the passfile holds it)."""
        s = self.settings
        return (f"host={s['master_ip']} port={s['pgport']} user={s['repuser']} dbname=postgres "
                f"connect_timeout=10 application_name=pha-repair")

    def env(self) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": self.account.pw_dir, "LC_ALL": "C", "LANG": "C"}
        if self.settings.get("passfile"):
            env["PGPASSFILE"] = self.settings["passfile"]
        return env

    def run_tool(self, tool: str, args: list[str], capture: bool) -> subprocess.CompletedProcess:
        """Run a PostgreSQL tool as the database user; its output goes to stderr unless captured."""
        argv = [os.path.join(self.bindir, tool), *args]
        sink = subprocess.PIPE if capture else sys.stderr.fileno()
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, text=True,
                                  timeout=TOOL_TIMEOUT, env=self.env(), cwd="/", user=self.account.pw_uid,
                                  group=self.account.pw_gid)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Failed(f"{tool} could not run: {exc}") from None

    def save_config(self) -> dict[str, tuple[bytes, os.stat_result]]:
        """This node's configuration files in PGDATA (and the agent's config file if it is there)."""
        names = list(CONFIG_FILES)
        config = self.settings.get("config")
        if config and os.path.dirname(os.path.abspath(config)) == os.path.abspath(self.pgdata):
            names.append(os.path.basename(config))
        saved = {}
        for name in dict.fromkeys(names):
            path = os.path.join(self.pgdata, name)
            try:
                with open(path, "rb") as f:
                    saved[name] = (f.read(), os.stat(path))
            except FileNotFoundError:
                continue
        return saved

    def restore_config(self, saved: dict[str, tuple[bytes, os.stat_result]]) -> None:
        for name, (data, st) in saved.items():
            path = os.path.join(self.pgdata, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
            try:
                os.write(fd, data)
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, st.st_mode & 0o777)
            finally:
                os.close(fd)

    def wipe(self) -> None:
        """Delete what PGDATA holds (not the directory: it may be a mount point)."""
        for entry in os.scandir(self.pgdata):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def ensure_pgdata(self) -> None:
        """PGDATA exists, owned by the database user, mode 0700."""
        os.makedirs(self.pgdata, mode=0o700, exist_ok=True)
        os.chown(self.pgdata, self.account.pw_uid, self.account.pw_gid)
        os.chmod(self.pgdata, 0o700)

    def forget_fork(self) -> bool:
        """Remove the agent's fork verdict; True when there was one."""
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            return False
        return True


def check_repairable(cluster: Cluster, force: bool, action: str) -> tuple[str, str, common.Primitive]:
    """(this node, the primary, the pgsql resource) when this node may be repaired (`action`d)."""
    view = cluster.view()
    cluster.require_quorum(view)
    me = cluster.me()
    _, pgsql = cluster.pgsql()
    if me not in common.node_list(pgsql):
        raise Failed(f"{me} is not in {pgsql.id}'s node_list: run this on the broken node", EXIT_REFUSED)
    promoted = view.promoted_nodes(pgsql.top)
    if len(promoted) != 1:
        raise Failed("there is no primary to copy from (cls_reset_master is the emergency tool)", EXIT_REFUSED)
    if promoted[0] == me:
        raise Failed(f"{me} is the primary: nothing to {action} here", EXIT_REFUSED)
    data = view.attribute(me, ATTR_DATA)
    if data in HEALTHY_DATA and me in view.unpromoted_nodes(pgsql.top) and not force:
        raise Failed(f"{me} is healthy ({ATTR_DATA}={data}): nothing to {action}"
                     + ("; --force rebuilds it anyway" if action == "rebuild" else ""), EXIT_REFUSED)
    return me, promoted[0], pgsql


def _finish(cluster: Cluster, local: LocalPostgres, me: str, pgsql: common.Primitive, timeout: int) -> float:
    if local.forget_fork():
        say(f"removed the fork verdict {local.marker}")
    cluster.call(["crm_resource", "--cleanup", f"--resource={pgsql.top}", f"--node={me}"])
    return unstandby_node(cluster, me, timeout)


@click.command("repair-by-pg-rewind")
@click.option("--dry-run", is_flag=True, help="Show what pg_rewind would do; change nothing.")
@timeout_option(180)
@json_option
def repair_cmd(dry_run: bool, timeout: int, as_json: bool) -> None:
    """Rewind this node's PostgreSQL from the primary and make it stream again (cls_repair_by_pg_rewind).

    Run it on the broken node, e.g. an old primary whose timeline forked.
    """
    cluster = Cluster()
    me, primary, pgsql = check_repairable(cluster, force=False, action="repair")
    local = LocalPostgres(common.pgsql_settings(pgsql), pgsql.id)
    source = local.source_conninfo()
    rewind = ["-D", local.pgdata, f"--source-server={source}", "--progress"]
    if dry_run:
        plan = [f"put {me} in standby (Pacemaker stops PostgreSQL here)",
                f"pg_rewind -D {local.pgdata} from {primary} through the writer VIP "
                f"({local.settings['master_ip']})",
                f"remove {local.marker}, clear {me}'s failures, take {me} out of standby, wait until it streams"]
        if local.running():
            output = "PostgreSQL runs here: pg_rewind --dry-run needs it stopped; the repair stops it first"
        else:
            done = local.run_tool("pg_rewind", [*rewind, "--dry-run"], capture=True)
            output = (done.stdout + done.stderr).strip()
            if done.returncode != 0:
                raise Failed(f"pg_rewind --dry-run failed: {output}")
        emit({"node": me, "primary": primary, "dry_run": True, "plan": plan, "pg_rewind": output}, as_json,
             "\n".join(["would:", *(f"  {step}" for step in plan), "pg_rewind --dry-run:", output]))
        return
    standby_node(cluster, me, timeout)
    if local.running():
        raise Failed(f"PostgreSQL still runs on {me} outside Pacemaker's control: stop it, then retry "
                     f"({me} is left in standby)", EXIT_REFUSED)
    saved = local.save_config()
    say(f"pg_rewind from {primary} ({local.settings['master_ip']})")
    done = local.run_tool("pg_rewind", rewind, capture=False)
    local.restore_config(saved)
    if done.returncode != 0:
        raise Failed(f"pg_rewind failed (exit {done.returncode}); {me} is left in standby: fix the cause and "
                     f"rerun, or rebuild it with cls_rebuild_slave")
    seconds = _finish(cluster, local, me, pgsql, timeout)
    emit({"node": me, "primary": primary, "dry_run": False, "streaming_after_s": round(seconds, 1)}, as_json,
         f"{me} rewound from {primary} and streaming")


@click.command("rebuild-slave")
@click.option("--force", is_flag=True, help="Delete a non-empty PGDATA (its config files are kept).")
@timeout_option(600)
@json_option
def rebuild_cmd(force: bool, timeout: int, as_json: bool) -> None:
    """Copy this node's PostgreSQL afresh from the primary with pg_basebackup (cls_rebuild_slave).

    Refuses a non-empty PGDATA unless --force.
    """
    cluster = Cluster()
    me, primary, pgsql = check_repairable(cluster, force=force, action="rebuild")
    local = LocalPostgres(common.pgsql_settings(pgsql), pgsql.id)
    if not local.is_empty() and not force:
        raise Failed(f"PGDATA {local.pgdata} is not empty: rebuilding deletes it; use --force "
                     "(its configuration files are kept)", EXIT_REFUSED)
    standby_node(cluster, me, timeout)
    if local.running():
        raise Failed(f"PostgreSQL still runs on {me} outside Pacemaker's control: stop it, then retry "
                     f"({me} is left in standby)", EXIT_REFUSED)
    saved = local.save_config() if not local.is_empty() else {}
    if not local.is_empty():
        say(f"deleting the contents of {local.pgdata}")
        local.wipe()
    local.ensure_pgdata()
    say(f"pg_basebackup from {primary} ({local.settings['master_ip']})")
    done = local.run_tool("pg_basebackup", [
        "-d", local.source_conninfo(), "-D", local.pgdata, "-X", "stream", "-c", "fast", "--progress",
        "--no-password"], capture=False)
    if done.returncode != 0:
        raise Failed(f"pg_basebackup failed (exit {done.returncode}); {me} is left in standby")
    local.restore_config(saved)
    seconds = _finish(cluster, local, me, pgsql, timeout)
    emit({"node": me, "primary": primary, "streaming_after_s": round(seconds, 1)}, as_json,
         f"{me} rebuilt from {primary} and streaming")
