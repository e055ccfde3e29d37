"""pha.cluster: the pcs commands of a PostgreSQL cluster, their validation, and applying them.

Also the pure analysis of the lab writer harness (tests/lab/writer.py), which
the cluster tests rely on to count lost inserts.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import pytest

from pha import cluster, crm

pytestmark = pytest.mark.unit

NODES = ("node1", "node2", "node3")
PARAMS = {"pgctl": "/usr/lib/postgresql/15/bin/pg_ctl", "pgdata": "/var/lib/postgresql/15/pha",
          "pgport": 5432, "socketdir": "/run/postgresql", "repuser": "postgres",
          "tmpdir": "/var/lib/postgresql/tmp"}


def spec(**overrides) -> cluster.ClusterSpec:
    fields = dict(nodes=NODES, writer_ip="10.79.0.100", reader_ip="10.79.0.101", pgsql_params=PARAMS)
    fields.update(overrides)
    return cluster.ClusterSpec(**fields)


def command(commands: list[list[str]], *prefix: str) -> list[str]:
    found = [argv for argv in commands if argv[:len(prefix)] == list(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def options(argv: list[str]) -> dict[str, str]:
    """name=value words of an argv up to its first "op" (the resource's own options)."""
    words = argv[:argv.index("op")] if "op" in argv else argv
    return dict(w.split("=", 1) for w in words if "=" in w)


def ops(argv: list[str]) -> list[list[str]]:
    """The `op ACTION k=v...` groups of a pcs resource create argv."""
    end = argv.index("promotable") if "promotable" in argv else len(argv)
    groups: list[list[str]] = []
    for word in argv[argv.index("op"):end]:
        if word == "op":
            groups.append([])
        else:
            groups[-1].append(word)
    return groups


# --- the commands ------------------------------------------------------------------
def test_pha_cluster_commands() -> None:
    commands = cluster.pcs_commands(spec())
    assert commands[0] == ["pcs", "property", "set", "no-quorum-policy=stop", "stonith-enabled=false"]
    assert commands[1] == ["pcs", "resource", "defaults", "update", "migration-threshold=3",
                           "failure-timeout=20s", "resource-stickiness=100"]
    create = command(commands, "pcs", "resource", "create", "pgsql")
    assert create[4] == "ocf:pha:pgsql"
    assert options(create) == {**{k: str(v) for k, v in PARAMS.items()}, "rep_mode": "sync",
                               "node_list": "node1 node2 node3", "master_ip": "10.79.0.100"}
    assert ["monitor", "interval=2s", "role=Promoted", "timeout=10s"] in ops(create)
    assert ["monitor", "interval=3s", "role=Unpromoted", "timeout=10s"] in ops(create)
    assert ["start", "timeout=300s"] in ops(create)
    for action in ("stop", "promote", "demote", "notify"):
        assert [action, "timeout=60s"] in ops(create)
    assert create[create.index("promotable"):] == [
        "promotable", "pgsql-clone", "notify=false", "promoted-max=1", "promoted-node-max=1",
        "clone-max=3", "clone-node-max=1"]


def test_writer_vip_follows_the_promoted_role() -> None:
    commands = cluster.pcs_commands(spec(nic="eth0"))
    vip = command(commands, "pcs", "resource", "create", "vip-writer")
    assert vip[4] == "ocf:pha:vip"
    assert options(vip) == {"ip": "10.79.0.100", "cidr_netmask": "24", "nic": "eth0"}
    assert ["monitor", "interval=2s", "timeout=20s"] in ops(vip)
    assert command(commands, "pcs", "constraint", "colocation", "add", "vip-writer") == [
        "pcs", "constraint", "colocation", "add", "vip-writer", "with", "Promoted", "pgsql-clone", "score=INFINITY"]
    assert ["pcs", "constraint", "order", "promote", "pgsql-clone", "then", "start", "vip-writer",
            "symmetrical=false", "kind=Mandatory"] in commands
    assert ["pcs", "constraint", "order", "demote", "pgsql-clone", "then", "stop", "vip-writer",
            "symmetrical=false", "kind=Optional"] in commands


def test_reader_vip_prefers_streaming_standbys_and_falls_back_to_any_pgsql_node() -> None:
    commands = cluster.pcs_commands(spec())
    assert options(command(commands, "pcs", "resource", "create", "vip-reader"))["ip"] == "10.79.0.101"
    assert ["pcs", "constraint", "colocation", "add", "vip-reader", "with", "Started", "pgsql-clone",
            "score=INFINITY", "influence=false"] in commands      # the reader never steers the promotion
    assert command(commands, "pcs", "constraint", "location") == [
        "pcs", "constraint", "location", "vip-reader", "rule", "score=200",
        "pgsql-status", "eq", "HS:sync", "or", "pgsql-status", "eq", "HS:potential",
        "or", "pgsql-status", "eq", "HS:async"]


def test_without_reader_ip_there_is_no_reader_vip() -> None:
    commands = cluster.pcs_commands(spec(reader_ip=None))
    assert not any("vip-reader" in argv for argv in commands)
    assert len(commands) == 7


def test_stock_agent_baseline() -> None:
    commands = cluster.pcs_commands(spec(agent=cluster.STOCK_AGENT, rep_mode="async"))
    create = command(commands, "pcs", "resource", "create", "pgsql")
    assert create[4] == "ocf:heartbeat:pgsql"
    opts = options(create)
    assert opts["psql"] == "/usr/lib/postgresql/15/bin/psql"
    assert opts["restart_on_promote"] == "false"
    assert opts["rep_mode"] == "async"
    assert ["monitor", "interval=3s", "role=Promoted", "timeout=60s"] in ops(create)
    assert ["monitor", "interval=4s", "role=Unpromoted", "timeout=60s"] in ops(create)
    assert "notify=true" in create          # the stock agent needs notifications; pha's does not


def test_explicit_settings_win_over_defaults() -> None:
    given = spec(agent=cluster.STOCK_AGENT, master_ip="10.79.0.150", promoted_monitor=1, unpromoted_monitor=2,
                 monitor_timeout=5, failure_timeout=45, resource_id="pg", writer_vip_id="w", reader_vip_id="r",
                 pgsql_params={**PARAMS, "psql": "/opt/psql", "restart_on_promote": True,
                               "primary_conninfo_opt": "keepalives_idle=5 keepalives_count=3"})
    commands = cluster.pcs_commands(given)
    create = command(commands, "pcs", "resource", "create", "pg")
    opts = options(create)
    assert opts["psql"] == "/opt/psql"
    assert opts["restart_on_promote"] == "true"
    assert opts["master_ip"] == "10.79.0.150"
    assert opts["primary_conninfo_opt"] == "keepalives_idle=5 keepalives_count=3"
    assert ["monitor", "interval=1s", "role=Promoted", "timeout=5s"] in ops(create)
    assert "pg-clone" in create and "failure-timeout=45s" in commands[1]
    assert command(commands, "pcs", "constraint", "location")[6] == "pg-status"   # the stock agent's name
    pha = cluster.pcs_commands(spec(resource_id="pg"))
    assert command(pha, "pcs", "constraint", "location")[6] == "pgsql-status"    # pha's fixed name
    assert ["pcs", "constraint", "colocation", "add", "w", "with", "Promoted", "pg-clone", "score=INFINITY"] in commands


def test_pcs_012_and_pacemaker_302_get_their_own_forms() -> None:
    """pcs 0.12: `--future` and `meta` after the clone id, the rule as one argument (checked against
    pcs 0.12.0.2 in Debian 13: no deprecation warning); Pacemaker 3.0.2: fencing-enabled."""
    commands = cluster.pcs_commands(spec(), cluster.Versions(pcs=(0, 12, 0, 2), pacemaker=(3, 0, 2),
                                                             fencing_enabled="fencing-enabled"))
    assert commands[0] == ["pcs", "property", "set", "no-quorum-policy=stop", "fencing-enabled=false"]
    create = command(commands, "pcs", "resource", "create", "pgsql")
    assert create[create.index("promotable") - 1:] == [
        "--future", "promotable", "pgsql-clone", "meta", "notify=false", "promoted-max=1", "promoted-node-max=1",
        "clone-max=3", "clone-node-max=1"]
    assert command(commands, "pcs", "constraint", "location") == [
        "pcs", "constraint", "location", "vip-reader", "rule", "score=200",
        "pgsql-status eq HS:sync or pgsql-status eq HS:potential or pgsql-status eq HS:async"]
    assert ["pcs", "constraint", "colocation", "add", "vip-writer", "with", "Promoted", "pgsql-clone",
            "score=INFINITY"] in commands      # the form both generations accept
    older = cluster.pcs_commands(spec(), cluster.Versions(pcs=(0, 12), pacemaker=(3, 0, 2)))
    assert older[0][-1] == "stonith-enabled=false"      # the name comes from detection, never the version


OPTIONS_302 = ('<pacemaker-result><resource-agent name="cluster-options"><parameters>'
               '<parameter name="fencing-enabled"/><parameter name="no-quorum-policy"/></parameters>'
               '</resource-agent></pacemaker-result>')


@pytest.mark.parametrize("pcs, pacemaker, options, expected", [
    ("0.11.5\n", "Pacemaker 2.1.5\nWritten by Andrew Beekhof\n", None, cluster.Versions((0, 11, 5), (2, 1, 5))),
    ("0.12.0.2\n", "Pacemaker 3.0.0\n", None, cluster.Versions((0, 12, 0, 2), (3, 0, 0))),
    ("0.12.0.2\n", "Pacemaker 3.0.2\n", OPTIONS_302,
     cluster.Versions((0, 12, 0, 2), (3, 0, 2), "fencing-enabled")),
    ("0.12.0.2\n", "Pacemaker 2.1.5\n", OPTIONS_302,         # the listing decides, not the version
     cluster.Versions((0, 12, 0, 2), (2, 1, 5), "fencing-enabled")),
    ("", "", None, cluster.Versions()),                 # a tool that does not say: the default
])
def test_detect_versions(pcs: str, pacemaker: str, options: str | None, expected: cluster.Versions) -> None:
    answers = {"pcs": pcs, "pacemakerd": pacemaker}

    def run(argv: Sequence[str], timeout: float) -> crm.CommandResult:
        if argv[0] == "crm_attribute" and options is not None:
            return crm.CommandResult(0, options, "")
        if argv[0] not in answers:
            raise FileNotFoundError(argv[0])
        assert list(argv[1:]) == ["--version"]
        return crm.CommandResult(0, answers[argv[0]], "")
    assert cluster.detect_versions(run) == expected


def test_detect_versions_without_pcs_keeps_the_default() -> None:
    def run(argv: Sequence[str], timeout: float) -> crm.CommandResult:
        raise FileNotFoundError(argv[0])
    assert cluster.detect_versions(run) == cluster.Versions()


@pytest.mark.parametrize("text, version", [("0.11", (0, 11)), ("0.12.0.2", (0, 12, 0, 2))])
def test_parse_pcs_version(text: str, version: tuple) -> None:
    assert cluster.parse_pcs_version(text) == version


@pytest.mark.parametrize("text", ["", "12", "0.12-beta", "v0.12", "0.12."])
def test_parse_pcs_version_refuses_what_is_not_a_version(text: str) -> None:
    with pytest.raises(ValueError, match="--pcs-version"):
        cluster.parse_pcs_version(text)


def test_the_reader_rule_names_the_attribute_pha_publishes() -> None:
    from pha.agents import pgsql
    assert cluster.PHA_STATUS_ATTRIBUTE == pgsql.ATTR_STATUS


def test_format_commands_quotes_for_the_shell() -> None:
    text = cluster.format_commands(cluster.pcs_commands(spec()))
    assert "'node_list=node1 node2 node3'" in text
    assert text.count("\n") == 10


@pytest.mark.parametrize("overrides, message", [
    ({"nodes": ()}, "nodes: at least one node"),
    ({"nodes": ("node1", "node1")}, "names a node twice"),
    ({"nodes": ("node 1",)}, "nodes: 'node 1' is not a node name"),
    ({"agent": "ocf:pha:pgsqlx"}, "agent: 'ocf:pha:pgsqlx' must be one of"),
    ({"vip_agent": "IPaddr2"}, "vip_agent: 'IPaddr2'"),
    ({"rep_mode": "quorum"}, "rep_mode: 'quorum' must be one of sync, async"),
    ({"writer_ip": "10.79.0.300"}, "writer_ip: '10.79.0.300' is not an IP address"),
    ({"master_ip": "vip"}, "master_ip: 'vip' is not an IP address"),
    ({"reader_ip": "10.79.0.100"}, "reader_ip: 10.79.0.100 is also the writer_ip"),
    ({"resource_id": "pg sql"}, "resource_id: 'pg sql' is not a valid resource id"),
    ({"writer_vip_id": "vip-reader"}, "must differ"),
    ({"writer_vip_id": "pgsql-clone"}, "must differ"),
    ({"pgsql_params": {"rep_mode": "async"}}, "rep_mode is set from ClusterSpec.rep_mode"),
    ({"pgsql_params": {"node_list": "a b"}}, "node_list is set from ClusterSpec.nodes"),
    ({"pgsql_params": {"pg-data": "/x"}}, "pgsql_params: 'pg-data' is not a parameter name"),
    ({"pgsql_params": {"pgdata": "/x\nop"}}, "must be a single line"),
    ({"promoted_monitor": 3}, "Pacemaker needs two different intervals, both are 3s"),
    ({"unpromoted_monitor": 0}, "unpromoted_monitor: 0 must be an integer from 1"),
    ({"monitor_timeout": True}, "monitor_timeout: True must be an integer"),
    ({"cidr_netmask": 129}, "cidr_netmask: 129"),
    ({"migration_threshold": 0}, "migration_threshold: 0"),
    ({"nic": "eth 0"}, "nic: 'eth 0' is not an interface name"),
])
def test_bad_specs_are_refused_naming_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(cluster.ClusterConfigError, match=message.replace("(", r"\(")):
        cluster.pcs_commands(spec(**overrides))


# --- applying them -----------------------------------------------------------------
class FakeRunner:
    """Records each argv; fails the call whose argv contains `fail_on`."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail_on = fail_on

    def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
        self.calls.append(tuple(argv))
        if argv[0] == "mktemp":
            return crm.CommandResult(0, "/tmp/pha-cib.abc123\n", "")
        if self.fail_on and self.fail_on in argv:
            return crm.CommandResult(1, "", "Error: unable to find agent\n")
        return crm.CommandResult(0, "", "")


def test_apply_edits_a_copy_and_pushes_one_diff() -> None:
    run = FakeRunner()
    commands = [["pcs", "property", "set", "no-quorum-policy=stop"], ["pcs", "resource", "create", "x", "ocf:pha:vip"]]
    cluster.apply(commands, run)
    workdir = "/tmp/pha-cib.abc123"
    assert run.calls == [
        ("mktemp", "-d", "/tmp/pha-cib.XXXXXXXX"),
        ("pcs", "cluster", "cib", f"{workdir}/original.xml"),
        ("cp", f"{workdir}/original.xml", f"{workdir}/cib.xml"),
        ("pcs", "-f", f"{workdir}/cib.xml", "property", "set", "no-quorum-policy=stop"),
        ("pcs", "-f", f"{workdir}/cib.xml", "resource", "create", "x", "ocf:pha:vip"),
        ("pcs", "cluster", "cib-push", f"{workdir}/cib.xml", f"diff-against={workdir}/original.xml"),
        ("rm", "-rf", "--", workdir),
    ]


def test_apply_stops_at_the_first_failure_pushes_nothing_and_cleans_up() -> None:
    run = FakeRunner(fail_on="create")
    commands = [["pcs", "resource", "create", "x", "ocf:pha:nope"], ["pcs", "property", "set", "a=b"]]
    with pytest.raises(crm.CrmError, match="resource create x ocf:pha:nope.*unable to find agent"):
        cluster.apply(commands, run)
    assert not any("cib-push" in argv for argv in run.calls)
    assert not any("property" in argv for argv in run.calls)
    assert run.calls[-1] == ("rm", "-rf", "--", "/tmp/pha-cib.abc123")


def test_apply_refuses_a_command_that_is_not_pcs() -> None:
    run = FakeRunner()
    with pytest.raises(cluster.ClusterConfigError, match="'rm -rf /' is not a pcs command"):
        cluster.apply([["pcs", "property", "set", "a=b"], ["rm", "-rf", "/"]], run)
    assert run.calls == []


# --- the lab writer's analysis ----------------------------------------------------
@pytest.fixture(scope="module")
def writer():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
    try:
        import writer as module
    finally:
        sys.path.pop(0)
    return module


def ack(i: int, t: float, node: str) -> dict:
    return {"event": "ack", "id": i, "sent": t - 0.01, "t": t, "node": node}


def test_writer_analysis_of_a_failover(writer) -> None:
    records = [ack(1, 10.0, "node1"), ack(2, 10.1, "node1"),
               {"event": "error", "id": 3, "sent": 10.2, "t": 10.2, "error": "terminating connection"},
               {"event": "error", "id": 4, "sent": 10.3, "t": 12.3, "error": "timed out"},
               {"event": "unconfirmed", "id": 5, "sent": 12.4, "t": 12.5, "node": "node2"},
               ack(6, 13.0, "node2"), ack(7, 13.1, "node2"), {"event": "stopped", "t": 14.0}]
    result = writer.analyse(records, present_ids=[1, 5, 6, 7], checked_on="node2", fault_at=10.15)
    assert result.attempts == 7 and result.acknowledged == 4
    assert result.lost == [2]
    assert result.unconfirmed == [5]
    assert result.errors == 2 and result.error_samples == ["terminating connection", "timed out"]
    assert result.acks_by_node == {"node1": 2, "node2": 2}
    assert result.node_runs == ["node1", "node2"] and not result.interleaved
    assert result.last_ack_before == 10.1 and result.first_ack_after == 13.0
    assert result.unavailability == pytest.approx(2.9)
    assert result.longest_gap == pytest.approx(2.9)


def test_writer_unavailability_is_the_longest_gap_after_the_fault(writer) -> None:
    # a switchover: writes go on for a while after the command, then pause
    records = [ack(1, 1.0, "node1"), ack(2, 1.1, "node1"), ack(3, 1.2, "node1"), ack(4, 2.9, "node2"),
               ack(5, 3.0, "node2"), ack(6, 3.5, "node2")]
    result = writer.analyse(records, range(1, 7), "node2", fault_at=1.05)
    assert result.unavailability == pytest.approx(1.7)
    assert result.first_ack_after == 1.1


def test_writer_analysis_flags_two_primaries_taking_turns(writer) -> None:
    records = [ack(1, 1.0, "node1"), ack(2, 1.1, "node2"), ack(3, 1.2, "node1")]
    result = writer.analyse(records, [1, 2, 3], "node2")
    assert result.interleaved and result.node_runs == ["node1", "node2", "node1"]
    assert result.unavailability is None and result.fault_at is None


def test_writer_log_parsing_skips_a_torn_last_line(writer) -> None:
    lines = ['{"event": "ack", "id": 1, "sent": 1.0, "t": 1.1, "node": "node1"}\n', '{"event": "ack", "id"']
    assert writer.acks_of(writer.parse_log(lines)) == [writer.Ack(1, 1.0, 1.1, "node1")]
