"""`pha status` (cls_status) and `pha master` (cls_master).

`summarize(view, cib, repl_info, lvs)` is pure: from crm_mon's XML, the CIB
and REPL_INFO it builds pha's summary (the primary; each standby's
pgsql-status, pgsql-data-status and lag; REPL_INFO; the VIPs; the LVS real
servers) and the health verdict. Healthy means pha4pgsql's criteria: every
node of node_list started, one primary, every standby STREAMING with SYNC,
POTENTIAL or ASYNC; plus quorum, no maintenance, the VIPs where they belong
and, in sync mode, a synchronous standby. Anything else is a named problem.
"""
from __future__ import annotations

from typing import Optional

import click

from pha import crmstatus, fencing
from pha.commands import common
from pha.commands.common import EXIT_FAILED, Cib, Cluster, Failed, emit, json_option
from pha.pgsql import decide
from pha.pgsql.names import ATTR_DATA, ATTR_LAG, ATTR_RECEIVER, ATTR_REWOUND, ATTR_STATUS, STREAMING, STREAMING_SYNC

VIP_AGENTS = ("ocf:pha:vip", "ocf:heartbeat:IPaddr2")
LVS_AGENT = "ocf:pha:lvsdr"
REALSVR_AGENT = "ocf:pha:lvsdr-realsvr"


def parse_repl_info(text: Optional[str]) -> Optional[dict]:
    """REPL_INFO (primary|timeline|switch-LSN) as a dict; the raw text alone when malformed."""
    try:
        info = decide.ReplInfo.parse(text)
    except ValueError:
        return {"raw": text}
    if info is None:
        return None
    return {"raw": text, "primary": info.primary, "timeline": info.timeline,
            "switch_lsn": decide.format_lsn(info.switch_lsn)}


def vip_role(cib: Cib, vip: str, clone: str, is_master_ip: bool) -> Optional[str]:
    """A VIP's role, from its colocation with the PostgreSQL clone: "writer" with the Promoted
    role, "reader" with the clone in any other role (Started, Unpromoted); a VIP without such a
    colocation is the writer only when it is the agent's master_ip, else not pha's (None)."""
    roles = [c.with_role for c in cib.colocations
             if c.rsc == vip and c.with_rsc == clone and _attracts(c.score)]
    if "Promoted" in roles or (not roles and is_master_ip):
        return "writer"
    return "reader" if roles else None


def _attracts(score: str) -> bool:
    try:
        return crmstatus.parse_score(score) > 0
    except ValueError:
        return False


