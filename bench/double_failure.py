#!/usr/bin/env python3
"""Double failure, reproduced (not a timed test): on a fencing lab in sync mode, under a writer
through the writer VIP, kill -9 of corosync on the primary's node and of its sync standby's
postmaster at once. Prints when writes came back, where, and whether acknowledged inserts were
lost. Session 4 measured 46 and 51 acknowledged inserts lost: the restarted sync standby was
promoted although the third node had the commits the old primary acknowledged meanwhile. Since
session 5 the promotion fetches them from that node first (pha.pgsql.peers); the same fault is
tests/lab/test_pgsql_faults.py's double-failure test.

usage: PHA_LAB_INSTANCE=6 PHA_LAB_STATE=/tmp/pha-lab6 .venv/bin/python bench/double_failure.py [RUNS] (root)
One lab for all RUNS (default 1); the medians at the end.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "lab")]

from pha.lab import Lab  # noqa: E402

import pgsql_cluster as pc  # noqa: E402
from writer import Writer  # noqa: E402


def one_run(lab: Lab, run: int) -> tuple[float, int]:
    """One double failure on the healthy cluster: (seconds until writes came back, acked inserts lost)."""
    view = pc.status(lab)
    primary = pc.primary_of(lab)
    sync = next(n for n in lab.nodes if view.attribute(n, pc.DATA_STATUS) == "STREAMING|SYNC")
    print(f"run {run}: primary {primary}, sync standby {sync}", flush=True)
    writer = Writer(lab, lab.vip(0), table=f"pha_double{run}").start()
    time.sleep(2)
    at = writer.mark()
    pid = lab.exec(sync, ["head", "-1", f"{pc.config.PGDATA}/postmaster.pid"]).stdout.strip()
    lab.exec(sync, ["kill", "-9", pid])
    lab.exec(primary, ["kill", "-9", lab.exec(primary, ["pidof", "corosync"]).stdout.split()[0]])
    deadline = time.time() + 120
    while time.time() < deadline and not any(a.node != primary and a.t > at for a in writer.acks()):
        time.sleep(0.2)
    first = next((a for a in writer.acks() if a.node != primary and a.t > at), None)
    last_old = max([a.t for a in writer.acks() if a.node == primary] or [at])
    print(f"run {run}: old primary's last write {last_old - at:.2f}s after the fault; writes back "
          f"{'never' if first is None else f'{first.t - at:.2f}s after it on {first.node}'}", flush=True)
    time.sleep(5)
    pc.wait_healthy(lab, timeout=150, rep_mode="sync")
    result = writer.stop_and_check(pc.primary_of(lab))
    print(f"run {run}: healthy {time.time() - at:.1f}s after the fault; {result.summary()}", flush=True)
    return (float("inf") if first is None else first.t - at), len(result.lost)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    lab = Lab(os.environ.get("PHA_LAB_STATE"))
    lab.up(nodes=3, pg=True, force=True, fence=True)
    try:
        done = subprocess.run([sys.executable, "-m", "pha.commands", "setup",
                               os.path.join(REPO, "templates", "lab.ini")],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(done.stdout + done.stderr)
            return 1
        pc.wait_healthy(lab, timeout=120, rep_mode="sync")
        results = [one_run(lab, run) for run in range(1, runs + 1)]
        back = [b for b, _ in results]
        print(f"{runs} runs: writes back median {statistics.median(back):.2f}s (max {max(back):.2f}s); "
              f"acknowledged inserts lost {[lost for _, lost in results]}", flush=True)
        return 0 if all(lost == 0 for _, lost in results) else 1
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
