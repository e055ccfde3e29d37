"""Changing the primary: `pha online-switch` (cls_online_switch) and, in an
emergency, `pha reset-master` (cls_reset_master).

A switchover asks Pacemaker to promote the target (a cli-prefer constraint on
the Promoted role, removed once it is promoted): the old primary shuts down
cleanly, so every streaming standby has all of its WAL, and comes back as a
standby of the new one. The target is chosen or checked by `choose_target`
(pure): in sync mode only the synchronous standby has every acknowledged
commit, so no other node may be the target.
"""
from __future__ import annotations

import os
import subprocess
from typing import Optional

import click

from pha import crmstatus
from pha.commands import common
from pha.commands.control import done_when_empty, stop_remaining
from pha.commands.common import (EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, Cluster, Failed, Primitive, emit,
                                 json_option, say, timeout_option, wait)
from pha.pgsql.names import ATTR_DATA, ATTR_LAG, PROPERTY_SET, REPL_INFO, STREAMING, STREAMING_SYNC, score_attr


# --- the target (pure) --------------------------------------------------------------------
def candidates(view: crmstatus.ClusterStatus, pgsql: Primitive) -> list[str]:
    """Standbys a switchover may promote, best first: streaming (the sync standby only in
    sync mode), by promotion score, then replay lag, then node_list order."""
    sync = pgsql.params.get("rep_mode") == "sync"
    wanted = (STREAMING_SYNC,) if sync else STREAMING
    order = common.node_list(pgsql)
    found = []
    for name in order:
        node = view.node(name)
        if node is None or not node.online or node.standby or node.maintenance:
            continue
        if name in view.unpromoted_nodes(pgsql.top) and view.attribute(name, ATTR_DATA) in wanted:
            found.append(name)

    def rank(name: str) -> tuple[int, int, int]:
        lag = common.int_attribute(view, name, ATTR_LAG) or 0
        return (-promotion_score(view, pgsql, name), lag, order.index(name))
    return sorted(found, key=rank)


def choose_target(view: crmstatus.ClusterStatus, pgsql: Primitive, to: Optional[str]) -> tuple[str, str]:
    """(current primary, target); Failed saying why the switch is refused."""
    promoted = view.promoted_nodes(pgsql.top)
    if len(promoted) != 1:
        raise Failed("there is no primary to switch over from" if not promoted else
                     f"{len(promoted)} primaries ({', '.join(promoted)}): fix the cluster first", EXIT_REFUSED)
    primary = promoted[0]
    best = candidates(view, pgsql)
    sync = pgsql.params.get("rep_mode") == "sync"
    if to is None:
        if not best:
            raise Failed("no standby can take over without losing data: none is "
                         + (f"the streaming synchronous standby ({STREAMING_SYNC})" if sync else "streaming"),
                         EXIT_REFUSED)
        return primary, best[0]
    if to not in common.node_list(pgsql):
        raise Failed(f"--to {to}: not a node of {pgsql.id}'s node_list ({' '.join(common.node_list(pgsql))})",
                     EXIT_USAGE)
    if to == primary:
        raise Failed(f"--to {to}: already the primary", EXIT_USAGE)
    if to not in best:
        data = view.attribute(to, ATTR_DATA) or "unset"
        node = view.node(to)
        if node is None or not node.online:
            why = "it is offline"
        elif node.standby or node.maintenance:
            why = "it is in standby or maintenance"
        elif to not in view.unpromoted_nodes(pgsql.top):
            why = "PostgreSQL does not run there"
        elif sync and data in STREAMING:
            why = (f"it is {data}, not the synchronous standby: commits the primary acknowledged may "
                   "be missing there (rep_mode=sync)")
        else:
            why = f"it is not streaming ({ATTR_DATA}={data})"
        hint = f"; {best[0]} can take over" if best else ""
        raise Failed(f"--to {to}: refused, the switch could lose data: {why}{hint}", EXIT_REFUSED)
    return primary, to


def switched(view: crmstatus.ClusterStatus, pgsql: Primitive, writer: Optional[str], target: str) -> list[str]:
    """What the switch still waits for: the target Promoted, with the writer VIP."""
    missing = []
    promoted = view.promoted_nodes(pgsql.top)
    if promoted != [target]:
        missing.append(f"{target} promoted (Promoted: {', '.join(promoted) or 'none'})")
    if writer and view.resource_nodes(writer) != [target]:
        missing.append(f"{writer} on {target}")
    return missing


