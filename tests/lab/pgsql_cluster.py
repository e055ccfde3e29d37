"""Lab helpers for PostgreSQL cluster tests: build the pha cluster, read and wait for its state.

`create_pgsql_cluster` applies pha.cluster's configuration inside node1 of a
lab brought up with `pg=True` (PostgreSQL initialised and stopped), then waits
until the cluster is healthy. The writer VIP is `Lab.vip(0)`, the reader VIP
`Lab.vip(1)`. Cluster views are taken from a node of the quorate partition,
so they stay right while a node is cut off.
"""
from __future__ import annotations

import dataclasses
import subprocess
import time
from typing import Callable, Iterable, Optional, TypeVar

from pha import cluster, crm, crmstatus
from pha.lab import config
from pha.lab.core import Lab, LabCommandError, LabError
from pha.lab.config import LabConfigError

RESOURCE = "pgsql"
CLONE = "pgsql-clone"
WRITER_VIP = "vip-writer"
READER_VIP = "vip-reader"
DATA_STATUS = f"{RESOURCE}-data-status"
STATUS = f"{RESOURCE}-status"
TMPDIR = "/var/lib/postgresql/tmp"  # node-private (the lab bind-mounts /var/lib/postgresql)
STOCK_CONNINFO_OPT = "keepalives_idle=60 keepalives_interval=5 keepalives_count=5"
CREATE_TIMEOUT = 120.0
MILESTONES = ("promoted", "writer_vip", "streaming", "reader_vip")
"""Bring-up steps: one Promoted, the writer VIP on it, every standby streaming, the reader VIP up."""

T = TypeVar("T")


def lab_pgsql_params(lab: Lab, agent: str = cluster.PHA_AGENT) -> dict[str, object]:
    """The agent parameters that fit the lab's PostgreSQL (see pha.lab.config)."""
    params: dict[str, object] = {
        "pgctl": f"{lab.pg_bin}/pg_ctl", "pgdata": config.PGDATA,
        "config": f"{config.PGDATA}/postgresql.conf", "pgport": config.PG_PORT,
        "socketdir": config.PG_SOCKET_DIR, "logfile": config.PG_LOG,
        "repuser": "postgres", "tmpdir": TMPDIR,
    }
    if agent == cluster.STOCK_AGENT:
        params["primary_conninfo_opt"] = STOCK_CONNINFO_OPT  # the ClusterLabs wiki's setting
    return params


def lab_spec(lab: Lab, rep_mode: str = "sync", agent: str = cluster.PHA_AGENT,
             reader: bool = True, **params: object) -> cluster.ClusterSpec:
    """The ClusterSpec of the lab cluster; `params` are ClusterSpec fields or agent parameters."""
    fields = {f.name for f in dataclasses.fields(cluster.ClusterSpec)}
    spec_fields = {k: v for k, v in params.items() if k in fields}
    agent_params = {**lab_pgsql_params(lab, agent), **{k: v for k, v in params.items() if k not in fields}}
    settings: dict[str, object] = dict(
        nodes=tuple(lab.nodes), writer_ip=lab.vip(0), reader_ip=lab.vip(1) if reader else None,
        agent=agent, rep_mode=rep_mode, pgsql_params=agent_params, resource_id=RESOURCE,
        writer_vip_id=WRITER_VIP, reader_vip_id=READER_VIP, nic=config.NODE_IFNAME,
        cidr_netmask=config.PREFIXLEN)
    return cluster.ClusterSpec(**{**settings, **spec_fields})


