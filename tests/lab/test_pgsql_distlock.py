"""ocf:pha:pgsql on a 2-node cluster with `enable_distlock`, the lock being `pha distlock`
on a third machine's PostgreSQL (the lab's client namespace).

With corosync's two_node, each side of a cut keeps quorum, so only the lease
tells who may write. In order, on one lab: the primary holds the lease; when
the sync standby is cut off, the primary (still holding the lease) falls back
to async and writes resume; when the primary is cut off, it stops at its first
failed renewal, the standby is promoted only after the old lease expired, and
at no instant are both nodes writable (sampled inside each node every 0.1 s).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import pytest

from pgsql_cluster import (CLONE, create_pgsql_cluster, health_problems, primary_of, rejoined_or_refused,
                           status, wait_for)
from writer import Writer
from pha.lab import config

pytestmark = pytest.mark.lab
LOCK_TTL = 6          # seconds; the primary renews the lease at each monitor (2 s)
LOCK_TIMEOUT = 2      # seconds to reach the lock server
LOCK_NAME = "pgsql"

# Runs in a node: one JSON line per 0.1 s, {"t": ..., "writable": bool}, until its stdin closes.
SAMPLER = r"""
import json, select, sys, time
import psycopg
while not select.select([sys.stdin], [], [], 0)[0]:
    t = time.time()
    try:
        with psycopg.connect(host=sys.argv[1], user="postgres", dbname="postgres", connect_timeout=1,
                             autocommit=True) as conn:
            writable = conn.execute("select not pg_is_in_recovery()"
                                    " and current_setting('default_transaction_read_only') = 'off'").fetchone()[0]
    except psycopg.Error:
        writable = False
    print(json.dumps({"t": t, "writable": writable}), flush=True)
    select.select([sys.stdin], [], [], max(0.0, t + 0.1 - time.time()))
