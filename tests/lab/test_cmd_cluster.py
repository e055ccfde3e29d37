"""The cluster commands in the lab, on the cluster `pha setup templates/lab.ini` builds (sync mode).

In order, on one lab: setup gives a healthy cluster (cls_status --json) and a
second setup changes nothing; cls_status names the problem of an unhealthy
cluster; a switchover with and without --to under a writer loop loses no
acknowledged insert, and a non-sync target is refused; maintenance mode
survives a pacemaker restart without PostgreSQL ever stopping; a forked old
primary (auto_rewind=false) is repaired by cls_repair_by_pg_rewind; a wiped standby is rebuilt by
cls_rebuild_slave; cls_reset_master brings a named node up as the primary.
Last, the other templates' pcs commands are run against an empty CIB file and
checked with crm_verify. Commands run inside the lab nodes, as an operator would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgsql_cluster import CLONE, DATA_STATUS, RESOURCE, attrs, primary_of, status, wait_for, wait_healthy
from pha import crmstatus
from pha.lab import config
from writer import Writer

pytestmark = pytest.mark.lab
LAB_INI = Path(__file__).resolve().parents[2] / "templates" / "lab.ini"
PGDATA = config.PGDATA
PG_BIN = config.PG_BIN
SOCKET = "/run/postgresql"


def pha(lab, node: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A cluster command run on `node` (what cls_* / pha run there)."""
    started = time.monotonic()
    done = lab.exec(node, [sys.executable, "-m", "pha.commands", *args], check=False, timeout=timeout)
    print(f"[{node}] pha {' '.join(args)} -> {done.returncode} in {time.monotonic() - started:.1f}s\n"
          f"{done.stderr.rstrip()}")
    return done


def host_setup(*args: str) -> subprocess.CompletedProcess:
    """`pha setup templates/lab.ini` from the host, as the README's main job runs it."""
    return subprocess.run([sys.executable, "-m", "pha.commands", "setup", str(LAB_INI), *args],
                          capture_output=True, text=True, timeout=400, env=dict(os.environ))


def sql(lab, node: str, query: str) -> str:
    code = ("import psycopg, sys\n"
            f"with psycopg.connect(host={SOCKET!r}, user='postgres', dbname='postgres', autocommit=True,"
            " connect_timeout=5) as c:\n"
            "    cur = c.execute(sys.stdin.read())\n"
            "    row = cur.fetchone() if cur.description else None\n"
            "    print('' if row is None else row[0])\n")
    return lab.python(node, code, input=query, timeout=30).stdout.strip()


def postmaster(lab, node: str) -> str:
    """PID and start time of the node's postmaster (changes whenever PostgreSQL restarts)."""
    pid = lab.exec(node, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
    start = lab.exec(node, ["cat", f"/proc/{pid}/stat"]).stdout.rsplit(")", 1)[1].split()[19]
    return f"{pid}@{start}"


def node_with(lab, data_status: str) -> str:
    found = [n for n, a in attrs(lab).items() if a.get(DATA_STATUS) == data_status]
    assert len(found) == 1, attrs(lab)
    return found[0]


@pytest.fixture(scope="module")
def cluster(lab):
    started = time.monotonic()
    done = host_setup()
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"pha setup: healthy cluster {time.monotonic() - started:.1f}s after the command started")
    return lab


def test_setup_gives_a_healthy_cluster(cluster) -> None:
    lab = cluster
    done = pha(lab, "node3", "status", "--json")
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    primary = report["primary"]
    assert report["healthy"] and report["problems"] == [] and report["verdict"] == "healthy"
    assert primary == primary_of(lab) and report["rep_mode"] == "sync" and report["quorum"]
    standbys = {s["node"]: s for s in report["standbys"]}
    assert set(standbys) == set(lab.nodes) - {primary}
    assert sorted(s["data_status"] for s in standbys.values()) == ["STREAMING|POTENTIAL", "STREAMING|SYNC"]
    assert sorted(s["pgsql_status"] for s in standbys.values()) == ["HS:potential", "HS:sync"]
    assert all(isinstance(s["lag_bytes"], int) for s in standbys.values())
    assert report["nodes"][primary]["role"] == "Promoted" and report["nodes"][primary]["data_status"] == "LATEST"
    assert report["repl_info"]["primary"] == primary and report["repl_info"]["timeline"] >= 2
    assert report["vips"]["vip-writer"] == {"address": lab.vip(0), "role": "writer", "nodes": [primary]}
    reader = report["vips"]["vip-reader"]
    assert reader["address"] == lab.vip(1) and len(reader["nodes"]) == 1 and reader["nodes"][0] in standbys
    assert report["lvs"] is None
    text = pha(lab, "node1", "status")
    assert text.returncode == 0 and "Promoted: [ " in text.stdout and "verdict:    healthy" in text.stdout
    master = pha(lab, "node2", "master")
    assert master.returncode == 0 and master.stdout.strip() == primary


