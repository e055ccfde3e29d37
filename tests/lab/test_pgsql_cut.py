"""ocf:pha:pgsql, sync mode: the primary's node is cut off, under a writer loop
through the writer VIP. The majority promotes, the isolated node stops its
primary, never do two primaries accept writes through the VIP, no
acknowledged insert is lost, and after heal the old primary rejoins or is
refused by the fork guard.
"""
from __future__ import annotations

import time

import pytest

from pgsql_cluster import CLONE, primary_of, rejoined_or_refused, status, wait_for
from pha.lab import config
from writer import Writer

pytestmark = pytest.mark.lab
PGDATA = config.PGDATA



def test_cut_of_the_primary_node(sync_cluster, record_property) -> None:
    lab = sync_cluster
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
