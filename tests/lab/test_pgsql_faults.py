"""Faults of the primary's node on a fencing cluster, as a new user builds it: `pha lab up` (BMCs,
fence_ipmilan) and `pha setup templates/lab.ini` (sync mode), a writer through the writer VIP, and
a sampler inside every node reading pg_is_in_recovery() and the writer VIP every 200 ms.

Faults: kill -9 of the postmaster, of corosync, of the pacemaker daemons, a cut of the node. Without fencing
each gave two writable primaries behind the VIP for seconds. With it: 0 acknowledged inserts
lost, never two nodes writable at once nor the writer VIP on two nodes, writes back within
WRITES_BACK_BOUND, and the fenced node boots and rejoins (or is refused by the fork guard,
loudly); after corosync's death pha guard stops the primary before the node is fenced. Also a
hung primary (SIGSTOP: no fencing needed) and a cut of the sync standby while the application,
as a superuser, holds every connection slot. One lab for the module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
import pytest

from pha.lab import config, fence
from pgsql_cluster import CLONE, DATA_STATUS, primary_of, rejoined_or_refused, status, wait_for, wait_healthy
from writer import Writer

pytestmark = pytest.mark.lab
LAB_INI = Path(__file__).resolve().parents[2] / "templates" / "lab.ini"
SAMPLE_EVERY = 0.2
PGDATA = config.PGDATA
WRITES_BACK_BOUND = 30.0   # the goals (bench medians): 15 s after corosync/pacemaker death, 12 s after a cut
HUNG_BOUND = 30.0          # the goal: 20 s
SYNC_CUT_BOUND = 30.0      # wal_timeout (5 s) to see the standby gone, a monitor, a reload
GUARD_BOUND = 7.5          # pha guard: 5 s of grace, a 1 s check, the shutdown
GUARD_LOG = "/var/log/pha/guard.log"
BACK_TIMEOUT = 180.0

# Runs inside a node: one JSON line per sample (writable: not in recovery; None: no answer).
SAMPLER = r"""
import errno, json, socket, sys, time
import psycopg
vip, every = sys.argv[1], float(sys.argv[2])
conn = None
while True:
    t = time.time()
    try:
        if conn is None:
            conn = psycopg.connect(host="/run/postgresql", user="postgres", dbname="postgres", autocommit=True,
                                   connect_timeout=1, options="-c statement_timeout=500")
        writable = not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except (psycopg.Error, OSError):
        writable = None
        if conn is not None:
            conn.close()
        conn = None
    probe = socket.socket()
    try:
        probe.bind((vip, 0))
        has_vip = True
    except OSError as exc:
        has_vip = exc.errno != errno.EADDRNOTAVAIL
    finally:
        probe.close()
    print(json.dumps({"t": t, "writable": writable, "vip": has_vip}), flush=True)
    time.sleep(max(0.0, every - (time.time() - t)))