def summarize(view: crmstatus.ClusterStatus, cib: Cib, repl_info: Optional[str],
              lvs: Optional[dict] = None) -> dict:
    """pha's view of the cluster and its health verdict (pure)."""
    pgsql = cib.pgsql()
    clone = pgsql.top
    nodes = common.node_list(pgsql) or [n.name for n in view.nodes]
    rep_mode = pgsql.params.get("rep_mode", "async")
    problems: list[str] = []
    warnings: list[str] = []
    summary = view.summary
    if not summary.quorum:
        problems.append("no quorum: this node's partition cannot run resources"
                        + ("" if summary.dc else " (no DC)"))
    if summary.maintenance_mode:
        problems.append("the cluster is in maintenance mode: nothing fails over (cls_unmaintenance)")
    if summary.stop_all_resources:
        problems.append("stop-all-resources is set")
    if cib.target_role(clone) == "Stopped":
        problems.append(f"{clone} is disabled (cls_start)")
    promoted = view.promoted_nodes(clone)
    unpromoted = view.unpromoted_nodes(clone)
    failures_by_node: dict[str, list[crmstatus.Failure]] = {}
    for failure in view.failures:
        failures_by_node.setdefault(failure.node, []).append(failure)
    node_report = {}
    for name in nodes:
        node = view.node(name)
        attrs = view.node_attributes.get(name, {})
        role = "Promoted" if name in promoted else "Unpromoted" if name in unpromoted else "Stopped"
        entry = {"online": bool(node and node.online), "standby": bool(node and node.standby),
                 "maintenance": bool(node and node.maintenance), "role": role,
                 "pgsql_status": attrs.get(ATTR_STATUS), "data_status": attrs.get(ATTR_DATA),
                 "lag_bytes": common.int_attribute(view, name, ATTR_LAG), "receiver": attrs.get(ATTR_RECEIVER),
                 "rewound": attrs.get(ATTR_REWOUND)}
        node_report[name] = entry
        if node is None:
            problems.append(f"{name} (node_list) is not a node of this cluster")
        elif not node.online:
            problems.append(f"{name} is offline")
        elif node.standby:
            problems.append(f"{name} is in standby (cls_unstandby_node {name})")
        elif node.maintenance:
            problems.append(f"{name} is in maintenance (cls_unmaintenance_node {name})")
        elif role == "Stopped":
            reasons = [(f.exit_reason or f.rc_text).strip() for f in failures_by_node.get(name, [])
                       if f.op_key.startswith(f"{pgsql.id}_")]
            problems.append(f"PostgreSQL is not started on {name}"
                            + (f" ({reasons[0]})" if reasons and reasons[0] else ""))
    if len(promoted) == 0:
        problems.append("no primary")
    elif len(promoted) > 1:
        problems.append(f"{len(promoted)} primaries: {', '.join(promoted)}")
    standbys = []
    for name in nodes:
        entry = node_report[name]
        if entry["role"] != "Unpromoted":
            continue
        standbys.append({"node": name, **{k: entry[k] for k in
                                          ("pgsql_status", "data_status", "lag_bytes", "receiver")}})
        if entry["data_status"] not in STREAMING:
            problems.append(f"{name} is not streaming ({ATTR_DATA}={entry['data_status'] or 'unset'})")
    streaming = [s for s in standbys if s["data_status"] in STREAMING]
    if rep_mode == "sync" and streaming and not any(s["data_status"] == STREAMING_SYNC for s in standbys):
        problems.append(f"rep_mode is sync but no standby is {STREAMING_SYNC}")
    vips = {}
    writer_ip = pgsql.params.get("master_ip")
    for vip in cib.by_agent(*VIP_AGENTS):
        where = view.resource_nodes(vip.top)
        address = vip.params.get("ip", "")
        kind = vip_role(cib, vip.top, clone, address == writer_ip)
        if kind is None:
            continue    # an address the cluster runs for something else: not pha's VIP
        vips[vip.id] = {"address": address, "role": kind, "nodes": where}
        if not where:
            problems.append(f"{kind} VIP {vip.id} ({address}) is not running")
        elif kind == "writer" and len(promoted) == 1 and where != promoted:
            problems.append(f"writer VIP {vip.id} is on {', '.join(where)}, the primary is {promoted[0]}")
    for director in cib.by_agent(LVS_AGENT):
        if not view.resource_nodes(director.top):
            problems.append(f"LVS director {director.id} is not running")
    warnings += fencing.cluster_warnings(summary.fencing_enabled, (r.agent for r in view.resources))
    for failure in view.failures:
        warnings.append(f"failed {failure.task} of {failure.op_key.rsplit('_', 2)[0]} on {failure.node}: "
                        f"{(failure.exit_reason or failure.rc_text).strip()}")
    healthy = not problems
    return {
        "healthy": healthy,
        "verdict": "healthy" if healthy else "UNHEALTHY: " + "; ".join(problems),
        "problems": problems,
        "warnings": warnings,
        "quorum": summary.quorum,
        "dc": summary.dc,
        "maintenance_mode": summary.maintenance_mode,
        "resource": pgsql.id,
        "clone": clone,
        "rep_mode": rep_mode,
        "primary": promoted[0] if len(promoted) == 1 else None,
        "nodes": node_report,
        "standbys": standbys,
        "repl_info": parse_repl_info(repl_info),
        "vips": vips,
        "lvs": lvs,
    }


def lvs_summary(view: crmstatus.ClusterStatus, cib: Cib, me: Optional[str]) -> Optional[dict]:
    """The LVS director and its real servers; weights read from IPVS when the director is this node."""
    directors = cib.by_agent(LVS_AGENT)
    if not directors:
        return None
    director = directors[0]
    where = view.resource_nodes(director.top)
    vip, port = director.params.get("vip", ""), common.as_int(director.params.get("port"), 5432)
    realsvr = [n for p in cib.by_agent(REALSVR_AGENT) for n in view.resource_nodes(p.top)]
    report: dict = {"director": where[0] if where else None, "service": f"{vip}:{port}",
                    "realsvr_nodes": realsvr, "real_servers": None, "note": None}
    if not where:
        report["note"] = "the director is not running"
    elif where[0] != me:
        report["note"] = f"weights are in {where[0]}'s kernel: run cls_status there"
    else:
        report.update(read_ipvs(vip, port))
    return report