def promotion_score(view: crmstatus.ClusterStatus, pgsql: Primitive, node: str) -> int:
    """The node's promotion score (master-<resource>), 0 when unset."""
    try:
        return crmstatus.parse_score(view.attribute(node, score_attr(pgsql.id)) or "0")
    except ValueError:
        return 0


def settled(view: crmstatus.ClusterStatus, pgsql: Primitive, target: str) -> list[str]:
    """What keeps a preference for `target` from being dropped safely: it must be promoted and
    outscore every running standby, or Pacemaker would move the primary again."""
    promoted = view.promoted_nodes(pgsql.top)
    if promoted != [target]:
        return [f"{target} promoted (Promoted: {', '.join(promoted) or 'none'})"]
    mine = promotion_score(view, pgsql, target)
    rivals = [n for n in view.unpromoted_nodes(pgsql.top) if promotion_score(view, pgsql, n) >= mine]
    return [f"{', '.join(rivals)} to score below {target}"] if rivals else []


def streaming_again(view: crmstatus.ClusterStatus, pgsql: Primitive, node: str) -> list[str]:
    if node not in view.unpromoted_nodes(pgsql.top):
        return [f"{node} running as a standby"]
    data = view.attribute(node, ATTR_DATA)
    return [] if data in STREAMING else [f"{node} streaming ({ATTR_DATA}={data or 'unset'})"]


def writer_vip(cluster_cib: common.Cib, pgsql: Primitive) -> Optional[str]:
    """The top id of the VIP carrying master_ip."""
    address = pgsql.params.get("master_ip")
    for vip in cluster_cib.primitives.values():
        if vip.params.get("ip") == address and vip.agent != pgsql.agent:
            return vip.top
    return None


# --- online switch --------------------------------------------------------------------------
@click.command("online-switch")
@click.option("--to", "to", metavar="NODE", help="The standby to promote (default: the best one).")
@timeout_option(120)
@json_option
def online_switch_cmd(to: Optional[str], timeout: int, as_json: bool) -> None:
    """Switch the primary to another node without losing data (cls_online_switch).

    Waits for the new primary and for the old one to stream again.
    """
    cluster = Cluster()
    view = cluster.view()
    cluster.require_quorum(view)
    if view.summary.maintenance_mode:
        raise Failed("the cluster is in maintenance mode: nothing can be switched", EXIT_REFUSED)
    cib, pgsql = cluster.pgsql()
    old, target = choose_target(view, pgsql, to)
    writer = writer_vip(cib, pgsql)
    say(f"switching the primary from {old} to {target}")
    cluster.call(["crm_resource", f"--resource={pgsql.top}", "--move", "--promoted", f"--node={target}"])
    try:
        promoted_after = wait(f"{target} to be promoted",
                              lambda: done_when_empty(switched(cluster.view(), pgsql, writer, target)), timeout)
        wait(f"{target}'s promotion to settle",
             lambda: done_when_empty(settled(cluster.view(), pgsql, target)), timeout)
    finally:
        cluster.call(["crm_resource", f"--resource={pgsql.top}", "--clear", "--promoted", f"--node={target}"])
    streaming_after = wait(f"{old} to stream from {target}",
                           lambda: done_when_empty(streaming_again(cluster.view(), pgsql, old)), timeout)
    emit({"old_primary": old, "new_primary": target, "promoted_after_s": round(promoted_after, 1),
          "old_primary_streaming_after_s": round(promoted_after + streaming_after, 1)},
         as_json, f"switched: {target} is the primary, {old} streams from it")