"""


class Samplers:
    """A sampler in every node; the intervals each node was writable / held the VIP."""

    def __init__(self, lab, vip: str) -> None:
        self.lab, self.vip = lab, vip
        self.dir = Path(tempfile.mkdtemp(prefix="pha-samples."))
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "Samplers":
        for node in self.lab.nodes:
            argv = self.lab.node_command(node, [sys.executable, "-u", "-c", SAMPLER, self.vip, str(SAMPLE_EVERY)])
            with open(self.dir / f"{node}.jsonl", "ab") as out:
                self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL,
                                                   stdin=subprocess.DEVNULL, env=self.lab.command_env(),
                                                   start_new_session=True))
        time.sleep(1)
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    def intervals(self, key: str) -> dict[str, list[tuple[float, float]]]:
        """node -> the [from, to) intervals its samples say `key` was true (a sample holds until the
        next one, the last one for SAMPLE_EVERY)."""
        found: dict[str, list[tuple[float, float]]] = {}
        for node in self.lab.nodes:
            samples = []
            for line in (self.dir / f"{node}.jsonl").read_text().splitlines():
                try:
                    samples.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
            spans = []
            for sample, following in zip(samples, samples[1:] + [None]):
                end = following["t"] if following else sample["t"] + SAMPLE_EVERY
                if sample[key]:
                    spans.append((sample["t"], min(end, sample["t"] + 2 * SAMPLE_EVERY)))
            found[node] = spans
        return found

    def overlaps(self, key: str) -> list[str]:
        """Moments two nodes had `key` at once."""
        spans = self.intervals(key)
        found = []
        nodes = list(spans)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                for (a0, a1) in spans[a]:
                    for (b0, b1) in spans[b]:
                        if a0 < b1 and b0 < a1:
                            found.append(f"{a} and {b} both {key} at {max(a0, b0):.2f}")
        return found


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"fence": True}


@pytest.fixture(scope="module")
def fenced_cluster(lab):
    """`pha setup templates/lab.ini` from the host on the fencing lab, then healthy."""
    env = dict(os.environ, PHA_LAB_STATE=str(lab.state_dir))
    done = subprocess.run([sys.executable, "-m", "pha.commands", "setup", str(LAB_INI)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_healthy(lab, timeout=120, rep_mode="sync")
    assert lab.view("node1").summary.fencing_enabled
    return lab


def watch_power_off(lab, node: str, found: dict) -> threading.Thread:
    """Note when node's PID 1 dies (the BMC cut its power)."""
    from pha.lab.procs import start_time as _start_time
    record = dict(lab.info["nodes"][node])

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _start_time(record["pid"]) != record["pid_start"]:
                found["off"] = time.time()
                return
            time.sleep(0.05)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def fault_and_check(lab, fault: str, inflict, heal=None, fenced: bool = True, guarded: bool = False,
                    bound: float = WRITES_BACK_BOUND) -> dict[str, float]:
    """Inflict `fault` on the primary's node under the writer and the samplers; check the
    promises; the timings (fault -> powered off by its BMC, -> writes back on the new primary)."""
    old = primary_of(lab)
    others = [n for n in lab.nodes if n != old]
    writer = Writer(lab, lab.vip(0), table=f"pha_{fault}").start()
    samplers = Samplers(lab, lab.vip(0)).start()
    power: dict[str, float] = {}
    result, new = None, None
    try:
        time.sleep(1)
        watcher = watch_power_off(lab, old, power)
        at = writer.mark()
        inflict(old)
        new, _ = wait_for("a new primary", lambda: next(
            (n for n in status(lab, others).promoted_nodes(CLONE) if n != old), None), timeout=90)
        ack, _ = wait_for(f"a write acknowledged by {new}", lambda: next(
            (a for a in writer.acks() if a.node == new and a.t > at), None), timeout=bound)
        watcher.join(timeout=60 if fenced else 0)
        time.sleep(2)
        result = writer.stop_and_check(new)
    finally:
        writer.stop()
        samplers.stop()
        if heal is not None:
            heal(old)
    old_acks = [a.t for a in writer.acks() if a.node == old and a.t > at]
    timings = {"fenced_s": round(power["off"] - at, 2) if "off" in power else None,
               "writes_back_s": round(ack.t - at, 2), "unavailable_s": result.unavailability,
               "old_last_ack_s": round(max(old_acks) - at, 2) if old_acks else 0.0}
    power_off = (f"{old} not powered off" if timings["fenced_s"] is None
                 else f"{old} powered off by its BMC {timings['fenced_s']}s")
    print(f"{fault} on {old}: {result.summary()}; fault -> last write acknowledged by {old} "
          f"{timings['old_last_ack_s']}s, -> {power_off}, -> writes back {timings['writes_back_s']}s on {new}")
    assert result.lost == [] and not result.interleaved, result.summary()
    assert samplers.overlaps("writable") == [], samplers.overlaps("writable")[:5]
    assert samplers.overlaps("vip") == [], samplers.overlaps("vip")[:5]
    if fenced:
        assert "off" in power, f"{old} was not fenced (its PID 1 lives)"
    if guarded:   # pha guard shut the old primary down before its node was powered off
        said = lab.node_path(old, GUARD_LOG).read_text()
        assert "shutting down the primary" in said, said[-2000:]
        assert timings["old_last_ack_s"] <= GUARD_BOUND < timings["fenced_s"], timings
    assert timings["writes_back_s"] <= bound
    lab.wait_online(timeout=BACK_TIMEOUT, observer=others[0])
    timings["back_s"] = round(time.time() - at, 2)
    outcome = rejoined_or_refused(lab, old, others)
    print(f"{old}: online again {timings['back_s']}s after the fault, {outcome}")
    return timings