"""


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"nodes": 2, "two_node": True}


@pytest.fixture(scope="module")
def lock_server(lab):
    """A PostgreSQL in the client namespace: libpq conninfo of its lock database."""
    datadir = tempfile.mkdtemp(prefix="pha-lockdb.", dir="/var/tmp")
    shutil.chown(datadir, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, f"{config.PG_BIN}/initdb", "-D", datadir, "-U", "postgres", "--auth=trust",
                    "--no-sync", "--no-instructions"], check=True, capture_output=True, timeout=120)
    with open(os.path.join(datadir, "pg_hba.conf"), "a") as hba:
        hba.write(f"host all all {config.SUBNET} trust\n")
    options = (f"-c listen_addresses={lab.client_ip} -c port={config.PG_PORT} -k {datadir} -c fsync=off")
    lab.client_exec([*as_postgres, f"{config.PG_BIN}/pg_ctl", "start", "-D", datadir, "-w", "-t", "60",
                     "-l", os.path.join(datadir, "server.log"), "-o", options], timeout=90)
    try:
        yield f"host={lab.client_ip} port={config.PG_PORT} user=postgres dbname=postgres"
    finally:
        lab.client_exec([*as_postgres, f"{config.PG_BIN}/pg_ctl", "stop", "-D", datadir, "-m", "immediate"],
                        check=False, timeout=60)
        shutil.rmtree(datadir, ignore_errors=True)


def lock_command(conninfo: str, action: str) -> str:
    """The agent's distlock_*_cmd: this venv's `pha distlock` (the holder is the node's name)."""
    pha = os.path.join(os.path.dirname(sys.executable), "pha")
    return (f"{pha} distlock --conninfo '{conninfo}' --name {LOCK_NAME} "
            f"--ttl {LOCK_TTL} --timeout {LOCK_TIMEOUT} {action}")


@pytest.fixture(scope="module")
def cluster(lab, lock_server):
    timings = create_pgsql_cluster(lab, rep_mode="sync", reader=False, enable_distlock=True,
                                   distlock_lock_cmd=lock_command(lock_server, "lock"),
                                   distlock_unlock_cmd=lock_command(lock_server, "unlock"))
    print(f"2-node cluster with the lock healthy {timings['healthy']:.1f}s after the pcs push")
    return lab


def holder(lab, conninfo: str) -> str:
    """Who holds the lease, as `pha distlock status` prints it from the client namespace."""
    done = lab.client_exec([sys.executable, "-m", "pha.cli", "distlock", "--conninfo", conninfo,
                            "--name", LOCK_NAME, "status"], check=False, timeout=30)
    return done.stdout.strip()


class Samplers:
    """SAMPLER running in every node; `both_writable()` lists instants when two nodes were."""

    def __init__(self, lab) -> None:
        self.procs = {node: subprocess.Popen(
            lab.node_command(node, [sys.executable, "-c", SAMPLER, config.PG_SOCKET_DIR]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=lab.command_env())
            for node in lab.nodes}

    def stop(self) -> dict[str, list[tuple[float, bool]]]:
        samples = {}
        for node, proc in self.procs.items():
            out, _ = proc.communicate(timeout=10)     # closes its stdin: the sampler ends
            samples[node] = [(r["t"], r["writable"]) for r in map(json.loads, out.splitlines()) if r]
        return samples


@contextlib.contextmanager
def cut_under_writes(lab, node: str) -> Iterator[tuple[Writer, float, dict]]:
    """A writer through the writer VIP and a Samplers, then `node` cut: yields (writer,
    the moment of the cut, samples); samples (node -> SAMPLER's) fill in when the block ends."""
    samplers = Samplers(lab)
    writer = Writer(lab, lab.vip(0)).start()
    samples: dict[str, list[tuple[float, bool]]] = {}
    try:
        time.sleep(1.5)
        cut_at = writer.mark()
        lab.cut(node)
        yield writer, cut_at, samples
    finally:
        writer.stop()
        samples.update(samplers.stop())


def writable_spans(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(first, last) sample time of each run of writable samples."""
    spans, start, last = [], None, None
    for t, writable in samples:
        if writable and start is None:
            start = t
        if not writable and start is not None:
            spans.append((start, last))
            start = None
        last = t
    if start is not None:
        spans.append((start, last))
    return spans


def healthy_without_failures(view, nodes) -> bool:
    return not view.failures and not health_problems(view, nodes, "sync")


def test_the_primary_holds_the_lease(cluster, lock_server) -> None:
    primary = primary_of(cluster)
    assert holder(cluster, lock_server).startswith(f"{LOCK_NAME}: {primary} until")


def test_cut_of_the_sync_standby_falls_back_to_async_with_the_lease(cluster, lock_server) -> None:
    """The primary keeps the lease and goes async; the cut-off standby, quorate alone
    (two_node) and promotable, is refused promotion: it cannot reach the lock server."""
    lab = cluster
    primary = primary_of(lab)
    standby = next(n for n in lab.nodes if n != primary)
    try:
        with cut_under_writes(lab, standby) as (writer, cut_at, samples):
            ack, _ = wait_for("a write acknowledged without the sync standby",
                              lambda: writer.wait_ack_after(cut_at + 1, timeout=1), timeout=40)
            print(f"writes resumed {ack.t - cut_at:.1f}s after the cut of {standby} (async, lease held)")
            refused, _ = wait_for(f"{standby}, alone, to be refused promotion", lambda: [
                f for f in lab.view(standby).failures
                if f.node == standby and f.task == "promote" and "distributed lock" in f.exit_reason], timeout=60)
            print(f"{standby} alone: {refused[0].exit_reason}")
            result = writer.stop_and_check(primary)
    finally:
        lab.heal(standby)
    assert result.lost == []
    assert not writable_spans(samples[standby]), f"{standby} was writable while cut off"
    wait_for("the cluster healthy and the refused promotion expired (failure-timeout)",
             lambda: healthy_without_failures(status(lab), lab.nodes), timeout=150)
    assert primary_of(lab) == primary


def test_cut_of_the_primary_stops_it_before_the_standby_is_promoted(cluster, lock_server, record_property) -> None:
    lab = cluster
    old = primary_of(lab)
    new = next(n for n in lab.nodes if n != old)
    with cut_under_writes(lab, old) as (writer, cut_at, samples):
        wait_for(f"{new} to be promoted", lambda: new in status(lab, [new]).promoted_nodes(CLONE), timeout=90)
        assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
        time.sleep(1)
        result = writer.stop_and_check(new)
    old_spans, new_spans = writable_spans(samples[old]), writable_spans(samples[new])
    assert old_spans and new_spans, samples
    old_stopped, new_writable = old_spans[-1][1], new_spans[-1][0]
    print(f"{old}: last writable {old_stopped - cut_at:.1f}s after the cut; {new}: writable from "
          f"{new_writable - cut_at:.1f}s; writes unavailable {result.unavailability:.1f}s")
    record_property("distlock_cut_unavailability_s", result.unavailability)
    assert old_stopped < new_writable, "both nodes were writable at once"
    assert new_writable - old_stopped > 0.5    # the lease's margin: never back to back
    assert result.lost == [] and not result.interleaved
    assert holder(lab, lock_server).startswith(f"{LOCK_NAME}: {new} until")
    lab.heal(old)
    lab.wait_online(timeout=60, observer=new)
    # The old primary's failed monitor shows as a failed Promoted instance until it is recovered.
    wait_for(f"{new} the only Promoted", lambda: status(lab, [new]).promoted_nodes(CLONE) == [new], timeout=60)
    print(f"old primary {old} after heal: {rejoined_or_refused(lab, old, [new])}")