def test_setup_again_changes_nothing(cluster) -> None:
    done = host_setup("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["changes"] == [] and not report["pushed"]


def test_status_names_the_problem_when_unhealthy(cluster) -> None:
    lab = cluster
    standby = node_with(lab, "STREAMING|POTENTIAL")
    assert pha(lab, "node1", "standby-node", standby).returncode == 0
    try:
        done = pha(lab, "node1", "status", "--json")
        report = json.loads(done.stdout)
        assert done.returncode == 1 and not report["healthy"]
        assert f"{standby} is in standby (cls_unstandby_node {standby})" in report["problems"]
        brief = pha(lab, "node1", "status", "--brief")
        assert brief.returncode == 1 and f"UNHEALTHY: {standby} is in standby" in brief.stdout
    finally:
        assert pha(lab, "node1", "unstandby-node", standby).returncode == 0
    wait_healthy(lab, timeout=60, rep_mode="sync")


def switch_under_writer(lab, node: str, *args: str) -> tuple[dict, object]:
    """Run online-switch on `node` while a writer loop writes through the writer VIP."""
    writer = Writer(lab, lab.vip(0)).start()
    try:
        time.sleep(0.5)
        writer.mark()
        done = pha(lab, node, "online-switch", "--json", *args)
        assert done.returncode == 0, done.stdout
        result = json.loads(done.stdout)
        assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
        outcome = writer.stop_and_check(result["new_primary"])
    finally:
        writer.stop()
    print(f"switch {result['old_primary']} -> {result['new_primary']}:", outcome.summary())
    return result, outcome


def test_switchover_with_and_without_to_loses_nothing(cluster, record_property) -> None:
    lab = cluster
    first = primary_of(lab)
    potential = node_with(lab, "STREAMING|POTENTIAL")
    refused = pha(lab, potential, "online-switch", "--to", potential)
    assert refused.returncode == 10 and "not the synchronous standby" in refused.stderr
    assert primary_of(lab) == first
    sync = node_with(lab, "STREAMING|SYNC")
    result, outcome = switch_under_writer(lab, first)
    assert (result["old_primary"], result["new_primary"]) == (first, sync)
    assert outcome.lost == [] and not outcome.interleaved and outcome.node_runs == [first, sync]
    record_property("switch_unavailability_s", outcome.unavailability)
    target = node_with(lab, "STREAMING|SYNC")   # the new primary's sync standby
    result, outcome = switch_under_writer(lab, potential, "--to", target)
    assert (result["old_primary"], result["new_primary"]) == (sync, target)
    assert outcome.lost == [] and not outcome.interleaved and outcome.node_runs == [sync, target]
    assert pha(lab, "node1", "status", "--brief").returncode == 0


def test_maintenance_survives_a_pacemaker_restart(cluster) -> None:
    lab = cluster
    primary = primary_of(lab)
    before = {n: postmaster(lab, n) for n in lab.nodes}
    assert pha(lab, "node1", "maintenance").returncode == 0
    try:
        lab.exec(primary, ["sh", "-c", "kill -TERM $(pidof pacemakerd)"])
        wait_for(f"pacemaker to stop on {primary}", lambda: lab.exec(
            primary, ["pidof", "pacemakerd"], check=False).returncode != 0, timeout=60)
        lab.exec(primary, ["sh", "-c", "setsid -f pacemakerd </dev/null >/dev/null 2>&1"],
                 env={"PCMK_logfile": "/var/log/pacemaker/pacemaker.log", "PCMK_logfacility": "none"})
        lab.wait_online(timeout=60, observer=primary)
        assert {n: postmaster(lab, n) for n in lab.nodes} == before
    finally:
        assert pha(lab, "node1", "unmaintenance").returncode == 0
    wait_healthy(lab, timeout=60, rep_mode="sync")
    assert {n: postmaster(lab, n) for n in lab.nodes} == before
    assert primary_of(lab) == primary
    assert pha(lab, "node2", "status", "--brief").returncode == 0


def make_forked_old_primary(lab) -> tuple[str, str]:
    """Kill the primary, let the cluster fail over, then let the old primary write alone.

    Returns (old primary, new primary); the old one is refused by the fork guard.
    """
    old = primary_of(lab)
    pid = lab.exec(old, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
    others = [n for n in lab.nodes if n != old]
    lab.exec(old, ["kill", "-9", pid])
    # standby at once: Pacemaker would otherwise restart the crashed primary in place (migration-threshold)
    lab.exec(others[0], ["crm_attribute", f"--node={old}", "--name=standby", "--lifetime=forever", "--update=on"])
    new, _ = wait_for("a new primary", lambda: next(
        (n for n in status(lab, others).promoted_nodes(CLONE) if n != old), None), timeout=60)
    wait_for(f"PostgreSQL stopped on {old}", lambda: old not in status(lab, others).resource_nodes(CLONE)
             and lab.exec(old, [f"{PG_BIN}/pg_ctl", "status", "-D", PGDATA], user="postgres",
                          check=False).returncode == 3, timeout=60)
    lab.exec(old, ["rm", "-f", f"{PGDATA}/standby.signal", f"{PGDATA}/recovery.signal"])
    lab.exec(old, [f"{PG_BIN}/pg_ctl", "start", "-D", PGDATA, "-w", "-t", "60", "-l", "/dev/null",
                   "-o", f"-k {SOCKET} -c synchronous_standby_names= -c default_transaction_read_only=off"],
             user="postgres", timeout=90)
    assert sql(lab, old, "select pg_is_in_recovery()") == "False"
    sql(lab, old, "create table written_alone as select generate_series(1, 1000) as id")
    sql(lab, old, "select pg_switch_wal()")
    lab.exec(old, [f"{PG_BIN}/pg_ctl", "stop", "-D", PGDATA, "-m", "fast", "-w"], user="postgres", timeout=90)
    lab.exec(new, ["crm_resource", "--cleanup", f"--resource={CLONE}", f"--node={old}"])
    lab.exec(new, ["crm_attribute", f"--node={old}", "--name=standby", "--lifetime=forever", "--delete"])

    def refused() -> bool:  # Pacemaker cuts exit reasons at 128 characters: the repair hint may be gone
        return any(f.node == old and "forked" in f.exit_reason for f in status(lab, others).failures)
    wait_for(f"the fork guard to refuse {old}", refused, timeout=90)
    return old, new


@pytest.fixture
def without_auto_rewind(cluster):
    """auto_rewind=false for one test: the fork guard refuses, and a human repairs."""
    def auto_rewind(value: str) -> None:
        cluster.exec("node1", ["crm_resource", f"--resource={RESOURCE}", "--set-parameter=auto_rewind",
                               f"--parameter-value={value}"])
        # The change restarts every instance: wait for the restart to be over and the
        # sync standby to be promotable again (healthy alone still holds before the restart,
        # which begins within a second of the change).
        time.sleep(3)
        score = f"master-{RESOURCE}"
        wait_for(f"auto_rewind={value} in effect", lambda: sum(
            1 for a in attrs(cluster).values() if crmstatus.parse_score(a.get(score, "0")) == 100), timeout=120)
        wait_healthy(cluster, timeout=120, rep_mode="sync")
    auto_rewind("false")
    yield cluster
    auto_rewind("true")


def test_repair_by_pg_rewind_of_a_forked_old_primary(without_auto_rewind, record_property) -> None:
    lab = without_auto_rewind
    old, new = make_forked_old_primary(lab)
    sql(lab, new, "create table written_after_failover as select 1 as id")
    dry = pha(lab, old, "repair-by-pg-rewind", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and plan["primary"] == new and "servers diverged" in plan["pg_rewind"]
    assert pha(lab, old, "status", "--brief").returncode == 1
    started = time.monotonic()
    done = pha(lab, old, "repair-by-pg-rewind", "--json")
    assert done.returncode == 0, done.stdout
    record_property("repair_s", round(time.monotonic() - started, 1))
    assert json.loads(done.stdout)["node"] == old
    wait_healthy(lab, timeout=60, rep_mode="sync")
    assert sql(lab, old, "select to_regclass('written_alone') is null") == "True"
    wait_for("the new primary's table on the repaired node",
             lambda: sql(lab, old, "select to_regclass('written_after_failover') is not null") == "True",
             timeout=30)
    assert lab.exec(old, ["test", "-e", "/var/lib/postgresql/tmp/pgsql.state.forked"], check=False).returncode != 0
    healthy = pha(lab, new, "repair-by-pg-rewind")
    assert healthy.returncode == 10  # on the primary: nothing to repair
    assert pha(lab, "node1", "cleanup").returncode == 0
    assert pha(lab, "node1", "status", "--brief").returncode == 0


def test_rebuild_slave_of_a_wiped_standby(cluster, record_property) -> None:
    lab = cluster
    primary = primary_of(lab)
    sql(lab, primary, "create table before_rebuild as select generate_series(1, 100) as id")
    standby = node_with(lab, "STREAMING|POTENTIAL")
    assert pha(lab, standby, "rebuild-slave").returncode == 10      # healthy: nothing to rebuild
    assert pha(lab, "node1", "standby-node", standby).returncode == 0
    refused = pha(lab, standby, "rebuild-slave")
    assert refused.returncode == 10 and "not empty" in refused.stderr
    lab.exec(standby, ["find", PGDATA, "-mindepth", "1", "-delete"])
    started = time.monotonic()
    done = pha(lab, standby, "rebuild-slave", "--json")
    assert done.returncode == 0, done.stdout
    record_property("rebuild_s", round(time.monotonic() - started, 1))
    wait_healthy(lab, timeout=60, rep_mode="sync")
    assert sql(lab, standby, "select count(*) from before_rebuild") == "100"
    assert pha(lab, "node1", "status", "--brief").returncode == 0


def test_reset_master_makes_the_named_node_primary(cluster) -> None:
    lab = cluster
    chosen = node_with(lab, "STREAMING|SYNC")
    refused = pha(lab, chosen, "reset-master", chosen, "--yes")
    assert refused.returncode == 10 and "reset-master is only for when no node can be" in refused.stderr
    assert pha(lab, "node1", "stop").returncode == 0
    assert pha(lab, chosen, "reset-master", chosen).returncode == 2      # no --yes: nothing done
    done = pha(lab, chosen, "reset-master", chosen, "--yes", "--json")
    assert done.returncode == 0, done.stdout
    result = json.loads(done.stdout)
    assert result["primary"] == chosen and result["repl_info"].startswith(f"{chosen}|")
    wait_healthy(lab, timeout=90, rep_mode="sync")
    assert primary_of(lab) == chosen


@pytest.mark.parametrize("template", ["dual", "muti_with_lvs", "three_plus_x"])   # muti: lab.ini's
def test_every_template_is_accepted_by_pcs_and_pacemaker(cluster, template: str) -> None:
    """gencfg's commands, run by pcs 0.11 against an empty CIB file in a node, give a valid CIB."""
    from pha import config, deploy
    lab = cluster
    loaded = config.load(str(LAB_INI.parent / template / "config.ini"))
    cib = f"/tmp/pha-template-{template}.xml"
    lab.exec("node1", ["sh", "-c", f"cibadmin --empty > {cib}"])
    try:
        for argv in deploy.pcs_commands(loaded):
            done = lab.exec("node1", ["pcs", "-f", cib, *argv[1:]], check=False)
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        verify = lab.exec("node1", ["crm_verify", f"--xml-file={cib}"], check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        lab.exec("node1", ["rm", "-f", cib])
