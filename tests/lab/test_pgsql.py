"""ocf:pha:pgsql in the lab, sync mode: bring-up, switchover, the sync standby
cut, a whole-cluster restart, and bad configurations. Every fault runs under a
writer loop through the writer VIP that checks no acknowledged insert is lost.

(kill -9 of the primary and the primary's node cut have modules of their own:
they may leave a forked node behind.)
"""
from __future__ import annotations

import time

import pytest

from pha.lab import config
from pha.pgsql import decide
from pgsql_cluster import CLONE, DATA_STATUS, STATUS, attrs, primary_of, status, wait_for, wait_healthy
from writer import Writer

pytestmark = pytest.mark.lab
AGENT = "/usr/lib/ocf/resource.d/pha/pgsql"
PGDATA = config.PGDATA


def sql(lab, node: str, query: str) -> str:
    code = ("import psycopg, sys\n"
            "with psycopg.connect(host='/run/postgresql', user='postgres', dbname='postgres',"
            " connect_timeout=5) as c:\n"
            "    print(c.execute(sys.stdin.read()).fetchone()[0])\n")
    return lab.python(node, code, input=query, timeout=30).stdout.strip()


def repl_info(lab) -> decide.ReplInfo:
    out = lab.exec(lab.nodes[0], ["crm_attribute", "--type=crm_config", "--set-name=pha-pgsql",
                                  "--name=REPL_INFO", "--query", "--quiet"]).stdout
    return decide.ReplInfo.parse(out.strip())


def sync_standby(lab) -> str:
    found = [n for n, a in attrs(lab).items() if a.get(DATA_STATUS) == decide.STREAMING_SYNC]
    assert len(found) == 1, attrs(lab)
    return found[0]


def test_bring_up_publishes_the_attributes(sync_cluster) -> None:
    lab = sync_cluster
    primary = primary_of(lab)
    a = attrs(lab)
    assert a[primary][STATUS] == decide.PRI and a[primary][DATA_STATUS] == decide.LATEST
    standbys = sorted((a[n][STATUS], a[n][DATA_STATUS]) for n in lab.nodes if n != primary)
    assert standbys == [(decide.HS_POTENTIAL, decide.STREAMING_POTENTIAL), (decide.HS_SYNC, decide.STREAMING_SYNC)]
    info = repl_info(lab)
    assert info.primary == primary and info.timeline >= 2
    names = sql(lab, primary, "select current_setting('synchronous_standby_names')")
    assert names.startswith("FIRST 1 (")
    # Recovery settings live in pha.conf; postgresql.auto.conf is left alone.
    assert "primary_conninfo" not in lab.exec(primary, ["cat", f"{PGDATA}/postgresql.auto.conf"]).stdout
    assert "primary_conninfo" in lab.exec(primary, ["cat", f"{PGDATA}/pha.conf"]).stdout


def test_switchover_loses_nothing_and_the_old_primary_streams_again(sync_cluster) -> None:
    lab = sync_cluster
    old = primary_of(lab)
    target = sync_standby(lab)
    writer = Writer(lab, lab.vip(0)).start()
    try:
        time.sleep(1)
        writer.mark()
        lab.exec(old, ["crm_resource", "--move", "--promoted", "--resource", CLONE, "--node", target])
        wait_for("new primary", lambda: primary_of(lab) == target, timeout=60)
        lab.exec(old, ["crm_resource", "--clear", "--resource", CLONE])
        writer.wait_ack_after(time.time(), timeout=30)
        result = writer.stop_and_check(target)
    finally:
        writer.stop()
    print("switchover:", result.summary())
    assert result.lost == [] and not result.interleaved
    wait_healthy(lab, timeout=60, rep_mode="sync")
    assert attrs(lab)[old][DATA_STATUS].startswith("STREAMING")   # no rewind needed
    assert sql(lab, old, "select status from pg_stat_wal_receiver") == "streaming"


def test_a_non_sync_target_is_refused_in_sync_mode(sync_cluster) -> None:
    lab = sync_cluster
    primary = primary_of(lab)
    potential = next(n for n, a in attrs(lab).items() if a.get(DATA_STATUS) == decide.STREAMING_POTENTIAL)
    lab.exec(primary, ["crm_resource", "--move", "--promoted", "--resource", CLONE, "--node", potential])
    try:
        time.sleep(8)
        assert primary_of(lab) == primary
    finally:
        lab.exec(primary, ["crm_resource", "--clear", "--resource", CLONE])


