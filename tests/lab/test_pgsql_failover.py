"""ocf:pha:pgsql failover in the lab, sync mode, under a writer loop through
the writer VIP: kill -9 of the primary's postmaster, then a cut of the
primary's node. Zero acknowledged inserts may be lost, and never may two
primaries accept writes through the VIP. The old primary either rejoins or is
refused by the fork guard, loudly, with the repair named.
"""
from __future__ import annotations

import time

import pytest

from pgsql_cluster import CLONE, create_pgsql_cluster, primary_of, status, wait_for, wait_healthy
from writer import Writer

pytestmark = pytest.mark.lab
PGDATA = "/var/lib/postgresql/15/pha"


@pytest.fixture(scope="module")
def cluster(lab):
    create_pgsql_cluster(lab, rep_mode="sync")
    return lab


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


def test_kill_9_of_the_primary_loses_no_acknowledged_insert(cluster, record_property) -> None:
    lab = cluster
    old = primary_of(lab)
    writer = Writer(lab, lab.vip(0)).start()
    try:
        time.sleep(1)
        pid = lab.exec(old, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
        writer.mark()
        lab.exec(old, ["kill", "-9", pid])
        new, _ = wait_for("a new primary", lambda: next(
            (n for n in status(lab).promoted_nodes(CLONE) if n != old), None), timeout=60)
        wait_for("the writer VIP on the new primary",
                 lambda: status(lab).resource_nodes("vip-writer") == [new], timeout=30)
        assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
        result = writer.stop_and_check(new)
    finally:
        writer.stop()
    print("kill -9:", result.summary())
    record_property("kill9_unavailability_s", result.unavailability)
    assert result.lost == [] and not result.interleaved
    outcome = rejoined_or_refused(lab, old, [n for n in lab.nodes if n != old])
    print(f"old primary {old}: {outcome}")


def test_cut_of_the_primary_node(cluster, record_property) -> None:
    lab = cluster
    lab.exec(lab.nodes[0], ["crm_resource", "--cleanup", "--resource", CLONE])
    wait_healthy(lab, timeout=120, rep_mode="sync")
    old = primary_of(lab)
    majority = [n for n in lab.nodes if n != old]
    writer = Writer(lab, lab.vip(0)).start()
    try:
        time.sleep(1)
        writer.mark()
        lab.cut(old)
        new, seconds = wait_for("the majority promotes", lambda: next(
            (n for n in status(lab, majority).promoted_nodes(CLONE) if n != old), None), timeout=60)
        print(f"{new} promoted {seconds:.1f}s after the cut of {old}")
        assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
        # The isolated node lost quorum: its PostgreSQL stops (no-quorum-policy=stop).
        stopped, took = wait_for(f"{old} stopping its primary", lambda: lab.exec(
            old, ["test", "-e", f"{PGDATA}/postmaster.pid"], check=False).returncode != 0, timeout=60)
        print(f"isolated {old} stopped PostgreSQL {took:.1f}s after the promotion was seen")
        result = writer.stop_and_check(new)
    finally:
        writer.stop()
        lab.heal(old)
    print("node cut:", result.summary())
    record_property("cut_unavailability_s", result.unavailability)
    assert result.lost == [] and not result.interleaved
    lab.wait_online(timeout=60, observer=majority[0])
    outcome = rejoined_or_refused(lab, old, majority)
    print(f"old primary {old} after heal: {outcome}")