def test_kill_9_of_the_primarys_postmaster(fenced_cluster, record_property) -> None:
    """PostgreSQL crashes; its node and cluster are fine: the sync standby is promoted, no fencing."""
    lab = fenced_cluster

    def kill_postmaster(node: str) -> None:
        lab.exec(node, ["kill", "-9", lab.exec(node, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()])
    timings = fault_and_check(lab, "kill_postmaster", kill_postmaster, fenced=False)
    for name, value in timings.items():
        record_property(f"postmaster_kill_{name}", value)


def kill_corosync(lab, node: str) -> None:
    pid = lab.exec(node, ["pidof", "corosync"]).stdout.split()[0]
    lab.exec(node, ["kill", "-9", pid])


def test_kill_9_of_corosync_on_the_primarys_node(fenced_cluster, record_property) -> None:
    """Its Pacemaker goes with corosync: pha guard shuts the primary down (grace 5 s) before
    the others, after corosync's token and consensus (8 s), can fence the node."""
    timings = fault_and_check(fenced_cluster, "kill_corosync", lambda node: kill_corosync(fenced_cluster, node),
                              guarded=True)
    for name, value in timings.items():
        record_property(f"corosync_kill_{name}", value)


PACEMAKER_DAEMONS = ("pacemakerd", "pacemaker-based", "pacemaker-fenced", "pacemaker-execd", "pacemaker-attrd",
                     "pacemaker-schedulerd", "pacemaker-controld")


def kill_pacemaker(lab, node: str) -> None:
    """kill -9 of every pacemaker daemon of the node (pidof sees the node's own PID namespace only)."""
    pids = lab.exec(node, ["pidof", *PACEMAKER_DAEMONS]).stdout.split()
    lab.exec(node, ["kill", "-9", *pids])


def test_kill_9_of_the_pacemaker_daemons_on_the_primarys_node(fenced_cluster, record_property) -> None:
    timings = fault_and_check(fenced_cluster, "kill_pacemaker", lambda node: kill_pacemaker(fenced_cluster, node))
    for name, value in timings.items():
        record_property(f"pacemaker_kill_{name}", value)


def test_cut_of_the_primarys_node(fenced_cluster, record_property) -> None:
    lab = fenced_cluster

    def heal(node: str) -> None:     # a fenced node boots as it was: cut; plug it in once it is on again
        wait_for(f"{node} powered on by its BMC", lambda: fence.power_status(lab, node), timeout=60)
        lab.heal(node)
    timings = fault_and_check(lab, "cut", lab.cut, heal=heal)
    for name, value in timings.items():
        record_property(f"cut_{name}", value)



def test_sigstop_of_the_primarys_postgres(fenced_cluster, record_property) -> None:
    """A hung primary (every PostgreSQL process stopped): the monitor fails it, the demote
    ends it (immediate shutdown, then SIGKILL, which a stopped process obeys), the sync
    standby is promoted; no fencing is needed."""
    lab = fenced_cluster

    def resume(node: str) -> None:
        lab.exec(node, ["pkill", "-CONT", "-u", "postgres"], check=False)
    timings = fault_and_check(lab, "sigstop", lambda node: lab.exec(node, ["pkill", "-STOP", "-u", "postgres"]),
                              heal=resume, fenced=False, bound=HUNG_BOUND)
    for name, value in timings.items():
        record_property(f"sigstop_{name}", value)


# Runs in the client namespace: argv = host port table; takes every connection slot it can, as a
# superuser, and inserts on each in a loop (each insert waits for the sync standby) until killed.
HOG = r"""
import sys, threading, time
import psycopg
host, port, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conns = []
while True:
    try:
        conns.append(psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True,
                                     connect_timeout=3, application_name="pha-hog"))
    except psycopg.Error as exc:
        print(f"holding {len(conns)} connections; then: {str(exc).strip().splitlines()[-1]}", flush=True)
        break
def insert(conn):
    while True:
        try:
            conn.execute(f"INSERT INTO {table} DEFAULT VALUES")
        except psycopg.Error:
            return
        time.sleep(0.2)
for conn in conns:
    threading.Thread(target=insert, args=(conn,), daemon=True).start()
while True:
    time.sleep(1)
"""


def test_cut_of_the_sync_standby_with_every_connection_taken(fenced_cluster, record_property) -> None:
    """The application connects as a superuser and its commits, waiting for the sync standby
    that was cut, hold every connection slot. The primary stays: its monitor gets in through
    a walsender connection and names another sync standby (or goes async), which releases
    the commits; nothing is lost and the primary is never failed."""
    lab = fenced_cluster
    wait_healthy(lab, timeout=120, rep_mode="sync")
    primary = primary_of(lab)
    victim = next(n for n in lab.nodes if status(lab).attribute(n, DATA_STATUS) == "STREAMING|SYNC")
    writer = Writer(lab, lab.vip(0), table="pha_sync_cut").start()
    lab.client_exec([sys.executable, "-c", "import psycopg, sys; psycopg.connect(host=sys.argv[1], user='postgres', "
                     "dbname='postgres', autocommit=True).execute('DROP TABLE IF EXISTS pha_hog; "
                     "CREATE TABLE pha_hog (id bigserial PRIMARY KEY)')", lab.vip(0)], timeout=30)
    hog = subprocess.Popen(lab.client_command([sys.executable, "-u", "-c", HOG, lab.vip(0), "5432", "pha_hog"]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                           env=lab.command_env(), start_new_session=True)
    samplers = Samplers(lab, lab.vip(0)).start()
    try:
        held = hog.stdout.readline().strip()
        assert "too many clients" in held or "reserved" in held, held
        at = writer.mark()
        lab.cut(victim)
        ack, back = wait_for("a write acknowledged after the cut", lambda: next(
            (a for a in writer.acks() if a.t > at + 1), None), timeout=SYNC_CUT_BOUND)
        time.sleep(5)
        view = status(lab, [n for n in lab.nodes if n != victim])
        assert view.promoted_nodes(CLONE) == [primary], view.promoted_nodes(CLONE)
        failures = [f for f in view.failures if f.node == primary]
        assert failures == [], failures
    finally:
        hog.kill()
        hog.wait(timeout=10)
        writer.stop()
        samplers.stop()
    result = writer.check(primary)
    print(f"sync standby {victim} cut, every slot of {primary} taken ({held}): {result.summary()}; "
          f"writes back {ack.t - at:.2f}s after the cut")
    record_property("sync_cut_full_writes_back_s", round(ack.t - at, 2))
    assert result.lost == [] and not result.interleaved, result.summary()
    assert samplers.overlaps("writable") == [] and samplers.overlaps("vip") == []
    wait_for(f"{victim} powered on by its BMC", lambda: fence.power_status(lab, victim), timeout=120)
    lab.heal(victim)
    lab.wait_online(timeout=BACK_TIMEOUT, observer=primary)
    wait_healthy(lab, timeout=120, rep_mode="sync")


def test_double_failure_corosync_of_the_primary_and_its_sync_standbys_postmaster(fenced_cluster,
                                                                                 record_property) -> None:
    """kill -9 of corosync on the primary's node and of its sync standby's postmaster at once.
    The primary, its Pacemaker gone, goes on with the third node as its sync standby and
    acknowledges commits only that node holds, until pha guard stops it; nobody rewrites the
    attributes, so the restarted sync standby is the one Pacemaker promotes. Its promotion asks
    the other standby where its WAL ends and fetches what it lacks first (pha.pgsql.peers):
    0 acknowledged inserts lost (session 4 lost 46 and 51 here)."""
    lab = fenced_cluster
    wait_healthy(lab, timeout=120, rep_mode="sync")
    sync = next(n for n in lab.nodes if status(lab).attribute(n, DATA_STATUS) == "STREAMING|SYNC")

    def kill_both(node: str) -> None:
        pid = lab.exec(sync, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
        lab.exec(sync, ["kill", "-9", pid])
        kill_corosync(lab, node)
    timings = fault_and_check(lab, "double", kill_both, guarded=True)
    for name, value in timings.items():
        record_property(f"double_failure_{name}", value)
