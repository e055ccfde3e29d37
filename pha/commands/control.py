"""Starting, stopping and holding the cluster: start, stop, cleanup, maintenance
and standby, cluster-wide or per node (cls_start, cls_stop, cls_cleanup,
cls_maintenance, cls_unmaintenance, cls_maintenance_node,
cls_unmaintenance_node, cls_standby_node, cls_unstandby_node).

start / stop act on the pgsql clone; the VIPs and the LVS resources follow it
through their colocations. Each waits until the resources reached their state
and names those that did not. The `*_missing` functions are pure.
"""
from __future__ import annotations

from typing import Optional

import click

from pha import crmstatus
from pha.commands import common
from pha.commands.common import (EXIT_REFUSED, EXIT_USAGE, Cib, Cluster, Failed, Primitive, emit, json_option,
                                 say, timeout_option, wait)
from pha.pgsql.names import ATTR_DATA, STREAMING


# --- what is missing (pure) -------------------------------------------------------------
def start_missing(view: crmstatus.ClusterStatus, cib: Cib, pgsql: Primitive) -> list[str]:
    """What keeps the cluster from being started: PostgreSQL on every available node of
    node_list, one primary, the standbys streaming, and every dependent resource running."""
    missing = []
    clone = pgsql.top
    promoted = view.promoted_nodes(clone)
    unpromoted = view.unpromoted_nodes(clone)
    for name in common.node_list(pgsql):
        node = view.node(name)
        if node is None or not node.online or node.standby or node.maintenance:
            continue
        if name not in promoted and name not in unpromoted:
            missing.append(f"PostgreSQL on {name}")
        elif name in unpromoted and view.attribute(name, ATTR_DATA) not in STREAMING:
            missing.append(f"{name} streaming ({ATTR_DATA}={view.attribute(name, ATTR_DATA) or 'unset'})")
    if len(promoted) != 1:
        missing.insert(0, "a primary" if not promoted else f"one primary, not {len(promoted)}")
    for top in cib.dependents(clone):
        if not view.resource_nodes(top):
            missing.append(top)
    return missing


def stop_remaining(view: crmstatus.ClusterStatus, tops: list[str]) -> list[str]:
    """Which of the resources still run somewhere, with where."""
    return [f"{top} on {', '.join(view.resource_nodes(top))}" for top in tops if view.resource_nodes(top)]


def resources_on(view: crmstatus.ClusterStatus, node: str) -> list[str]:
    """Resource instances active on `node`."""
    return sorted({r.clone or r.id for r in view.resources if r.active and node in r.nodes})


def done_when_empty(missing: list[str]) -> tuple[bool, str]:
    """A wait check from a list of what is missing."""
    return not missing, "; ".join(missing)


# --- start / stop ------------------------------------------------------------------------------
def _refuse_in_maintenance(view: crmstatus.ClusterStatus, what: str) -> None:
    if view.summary.maintenance_mode:
        raise Failed(f"the cluster is in maintenance mode: Pacemaker would not {what} anything "
                     "(cls_unmaintenance first)", EXIT_REFUSED)


@click.command("start")
@timeout_option(120)
@json_option
def start_cmd(timeout: int, as_json: bool) -> None:
    """Enable PostgreSQL and its VIPs, and wait until they run (cls_start)."""
    cluster = Cluster()
    view = cluster.view()
    cluster.require_quorum(view)
    _refuse_in_maintenance(view, "start")
    cib, pgsql = cluster.pgsql()
    tops = [pgsql.top, *cib.dependents(pgsql.top)]
    disabled = [top for top in tops if cib.target_role(top) in ("Stopped", "Unpromoted", "Slave")]
    if any(f.op_key.startswith(f"{pgsql.id}_") for f in view.failures):
        cluster.call(["crm_resource", "--cleanup", f"--resource={pgsql.top}"])
        say(f"cleared the failures of {pgsql.top}")
    for top in disabled:
        cluster.set_meta(top, "target-role", None)
    say(f"enabled {', '.join(disabled)}" if disabled else "nothing was disabled")
    seconds = wait("PostgreSQL, its VIPs and replication to run",
                   lambda: done_when_empty(start_missing(cluster.view(), cib, pgsql)), timeout)
    emit({"enabled": disabled, "seconds": round(seconds, 1)}, as_json, "started")


