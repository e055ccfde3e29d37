"""Bringing a broken standby back: `pha repair-by-pg-rewind` and `pha rebuild-slave`.

Both run on the broken node, with the same flow: put the node in standby (so
Pacemaker stops PostgreSQL there and leaves it alone), rewind it with
pg_rewind or copy it afresh with pg_basebackup from the writer VIP, remove
the pgsql agent's fork verdict, clear the node's failures, take it out of
standby and wait until it streams. Passwords never reach argv: libpq reads
the agent's passfile (PGPASSFILE). The node's own configuration files in
PGDATA (postgresql.conf, pg_hba.conf, pha.conf, ...) are kept: both tools
would copy the primary's over them.

The rewind itself is pha.pgsql.rewind's (the same code the agent can run at
start): it says first whether a rewind can help at all, keeps the diverged
WAL with a summary of the commits in it, and recognises the dead end where
pg_rewind finds nothing to do yet PostgreSQL cannot start; `--reclone` then
copies the primary afresh and moves the old data directory aside.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Optional

import click

from pha import crm, crmstatus
from pha.commands import common
from pha.commands.common import EXIT_REFUSED, Cluster, Failed, emit, json_option, say, timeout_option
from pha.commands.control import done_when_empty, standby_node, unstandby_missing
from pha.pgsql import binaries, names, process, rewind
from pha.pgsql.decide import ReplInfo, parse_history
from pha.pgsql.instance import Instance, PgError

TOOL_TIMEOUT = 3600


class LocalPostgres:
    """This node's PostgreSQL, as the pgsql resource's parameters describe it."""

    def __init__(self, settings: dict[str, str], resource: str) -> None:
        self.settings = settings
        self.pgdata = settings["pgdata"]
        self.account = process.account(settings["pgdba"])
        self.marker = names.fork_marker_path(settings["tmpdir"], resource)
        self.pg = Instance(settings.get("pgctl", ""), self.pgdata, int(settings.get("pgport") or 5432),
                           settings.get("socketdir") or "/var/run/postgresql", settings["pgdba"],
                           settings.get("pgdb") or "postgres", settings.get("config") or None,
                           settings.get("start_opt", ""), settings.get("ctl_opt", ""), settings.get("logfile") or None)

    @property
    def bindir(self) -> str:
        try:
            return self.pg.bindir
        except PgError as err:
            # An empty PGDATA (to rebuild) says no version: the newest installed client tools then.
            newest = None if os.path.exists(os.path.join(self.pgdata, "PG_VERSION")) else binaries.newest_installed()
            if newest is None:
                raise Failed(str(err)) from None
            return newest

    def running(self) -> bool:
        return self.pg.is_running()

    def is_empty(self) -> bool:
        try:
            return not os.listdir(self.pgdata)
        except FileNotFoundError:
            return True

    def source_conninfo(self) -> str:
        """The writer VIP as libpq sees it; no password (the passfile holds it)."""
        s = self.settings
        return rewind.source_conninfo(s["master_ip"], int(s["pgport"]), s["repuser"], "pha-repair")

    def env(self) -> dict[str, str]:
        passfile = self.settings.get("passfile")
        return process.user_env(self.account, {"PGPASSFILE": passfile} if passfile else {})

    def target(self, keep_root: str = rewind.KEEP_ROOT) -> rewind.Target:
        return rewind.Target(self.pgdata, self.bindir, self.settings["pgdba"], self.source_conninfo(),
                             self.settings.get("passfile") or "", keep_root)

    def config_extra(self) -> tuple[str, ...]:
        return rewind.config_names(self.pgdata, self.settings.get("config") or "")

    def facts(self, info: Optional[ReplInfo], reclone: bool) -> tuple[rewind.Facts, int]:
        """What decides a rewind here, and the WAL segment size."""
        try:
            control = self.pg.controldata()
            timeline, lsn, hints, min_recovery = rewind.facts_from_controldata(control, self.pg.wal_timeline())
            history_text = self.pg.history(info.timeline) if info else None
        except (PgError, OSError, ValueError) as err:
            raise Failed(f"cannot read this node's PostgreSQL state: {err}") from None
        up = rewind.reachable(self.settings["master_ip"], int(self.settings["pgport"]))
        facts = rewind.Facts(timeline, lsn, info, parse_history(history_text) if history_text else None,
                             hints, up, reclone, min_recovery)
        return facts, int(control.get("Bytes per WAL segment", str(16 << 20)) or 16 << 20)

    def run_tool(self, tool: str, args: list[str], capture: bool) -> subprocess.CompletedProcess:
        """Run a PostgreSQL tool as the database user; its output goes to stderr unless captured."""
        argv = [os.path.join(self.bindir, tool), *args]
        sink = subprocess.PIPE if capture else sys.stderr.fileno()
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, text=True,
                                  timeout=TOOL_TIMEOUT, env=self.env(), cwd="/", user=self.account.pw_uid,
                                  group=self.account.pw_gid,
                                  extra_groups=os.getgrouplist(self.account.pw_name, self.account.pw_gid))
        except (OSError, subprocess.SubprocessError) as exc:
            raise Failed(f"{tool} could not run: {exc}") from None

    def save_config(self) -> dict[str, rewind.SavedFile]:
        """This node's configuration files in PGDATA (and the agent's config file if it is there)."""
        return rewind.save_config(self.pgdata, self.config_extra())

    def restore_config(self, saved: dict[str, rewind.SavedFile]) -> None:
        rewind.restore_config(self.pgdata, saved)

    def wipe(self) -> None:
        """Delete what PGDATA holds (not the directory: it may be a mount point)."""
        for entry in os.scandir(self.pgdata):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def ensure_pgdata(self) -> None:
        """PGDATA exists, owned by the database user, mode 0700 (set on the descriptor: no link followed)."""
        os.makedirs(self.pgdata, mode=0o700, exist_ok=True)
        fd = os.open(self.pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, self.account.pw_uid, self.account.pw_gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

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
    data = view.attribute(me, names.ATTR_DATA)
    if data in names.HEALTHY_DATA and me in view.unpromoted_nodes(pgsql.top) and not force:
        raise Failed(f"{me} is healthy ({names.ATTR_DATA}={data}): nothing to {action}"
                     + ("; --force rebuilds it anyway" if action == "rebuild" else ""), EXIT_REFUSED)
    return me, promoted[0], pgsql


def repl_info(cluster: Cluster) -> Optional[ReplInfo]:
    try:
        return ReplInfo.parse(cluster.bridge.get_property(names.REPL_INFO, set_name=names.PROPERTY_SET))
    except (crm.CrmError, ValueError) as err:
        say(f"REPL_INFO cannot be read ({err}): the rewind is judged without the cluster's history")
        return None


class _StartFailed(Exception):
    """PostgreSQL failed to start on this node: waiting longer cannot help."""


def _failures(view: crmstatus.ClusterStatus, me: str, pgsql: common.Primitive) -> list[crmstatus.Failure]:
    return [f for f in view.failures if f.node == me and f.op_key.startswith(f"{pgsql.id}_")]


def _start_failure(view: crmstatus.ClusterStatus, me: str, pgsql: common.Primitive,
                   old: set[crmstatus.Failure]) -> Optional[str]:
    """A failure of the resource here that was not there before the cleanup."""
    for failure in _failures(view, me, pgsql):
        if failure not in old:
            return f"{failure.op_key}: {failure.exit_reason or failure.rc_text}"
    return None


def _finish(cluster: Cluster, local: LocalPostgres, me: str, pgsql: common.Primitive, timeout: int) -> float:
    """Forget the fork, clear failures, leave standby, and wait until this node streams,
    giving up at once when its start fails (no waiting out the timeout for nothing)."""
    if local.forget_fork():
        say(f"removed the fork verdict {local.marker}")
    old = set(_failures(cluster.view(), me, pgsql))   # the cleanup below may take a moment to show
    cluster.call(["crm_resource", "--cleanup", f"--resource={pgsql.top}", f"--node={me}"])
    cluster.check_node(cluster.view(), me)
    cluster.call(["crm_attribute", f"--node={me}", "--name=standby", "--lifetime=forever", "--delete"])

    def check() -> tuple[bool, str]:
        view = cluster.view()
        failed = _start_failure(view, me, pgsql, old)
        if failed:
            raise _StartFailed(failed)
        return done_when_empty(unstandby_missing(view, me, pgsql))
    try:
        return common.wait(f"PostgreSQL to run and stream on {me}", check, timeout)
    except _StartFailed as err:
        raise Failed(f"PostgreSQL failed to start on {me}: {err}") from None


def _plan(me: str, primary: str, local: LocalPostgres, verdict: rewind.Verdict) -> list[str]:
    ip = local.settings["master_ip"]
    if verdict.action == rewind.REFUSE:
        return [f"nothing: {verdict.reason}"]
    steps = [f"put {me} in standby (Pacemaker stops PostgreSQL here)"]
    if verdict.action == rewind.RECLONE:
        steps.append(f"pg_basebackup from {primary} ({ip}) into a fresh directory; move {local.pgdata} aside")
    else:
        if verdict.action == rewind.REWIND:
            steps.append(f"keep the diverged WAL and a summary of its commits under {rewind.KEEP_ROOT}")
        steps.append(f"pg_rewind -D {local.pgdata} from {primary} through the writer VIP ({ip})")
    steps.append(f"remove {local.marker}, clear {me}'s failures, take {me} out of standby, wait until it streams")
    return steps


@click.command("repair-by-pg-rewind")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.option("--reclone", is_flag=True,
              help="When a rewind cannot help, copy the primary afresh (the old data directory is moved aside).")
@click.option("--keep-dir", default=rewind.KEEP_ROOT, show_default=True,
              help="Where the diverged WAL and its summary are kept.")
@timeout_option(180)
@json_option
def repair_cmd(dry_run: bool, reclone: bool, keep_dir: str, timeout: int, as_json: bool) -> None:
    """Rewind this node's PostgreSQL from the primary and make it stream again (cls_repair_by_pg_rewind).

    Run it on the broken node, e.g. an old primary whose timeline forked. It
    says when a rewind cannot help (no wal_log_hints or checksums, a node ahead
    of the cluster, the primary out of reach, pg_rewind failing or finding
    nothing to do) and what to do then; --reclone does it.
    """
    cluster = Cluster()
    me, primary, pgsql = check_repairable(cluster, force=False, action="repair")
    local = LocalPostgres(common.pgsql_settings(pgsql), pgsql.id)
    info = repl_info(cluster)
    facts, segment_size = local.facts(info, reclone)
    verdict = rewind.decide(facts)
    target = local.target(keep_dir)
    if dry_run:
        if verdict.action == rewind.REFUSE:
            output = ""
        elif local.running():
            output = "PostgreSQL runs here: pg_rewind --dry-run needs it stopped; the repair stops it first"
        else:
            output = rewind.run_pg_rewind(target, TOOL_TIMEOUT, dry_run=True).output
        plan = _plan(me, primary, local, verdict)
        emit({"node": me, "primary": primary, "dry_run": True, "plan": plan, "pg_rewind": output,
              "verdict": verdict._asdict()}, as_json,
             "\n".join([f"{verdict.action}: {verdict.reason}", "would:", *(f"  {step}" for step in plan),
                        "pg_rewind --dry-run:", output]))
        return
    if verdict.action == rewind.REFUSE:   # before anything is touched
        raise Failed(f"not repairing {me}: {verdict.reason}", EXIT_REFUSED)
    standby_node(cluster, me, timeout)
    if local.running():
        raise Failed(f"PostgreSQL still runs on {me} outside Pacemaker's control: stop it, then retry "
                     f"({me} is left in standby)", EXIT_REFUSED)
    facts, segment_size = local.facts(info, reclone)    # stopped now: pg_control is final
    say(f"{rewind.decide(facts).action}: {rewind.decide(facts).reason}")
    try:
        result = _repair(local, target, facts, segment_size)
    except PgError as err:
        raise Failed(f"{err}; {me} is left in standby") from None
    if result.kept:
        say(f"kept the diverged WAL ({result.kept.segments} segments, {result.kept.bytes} bytes, "
            f"{result.kept.commits} commits) in {result.kept.directory}; summary: {result.kept.summary_path}")
    if result.action == rewind.REFUSE:
        raise Failed(f"{result.reason}; {me} is left in standby", EXIT_REFUSED)
    if result.moved_aside:
        say(f"re-cloned from {primary}; the old data directory is {result.moved_aside}")
    seconds = _finish(cluster, local, me, pgsql, timeout)
    kept = result.kept._asdict() if result.kept else None
    emit({"node": me, "primary": primary, "dry_run": False, "action": result.action, "reason": result.reason,
          "kept": kept, "moved_aside": result.moved_aside or None, "streaming_after_s": round(seconds, 1)},
         as_json, f"{me} {'re-cloned' if result.action == rewind.RECLONE else 'rewound'} from {primary} "
                  "and streaming")


def _repair(local: LocalPostgres, target: rewind.Target, facts: rewind.Facts, segment_size: int) -> rewind.Result:
    """rewind.perform, and for a node not known to be forked, a plain pg_rewind (it may still help;
    "no rewind required" is fine there)."""
    result = rewind.perform(target, facts, segment_size, local.config_extra(), TOOL_TIMEOUT)
    if result.action != rewind.NONE:
        return result
    saved = local.save_config()
    outcome = rewind.run_pg_rewind(target, TOOL_TIMEOUT)
    local.restore_config(saved)
    if outcome.outcome == rewind.FAILED:
        return rewind.Result(rewind.REFUSE, f"pg_rewind failed: {outcome.output[-300:]}; re-clone it "
                                            "(cls_repair_by_pg_rewind --reclone, or cls_rebuild_slave)",
                             output=outcome.output)
    return rewind.Result(rewind.REWIND, result.reason, output=outcome.output)


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
    bindir = local.bindir           # found before PGDATA (and its PG_VERSION) goes
    standby_node(cluster, me, timeout)
    if local.running():
        raise Failed(f"PostgreSQL still runs on {me} outside Pacemaker's control: stop it, then retry "
                     f"({me} is left in standby)", EXIT_REFUSED)
    saved = local.save_config() if not local.is_empty() else {}
    if not local.is_empty():
        say(f"deleting the contents of {local.pgdata}")
        local.wipe()
    local.ensure_pgdata()
    say(f"pg_basebackup from {primary} ({local.settings['master_ip']}) with {bindir}/pg_basebackup")
    done = local.run_tool("pg_basebackup", [
        "-d", local.source_conninfo(), "-D", local.pgdata, "-X", "stream", "-c", "fast", "--progress",
        "--no-password"], capture=False)
    if done.returncode != 0:
        raise Failed(f"pg_basebackup failed (exit {done.returncode}); {me} is left in standby")
    local.restore_config(saved)
    seconds = _finish(cluster, local, me, pgsql, timeout)
    emit({"node": me, "primary": primary, "streaming_after_s": round(seconds, 1)}, as_json,
         f"{me} rebuilt from {primary} and streaming")