def node_runner(lab: Lab, node: str) -> crm.Runner:
    """A pha.crm.Runner that runs argument lists inside a lab node."""
    def run(argv, timeout: float) -> crm.CommandResult:
        try:
            done = lab.exec(node, list(argv), check=False, timeout=timeout, env={"LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"timed out after {timeout:g}s") from None
        return crm.CommandResult(done.returncode, done.stdout, done.stderr)
    return run


def create_pgsql_cluster(lab: Lab, rep_mode: str = "sync", agent: str = cluster.PHA_AGENT,
                         reader: bool = True, timeout: float = CREATE_TIMEOUT,
                         **params: object) -> dict[str, float]:
    """Configure the cluster from node1 and wait until it is healthy; return timings (s).

    "pcs" is the time to build and push the configuration; "healthy" the time
    from the push to 1 Promoted, the others Unpromoted and streaming, and the
    VIPs up; the MILESTONES when each of those was first seen.
    """
    spec = lab_spec(lab, rep_mode, agent, reader, **params)
    run = node_runner(lab, lab.nodes[0])
    t0 = time.monotonic()
    cluster.apply(cluster.pcs_commands(spec, cluster.detect_versions(run)), run)
    timings = {"pcs": round(time.monotonic() - t0, 2)}
    milestones: dict[str, float] = {}
    timings["healthy"] = round(wait_healthy(lab, timeout, rep_mode=rep_mode, milestones=milestones), 2)
    timings.update((name, round(seconds, 2)) for name, seconds in milestones.items())
    return timings


# --- reading the cluster ---------------------------------------------------------
def status(lab: Lab, nodes: Optional[Iterable[str]] = None) -> crmstatus.ClusterStatus:
    """The cluster as the first of `nodes` (default: all) in a quorate partition sees it."""
    last: object = "no node answered"
    for node in nodes or lab.nodes:
        try:
            view = lab.view(node, timeout=10)
        except (LabCommandError, LabConfigError, subprocess.TimeoutExpired) as exc:
            last = exc
            continue
        if view.summary.quorum:
            return view
        last = f"{node} has no quorum"
    raise LabError(f"no quorate view of the cluster: {last}")


def attrs(lab: Lab, nodes: Optional[Iterable[str]] = None) -> dict[str, dict[str, str]]:
    """Node attributes (node -> name -> value), from crm_mon's XML."""
    return status(lab, nodes).node_attributes


def primary_of(lab: Lab, nodes: Optional[Iterable[str]] = None) -> str:
    """The one node where the pgsql clone is Promoted; LabError unless exactly one."""
    promoted = status(lab, nodes).promoted_nodes(CLONE)
    if len(promoted) != 1:
        raise LabError(f"expected one Promoted {CLONE}, found {promoted or 'none'}")
    return promoted[0]


def health_problems(view: crmstatus.ClusterStatus, nodes: Iterable[str], rep_mode: Optional[str] = None) -> list[str]:
    """Why `view` is not a healthy cluster of `nodes` (empty when it is).

    Healthy: one Promoted, every other node Unpromoted with a STREAMING
    data status (in sync mode one of them STREAMING|SYNC), the writer VIP on
    the primary, and the reader VIP (when configured) running.
    """
    nodes = list(nodes)
    problems = []
    promoted = view.promoted_nodes(CLONE)
    unpromoted = view.unpromoted_nodes(CLONE)
    if len(promoted) != 1:
        problems.append(f"Promoted on {promoted or 'no node'}")
    for node in nodes:
        if node in promoted:
            continue
        data_status = view.attribute(node, DATA_STATUS) or "unset"
        if node not in unpromoted:
            problems.append(f"{node} not Unpromoted")
        elif not data_status.startswith("STREAMING"):
            problems.append(f"{node} {DATA_STATUS}={data_status}")
    if rep_mode == "sync" and len(nodes) > 1 and not any(
            view.attribute(n, DATA_STATUS) == "STREAMING|SYNC" for n in nodes):
        problems.append("no STREAMING|SYNC standby")
    writer = view.resource_nodes(WRITER_VIP)
    if len(promoted) == 1 and writer != promoted:
        problems.append(f"{WRITER_VIP} on {writer or 'no node'}, primary {promoted[0]}")
    if view.instances(READER_VIP) and not view.resource_nodes(READER_VIP):
        problems.append(f"{READER_VIP} not running")
    return problems


def milestones_reached(view: crmstatus.ClusterStatus, nodes: Iterable[str]) -> set[str]:
    """Which of MILESTONES `view` shows."""
    promoted = view.promoted_nodes(CLONE)
    standbys = [n for n in nodes if n not in promoted]
    reached = set()
    if len(promoted) == 1:
        reached.add("promoted")
        if view.resource_nodes(WRITER_VIP) == promoted:
            reached.add("writer_vip")
    if all(n in view.unpromoted_nodes(CLONE)
           and (view.attribute(n, DATA_STATUS) or "").startswith("STREAMING") for n in standbys):
        reached.add("streaming")
    if view.resource_nodes(READER_VIP):
        reached.add("reader_vip")
    return reached


def wait_healthy(lab: Lab, timeout: float = 60, nodes: Optional[Iterable[str]] = None,
                 rep_mode: Optional[str] = None, step: float = 0.2,
                 milestones: Optional[dict[str, float]] = None) -> float:
    """Wait until the cluster of `nodes` (default: all) is healthy; return the seconds waited.

    `milestones`, when given, gets the seconds at which each of MILESTONES was first seen.
    """
    wanted = list(nodes or lab.nodes)
    t0 = time.monotonic()

    def healthy() -> bool:
        view = status(lab, wanted)
        if milestones is not None:
            for name in milestones_reached(view, wanted) - set(milestones):
                milestones[name] = time.monotonic() - t0
        return not health_problems(view, wanted, rep_mode)

    return wait_for(f"healthy cluster of {', '.join(wanted)}", healthy, timeout, step,
                    explain=lambda: "; ".join(health_problems(status(lab, wanted), wanted, rep_mode)))[1]


def wait_for(what: str, check: Callable[[], T], timeout: float, step: float = 0.2,
             explain: Optional[Callable[[], str]] = None) -> tuple[T, float]:
    """Poll check() until it returns something truthy; return (value, seconds).

    LabError, a failed lab command or a timed-out one counts as "not yet".
    """
    t0 = time.monotonic()
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value, time.monotonic() - t0
        except (LabError, LabCommandError, LabConfigError, subprocess.TimeoutExpired) as exc:
            last = exc
        if time.monotonic() - t0 > timeout:
            detail = last
            if explain is not None:
                try:
                    detail = explain()
                except (LabError, LabCommandError, LabConfigError, subprocess.TimeoutExpired) as exc:
                    detail = exc
            raise LabError(f"{what}: not within {timeout:.0f}s ({detail})")
        time.sleep(step)


def rejoined_or_refused(lab, old: str, observers: list[str]) -> str:
    """Wait until the old primary streams again, or the fork guard refused it."""
    def verdict() -> str:
        view = status(lab, observers)
        refusals = [f for f in view.failures if f.node == old and "cls_repair_by_pg_rewind" in f.exit_reason]
        if refusals:
            return "refused: " + refusals[0].exit_reason
        data = view.attribute(old, "pgsql-data-status") or ""
        return "rejoined" if old in view.unpromoted_nodes(CLONE) and data.startswith("STREAMING") else ""
    return wait_for(f"{old} rejoined or refused", verdict, timeout=90)[0]