@click.command("stop")
@timeout_option(120)
@json_option
def stop_cmd(timeout: int, as_json: bool) -> None:
    """Disable PostgreSQL (its VIPs follow) and wait until all stopped (cls_stop)."""
    cluster = Cluster()
    view = cluster.view()
    cluster.require_quorum(view)
    _refuse_in_maintenance(view, "stop")
    cib, pgsql = cluster.pgsql()
    tops = [pgsql.top, *cib.dependents(pgsql.top)]
    cluster.set_meta(pgsql.top, "target-role", "Stopped")
    seconds = wait(f"{', '.join(tops)} to stop",
                   lambda: done_when_empty(stop_remaining(cluster.view(), tops)), timeout)
    emit({"stopped": tops, "seconds": round(seconds, 1)}, as_json, "stopped")


# --- cleanup --------------------------------------------------------------------------------------
@click.command("cleanup")
@click.option("--resource", help="Only this resource (default: all).")
@click.option("--node", help="Only on this node (default: all).")
@json_option
def cleanup_cmd(resource: Optional[str], node: Optional[str], as_json: bool) -> None:
    """Clear failed actions and fail counts (cls_cleanup)."""
    cluster = Cluster()
    view = cluster.view()
    if node is not None:
        cluster.check_node(view, node)
    primitive = None
    if resource is not None:
        cib = cluster.cib()
        primitive = cib.primitives.get(resource) or cib.primitive_of(resource)
        if primitive is None:
            raise Failed(f"--resource {resource}: no such resource", EXIT_USAGE)
    failures = [f for f in view.failures if (node is None or f.node == node)
                and (primitive is None or f.op_key.startswith(f"{primitive.id}_"))]
    counts = {n: c for n, c in view.fail_counts.items() if node is None or n == node}
    argv = ["crm_resource", "--cleanup"]
    argv += [f"--resource={resource}"] if resource else []
    argv += [f"--node={node}"] if node else []
    cluster.call(argv, timeout=60)
    cleared = [{"node": f.node, "operation": f.op_key, "reason": f.exit_reason or f.rc_text} for f in failures]
    text = "\n".join(f"cleared: {c['operation']} on {c['node']}: {c['reason']}" for c in cleared) or \
        "no failed actions"
    emit({"cleared": cleared, "fail_counts": counts}, as_json, text)


# --- maintenance ------------------------------------------------------------------------------------
def _set_cluster_maintenance(on: bool, timeout: int) -> None:
    cluster = Cluster()
    argv = ["crm_attribute", "--type=crm_config", "--name=maintenance-mode"]
    cluster.call(argv + (["--update=true"] if on else ["--delete"]))

    def reached() -> tuple[bool, str]:
        view = cluster.view()
        unmanaged = [r.clone or r.id for r in view.resources if not r.managed]
        if on:
            return view.summary.maintenance_mode, "maintenance-mode not seen yet"
        return (not view.summary.maintenance_mode and not unmanaged,
                f"unmanaged: {', '.join(sorted(set(unmanaged)))}" if unmanaged else "maintenance-mode still on")
    wait("maintenance mode" if on else "Pacemaker to manage the resources again", reached, timeout)


@click.command("maintenance")
@timeout_option(30)
def maintenance_cmd(timeout: int) -> None:
    """Cluster maintenance mode: Pacemaker stops managing resources, which keep running (cls_maintenance)."""
    _set_cluster_maintenance(True, timeout)
    click.echo("maintenance mode on: nothing is monitored, started, stopped or failed over")


@click.command("unmaintenance")
@timeout_option(60)
def unmaintenance_cmd(timeout: int) -> None:
    """Leave cluster maintenance mode (cls_unmaintenance)."""
    _set_cluster_maintenance(False, timeout)
    click.echo("maintenance mode off")


def _set_node_attribute(node: str, name: str, value: Optional[str]) -> Cluster:
    cluster = Cluster()
    cluster.check_node(cluster.view(), node)
    argv = ["crm_attribute", f"--node={node}", f"--name={name}", "--lifetime=forever"]
    cluster.call(argv + ([f"--update={value}"] if value is not None else ["--delete"]))
    return cluster


def _node_flag(cluster: Cluster, node: str, flag: str, wanted: bool) -> tuple[bool, str]:
    entry = cluster.view().node(node)
    state = bool(entry and getattr(entry, flag))
    return state == wanted, f"{node} {flag}={state}"


