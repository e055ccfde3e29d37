"""ocf:pha:pgsql, sync mode: kill -9 of the primary's postmaster under a writer
loop through the writer VIP. Zero acknowledged inserts may be lost; the old
primary either rejoins or is refused by the fork guard, loudly, with the
repair named. (Its own lab: a refused node stays refused.)
"""
from __future__ import annotations

import time

import pytest

from pgsql_cluster import CLONE, primary_of, rejoined_or_refused, status, wait_for
from pha.lab import config
from writer import Writer

pytestmark = pytest.mark.lab
PGDATA = config.PGDATA



def test_kill_9_of_the_primary_loses_no_acknowledged_insert(sync_cluster, record_property) -> None:
    lab = sync_cluster
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