# --- reset master ----------------------------------------------------------------------------
def controldata_position(settings: dict[str, str]) -> tuple[int, str, bool]:
    """(timeline, checkpoint LSN, cleanly shut down) of this node's PGDATA, from pg_controldata."""
    import pwd
    from pha.pgsql import binaries
    from pha.pgsql.process import PgError
    try:
        bindir = binaries.bindir_for(settings["pgdata"], settings.get("pgctl", ""))
    except PgError as err:
        raise Failed(str(err)) from None
    account = pwd.getpwnam(settings["pgdba"])
    done = subprocess.run([os.path.join(bindir, "pg_controldata"), "-D", settings["pgdata"]],
                          capture_output=True, text=True, timeout=30, user=account.pw_uid,
                          group=account.pw_gid, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    if done.returncode != 0:
        raise Failed(f"pg_controldata -D {settings['pgdata']} failed: {done.stderr.strip()}")
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    timeline = int(fields.get("Latest checkpoint's TimeLineID", "0"))
    return timeline, fields.get("Latest checkpoint location", "0/0"), \
        fields.get("Database cluster state") == "shut down"


@click.command("reset-master")
@click.argument("node", required=False)
@click.option("--yes", is_flag=True, help="Confirm: this is for when no node can become primary.")
@timeout_option(180)
@json_option
def reset_master_cmd(node: Optional[str], yes: bool, timeout: int, as_json: bool) -> None:
    """Emergency: let a primary come up again (cls_reset_master).

    For when no node can become primary (every node refused, REPL_INFO names
    a lost node...). Stops PostgreSQL everywhere, forgets the data statuses,
    then with NODE (run it on NODE) records NODE as the primary in REPL_INFO
    and prefers it; without NODE clears REPL_INFO so the most advanced node
    wins. Nodes whose WAL went past the new primary's must be repaired after.
    """
    cluster = Cluster()
    view = cluster.view()
    cluster.require_quorum(view)
    cib, pgsql = cluster.pgsql()
    promoted = view.promoted_nodes(pgsql.top)
    if promoted:
        raise Failed(f"{promoted[0]} is the primary: reset-master is only for when no node can be; "
                     "use cls_online_switch to change the primary", EXIT_REFUSED)
    me = cluster.me()
    if node is not None and node not in common.node_list(pgsql):
        raise Failed(f"{node}: not a node of {pgsql.id}'s node_list", EXIT_USAGE)
    if node is not None and node != me:
        raise Failed(f"run cls_reset_master {node} on {node}: its WAL position is read there", EXIT_USAGE)
    if not yes:
        raise Failed("this stops PostgreSQL on every node and may discard the WAL of nodes ahead of the new "
                     "primary: confirm with --yes", EXIT_USAGE)
    settings = common.pgsql_settings(pgsql, cluster.agent_defaults(pgsql.agent))
    tops = [pgsql.top, *cib.dependents(pgsql.top)]
    cluster.set_meta(pgsql.top, "target-role", "Stopped")
    wait("PostgreSQL to stop everywhere", lambda: done_when_empty(stop_remaining(cluster.view(), tops)), timeout)
    for name in common.node_list(pgsql):   # stale statuses and scores would steer the election
        cluster.call(["crm_attribute", f"--node={name}", f"--name={ATTR_DATA}", "--lifetime=forever",
                      "--delete"], ok=(0, 105))
        cluster.call(["crm_attribute", f"--node={name}", f"--promotion={pgsql.id}", "--delete"], ok=(0, 105))
    prop = ["crm_attribute", "--type=crm_config", f"--set-name={PROPERTY_SET}",
            f"--name={REPL_INFO}"]
    if node is None:
        cluster.call(prop + ["--delete"])
        recorded = None
    else:
        timeline, lsn, _clean = controldata_position(settings)
        recorded = f"{node}|{timeline}|{lsn}"
        cluster.call(prop + [f"--update={recorded}"])
        cluster.call(["crm_resource", f"--resource={pgsql.top}", "--move", "--promoted", f"--node={node}"])
    say(f"REPL_INFO {'cleared' if recorded is None else '= ' + recorded}")
    cluster.call(["crm_resource", "--cleanup", f"--resource={pgsql.top}"])
    cluster.set_meta(pgsql.top, "target-role", None)
    try:
        if node is None:
            wait("a primary", lambda: (len(cluster.view().promoted_nodes(pgsql.top)) == 1, "no primary yet"),
                 timeout)
        else:
            wait(f"{node} to be the primary", lambda: done_when_empty(settled(cluster.view(), pgsql, node)),
                 timeout)
    finally:
        if node is not None:
            cluster.call(["crm_resource", f"--resource={pgsql.top}", "--clear", "--promoted", f"--node={node}"])
    view = cluster.view()
    primary = view.promoted_nodes(pgsql.top)[0]
    lagging = [n for n in common.node_list(pgsql) if n != primary and view.attribute(n, ATTR_DATA) not in STREAMING]
    for name in lagging:
        say(f"{name} does not stream yet: if it stays so, repair it (cls_repair_by_pg_rewind on {name})")
    emit({"primary": primary, "repl_info": recorded, "not_streaming": lagging}, as_json,
         f"{primary} is the primary")
    if primary != (node or primary):
        raise SystemExit(EXIT_FAILED)
