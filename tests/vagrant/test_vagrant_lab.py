"""The Vagrant 3-node lab end to end: `vagrant up` (vagrant-lxc) gives a healthy pha cluster through
the install guide's steps; kill -9 of the primary's postmaster gives a new primary and loses no
acknowledged insert; `vagrant destroy` leaves nothing behind (the fixture checks that).

    tools/test.sh -v -m vagrant tests/vagrant
"""
from __future__ import annotations

import threading
import time

import pytest

from vagrant_lab import NET, VagrantLab

pytestmark = pytest.mark.vagrant
WRITER_VIP = f"{NET}.100"
READER_VIP = f"{NET}.101"
# Inserts through the writer VIP, one row per transaction; prints the id of each acknowledged
# commit, "# id error" for failures; reconnects until /tmp/pha-writer.stop exists.
WRITER = r"""
import os, sys, time, psycopg
host, n, conn = sys.argv[1], 0, None
while not os.path.exists("/tmp/pha-writer.stop"):
    n += 1
    try:
        if conn is None:
            conn = psycopg.connect(host=host, user="postgres", dbname="postgres", connect_timeout=2,
                                   autocommit=True, keepalives_idle=1, keepalives_interval=1,
                                   keepalives_count=2, tcp_user_timeout=3000)
        conn.execute("insert into pha_acks (id) values (%s)", (n,))
        print(n, time.time(), flush=True)
    except psycopg.Error as err:
        print("#", n, time.time(), type(err).__name__, flush=True)
        conn = None
        time.sleep(0.2)
    else:
        time.sleep(0.02)
"""
POSTMASTER_PID = 'cat "/var/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/pha/postmaster.pid"'


class Writer:
    """The writer loop in a node, its output collected as it comes."""

    def __init__(self, lab: VagrantLab, node: str) -> None:
        self.lab, self.node = lab, node
        self.acks: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self.proc = lab.popen(node, "/opt/pha/bin/python", "-c", WRITER, WRITER_VIP)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if words and words[0] == "#":
                self.errors.append(line.strip())
            elif len(words) == 2:
                self.acks.append((int(words[0]), float(words[1])))

    def acks_after(self, moment: float) -> int:
        return sum(1 for _, at in self.acks if at > moment)

    def stop(self) -> None:
        self.lab.run(self.node, "touch", "/tmp/pha-writer.stop")
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)


def primary(lab: VagrantLab, node: str) -> str:
    done = lab.run(node, "pha", "master", check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def test_vagrant_up_is_healthy(vagrant_lab: VagrantLab) -> None:
    shown = vagrant_lab.run("node1", "pha", "status", "--brief").stdout
    assert "verdict:    healthy" in shown
    readers = [line for line in shown.splitlines() if line.startswith("reader VIP:")]
    assert len(readers) == 1 and READER_VIP in readers[0], shown
    crm = vagrant_lab.run("node1", "crm_mon", "--one-shot").stdout
    assert "Online: [ node1 node2 node3 ]" in crm, crm
    for node in ("node1", "node2", "node3"):      # pha guard runs under systemd, as installed
        active = vagrant_lab.run(node, "systemctl", "is-active", "pha-guard", check=False).stdout.strip()
        assert active == "active", (node, active, vagrant_lab.run(
            node, "journalctl", "-u", "pha-guard", "--no-pager", "-n", "20", check=False).stdout)


def test_kill_9_of_the_primary_loses_no_acknowledged_insert(vagrant_lab: VagrantLab) -> None:
    lab = vagrant_lab
    old = primary(lab, "node1")
    assert old, "no primary before the fault"
    survivor = next(n for n in ("node3", "node2", "node1") if n != old)
    lab.run(survivor, "runuser", "-u", "postgres", "--", "psql", "-h", WRITER_VIP, "-Atqc",
            "create table pha_acks (id integer primary key)")
    writer = Writer(lab, survivor)
    try:
        lab.wait_for("the writer's first acknowledged inserts", lambda: len(writer.acks) >= 20, 60, every=0.5)
        pid = lab.run(old, "sh", "-c", POSTMASTER_PID).stdout.split()[0]
        killed_at = time.time()
        lab.run(old, "kill", "-9", pid)
        new = lab.wait_for("a new primary", lambda: (p := primary(lab, survivor)) and p != old and p, 120)
        lab.timings["new_primary_after_s"] = round(time.time() - killed_at, 1)
        lab.wait_for("inserts acknowledged by the new primary", lambda: writer.acks_after(killed_at) >= 20,
                     120, every=0.5)
    finally:
        writer.stop()
    acked = {n for n, _ in writer.acks}
    stored = lab.run(survivor, "runuser", "-u", "postgres", "--", "psql", "-h", WRITER_VIP, "-Atqc",
                     "select id from pha_acks").stdout.split()
    lost = sorted(acked - {int(n) for n in stored})
    times = sorted(at for _, at in writer.acks)
    gap = max(later - earlier for earlier, later in zip(times, times[1:]) if later > killed_at)
    lab.timings.update(acked_inserts=len(acked), lost_acked_inserts=len(lost),
                       failed_inserts=len(writer.errors), longest_write_gap_s=round(gap, 1),
                       old_primary=old, new_primary=new)
    assert not lost, f"{len(lost)} acknowledged inserts lost after the primary's kill -9: {lost[:20]}"