@click.command("maintenance-node")
@click.argument("node")
@timeout_option(30)
def maintenance_node_cmd(node: str, timeout: int) -> None:
    """Put NODE in maintenance: its resources keep running unmanaged (cls_maintenance_node)."""
    cluster = _set_node_attribute(node, "maintenance", "on")
    wait(f"{node} in maintenance", lambda: _node_flag(cluster, node, "maintenance", True), timeout)
    click.echo(f"{node} is in maintenance")


@click.command("unmaintenance-node")
@click.argument("node")
@timeout_option(30)
def unmaintenance_node_cmd(node: str, timeout: int) -> None:
    """Take NODE out of maintenance (cls_unmaintenance_node)."""
    cluster = _set_node_attribute(node, "maintenance", None)
    wait(f"{node} out of maintenance", lambda: _node_flag(cluster, node, "maintenance", False), timeout)
    click.echo(f"{node} is out of maintenance")


# --- standby ----------------------------------------------------------------------------------------
def standby_missing(view: crmstatus.ClusterStatus, node: str, clone: str, had_primary: bool) -> list[str]:
    """What is left to do after NODE went to standby: its resources gone, a primary elsewhere."""
    missing = [f"{r} still on {node}" for r in resources_on(view, node)]
    promoted = [n for n in view.promoted_nodes(clone) if n != node]
    if had_primary and len(promoted) != 1:
        missing.append("a primary on another node")
    return missing


def unstandby_missing(view: crmstatus.ClusterStatus, node: str, pgsql: Primitive) -> list[str]:
    """What is left to do after NODE left standby: PostgreSQL there, primary or streaming."""
    entry = view.node(node)
    if entry is None or not entry.online:
        return [f"{node} online"]
    if node not in common.node_list(pgsql):
        return []
    if node in view.promoted_nodes(pgsql.top):
        return []
    if node not in view.unpromoted_nodes(pgsql.top):
        return [f"PostgreSQL on {node}"]
    data = view.attribute(node, ATTR_DATA)
    return [] if data in STREAMING else [f"{node} streaming ({ATTR_DATA}={data or 'unset'})"]


def standby_node(cluster: Cluster, node: str, timeout: int) -> float:
    """Put `node` in standby and wait until its resources moved; return the seconds waited."""
    view = cluster.view()
    cluster.check_node(view, node)
    cluster.require_quorum(view)
    _, pgsql = cluster.pgsql()
    had_primary = bool(view.promoted_nodes(pgsql.top))
    cluster.call(["crm_attribute", f"--node={node}", "--name=standby", "--lifetime=forever", "--update=on"])
    return wait(f"the resources to leave {node}",
                lambda: done_when_empty(standby_missing(cluster.view(), node, pgsql.top, had_primary)), timeout)


def unstandby_node(cluster: Cluster, node: str, timeout: int) -> float:
    """Take `node` out of standby and wait until PostgreSQL runs (and streams) there."""
    view = cluster.view()
    cluster.check_node(view, node)
    _, pgsql = cluster.pgsql()
    cluster.call(["crm_attribute", f"--node={node}", "--name=standby", "--lifetime=forever", "--delete"])
    return wait(f"PostgreSQL to run on {node}",
                lambda: done_when_empty(unstandby_missing(cluster.view(), node, pgsql)), timeout)


@click.command("standby-node")
@click.argument("node")
@timeout_option(120)
@json_option
def standby_node_cmd(node: str, timeout: int, as_json: bool) -> None:
    """Put NODE in standby and wait for its resources to move (cls_standby_node)."""
    seconds = standby_node(Cluster(), node, timeout)
    emit({"node": node, "standby": True, "seconds": round(seconds, 1)}, as_json, f"{node} is in standby")


@click.command("unstandby-node")
@click.argument("node")
@timeout_option(120)
@json_option
def unstandby_node_cmd(node: str, timeout: int, as_json: bool) -> None:
    """Take NODE out of standby and wait for PostgreSQL there (cls_unstandby_node)."""
    seconds = unstandby_node(Cluster(), node, timeout)
    emit({"node": node, "standby": False, "seconds": round(seconds, 1)}, as_json, f"{node} is out of standby")