def test_sync_standby_cut_falls_back_to_async_then_back(sync_cluster) -> None:
    lab = sync_cluster
    primary = primary_of(lab)
    victim = sync_standby(lab)
    banned = [n for n in lab.nodes if n not in (primary, victim)]   # leave the sync standby alone
    try:
        for other in banned:
            lab.exec(primary, ["crm_resource", "--ban", "--resource", CLONE, "--node", other])
            wait_for(f"{other} stopped", lambda: other not in status(lab).resource_nodes(CLONE), timeout=60)
        writer = Writer(lab, lab.vip(0)).start()
        try:
            writer.mark()
            lab.cut(victim)
            first = writer.wait_ack_after(time.time() + 0.5, timeout=30)
            assert first is not None, "writes never resumed: " + writer.tail()
            result = writer.stop_and_check(primary)
        finally:
            writer.stop()
            lab.heal(victim)
        print("sync standby cut:", result.summary())
        assert result.lost == []
        # wal_timeout (5 s) to notice the standby is gone, a monitor interval (2 s), a margin
        assert result.longest_gap < 5 + 2 + 5
        assert sql(lab, primary, "select current_setting('synchronous_standby_names')") == ""
    finally:
        for other in banned:
            lab.exec(primary, ["crm_resource", "--clear", "--resource", CLONE, "--node", other])
    wait_healthy(lab, timeout=90, rep_mode="sync")
    wait_for("sync again", lambda: sql(lab, primary, "select current_setting('synchronous_standby_names')"),
             timeout=30)


def test_whole_cluster_restart_keeps_primary_and_timeline(sync_cluster) -> None:
    lab = sync_cluster
    primary = primary_of(lab)
    before = repl_info(lab)
    lab.exec(primary, ["pcs", "resource", "disable", CLONE, "--wait=120"])
    assert not status(lab).resource_nodes(CLONE)
    lab.exec(primary, ["pcs", "resource", "enable", CLONE])
    wait_healthy(lab, timeout=120, rep_mode="sync")
    assert primary_of(lab) == primary
    assert repl_info(lab) == before
    assert int(sql(lab, primary, "select timeline_id from pg_control_checkpoint()")) <= before.timeline
    assert sql(lab, primary, "select pg_walfile_name(pg_current_wal_lsn())")[:8] == f"{before.timeline:08X}"


def agent(lab, node: str, action: str, **params: str):
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "pgsql-bad", "PHA_WORKER": "0",
           "OCF_RESKEY_CRM_meta_on_node": node, **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    return lab.exec(node, [AGENT, action], check=False, env=env, timeout=60)


GOOD = {"pgdata": PGDATA, "socketdir": "/run/postgresql", "node_list": "node1 node2 node3",
        "master_ip": "10.78.0.100", "pgctl": f"{config.PG_BIN}/pg_ctl"}


@pytest.mark.parametrize("changes, rc, reason", [
    ({"pgdata": "/var/lib/postgresql/nope"}, 5, "parameter pgdata=/var/lib/postgresql/nope: no such directory"),
    ({"node_list": "node2 node3"}, 6, "parameter node_list=node2 node3 does not hold this node (node1)"),
    ({"pgport": "70000"}, 6, "parameter pgport=70000 must be a port"),
    ({"rep_mode": "semi"}, 6, "parameter rep_mode=semi must be one of async, sync"),
    ({"pgctl": "/usr/bin/nope"}, 5, "parameter pgctl=/usr/bin/nope: not an executable"),
    ({"master_ip": "writer"}, 6, "parameter master_ip=writer is not an address"),
])
def test_bad_configuration_is_refused_and_touches_nothing(sync_cluster, changes, rc, reason) -> None:
    lab = sync_cluster
    before = lab.exec("node1", ["ls", "-la", "--time-style=full-iso", PGDATA]).stdout
    for action in ("validate-all", "start"):
        out = agent(lab, "node1", action, **{**GOOD, **changes})
        assert out.returncode == rc, out.stderr
        assert f"ocf-exit-reason:{reason}" in out.stderr
    assert lab.exec("node1", ["ls", "-la", "--time-style=full-iso", PGDATA]).stdout == before


def test_a_port_taken_by_another_server_is_refused(sync_cluster) -> None:
    lab = sync_cluster
    node = primary_of(lab)                     # its PostgreSQL listens on 5432
    other = "/var/lib/postgresql/other"        # a second, valid instance
    lab.exec(node, [f"{lab.pg_bin}/initdb", "-D", other, "-U", "postgres"], user="postgres")
    before = lab.exec(node, ["ls", "-la", "--time-style=full-iso", other]).stdout
    try:
        out = agent(lab, node, "start", **{**GOOD, "pgdata": other})
        assert out.returncode == 6, out.stderr
        assert "ocf-exit-reason:parameter pgport=5432: another server listens on it" in out.stderr
        assert lab.exec(node, ["ls", "-la", "--time-style=full-iso", other]).stdout == before
    finally:
        lab.exec(node, [f"{lab.pg_bin}/pg_ctl", "-D", other, "stop", "-m", "immediate"],
                 user="postgres", check=False)