def read_ipvs(vip: str, port: int) -> dict:
    """This node's IPVS service vip:port: its real servers and weights."""
    try:
        from pha.ipvs import IPVSClient, IPVSError, VirtualService
        with IPVSClient() as client:
            state = client.read(VirtualService(vip, port))
    except (IPVSError, OSError, ValueError, ImportError) as exc:
        return {"note": f"cannot read IPVS: {exc}"}
    if state is None:
        return {"note": f"no IPVS service {vip}:{port} on this node"}
    return {"real_servers": [{"address": rs.address, "port": rs.port, "weight": rs.weight}
                             for rs in state.real_servers]}


def collect(cluster: Cluster, read_lvs: bool = True) -> dict:
    """Ask Pacemaker and build the summary."""
    view = cluster.view()
    cib = cluster.cib()
    lvs = lvs_summary(view, cib, cluster.me()) if read_lvs and cib.by_agent(LVS_AGENT) else None
    return summarize(view, cib, cluster.repl_info(), lvs)


def render(report: dict) -> str:
    """The summary as text."""
    lines = ["--- pha ---"]
    primary = report["primary"]
    writer = [f"{vid} {v['address']} on {', '.join(v['nodes']) or 'no node'}"
              for vid, v in report["vips"].items() if v["role"] == "writer"]
    lines.append(f"primary:    {primary or '-'}" + (f"   ({'; '.join(writer)})" if writer else ""))
    for i, standby in enumerate(report["standbys"]):
        lag = "-" if standby["lag_bytes"] is None else f"{standby['lag_bytes']} B"
        lines.append(f"{'standbys:' if i == 0 else '':<12}{standby['node']:<10} "
                     f"{standby['pgsql_status'] or '-':<13} {standby['data_status'] or '-':<20} lag {lag}")
    if not report["standbys"]:
        lines.append("standbys:   -")
    info = report["repl_info"]
    lines.append(f"REPL_INFO:  {info['raw'] if info else '-'}  (rep_mode {report['rep_mode']})")
    for name, entry in report["nodes"].items():
        when, _, rest = (entry.get("rewound") or "").partition(" ")
        size, _, kept = rest.partition(" ")
        if when:   # the agent's last automatic rewind there (pgsql-rewound)
            lines.append(f"rewound:    {name} at {when}: {size} bytes of WAL kept in {kept}")
    for vid, vip in report["vips"].items():
        if vip["role"] == "reader":
            lines.append(f"reader VIP: {vid} {vip['address']} on {', '.join(vip['nodes']) or 'no node'}")
    lvs = report["lvs"]
    if lvs:
        servers = lvs["real_servers"]
        shown = ", ".join(f"{rs['address']} weight {rs['weight']}" for rs in servers) if servers is not None \
            else (lvs["note"] or "-")
        lines.append(f"LVS:        {lvs['service']} director {lvs['director'] or '-'}; real servers: {shown}")
    for warning in report["warnings"]:
        lines.append(f"warning:    {warning}")
    lines.append(f"verdict:    {report['verdict']}")
    return "\n".join(lines)


@click.command("status")
@json_option
@click.option("--brief", is_flag=True, help="pha's summary only, without crm_mon's.")
def status_cmd(as_json: bool, brief: bool) -> None:
    """crm_mon plus pha's summary and health verdict (cls_status). Exit 0 only when healthy."""
    cluster = Cluster()
    report = collect(cluster)
    if not as_json and not brief:
        shown = cluster.call(["crm_mon", "--one-shot", "--inactive", "--show-node-attributes",
                              "--failcounts"], ok=(0, 1, 102, 105))
        click.echo(shown.stdout.rstrip())
    emit(report, as_json, render(report))
    if not report["healthy"]:
        raise SystemExit(EXIT_FAILED)


@click.command("master")
@json_option
def master_cmd(as_json: bool) -> None:
    """Print the primary's node name (cls_master)."""
    cluster = Cluster()
    view = cluster.view()
    cluster.require_quorum(view)
    _, pgsql = cluster.pgsql()
    promoted = view.promoted_nodes(pgsql.top)
    if len(promoted) != 1:
        raise Failed("no primary" if not promoted else f"{len(promoted)} primaries: {', '.join(promoted)}")
    emit({"primary": promoted[0]}, as_json, promoted[0])
