"""A writer loop through the writer VIP, and the check of what it saw.

`Writer(lab, vip).start()` creates its table through the VIP, then runs
WRITER_PROGRAM in the lab's client namespace: one INSERT every `interval`
seconds in autocommit, reconnecting after any error (a TCP probe with a short
timeout first, so the moment the VIP answers again is seen within a tick),
and one JSON line per attempt in a log file on the host. An insert counts as acknowledged only when
its COMMIT returned without PostgreSQL's "canceling wait for synchronous
replication" warning (a commit whose sync wait was cancelled returns success
but may not be on any standby). Each row records the node that wrote it
(cluster_name is the node name in the lab), so the log shows which server
acknowledged every insert.

`stop_and_check(primary)` stops the loop, reads every id on `primary` and
returns a WriterResult: acknowledged inserts missing there (lost), the write
unavailability after the fault `mark()` recorded (the longest gap between two
acknowledgements that ends after it: for a crash, the last acknowledgement
before it to the first after it; for a switchover, the gap while the primary
changes hands), and whether two servers took turns acknowledging (two
primaries accepting writes through the VIP).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

from pha.lab import config
from pha.lab.core import Lab, LabError

TABLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2  # libpq's minimum

# Runs in the client namespace: argv = host port table interval connect_timeout.
WRITER_PROGRAM = r"""
import json, signal, socket, sys, time
import psycopg
host, port, table, interval, connect_timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
probe_timeout = max(0.1, min(0.3, 2 * interval))
stopping = False
def on_term(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, on_term)
def emit(**record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
insert = f"INSERT INTO {table} (id, node, sent) VALUES (%s, current_setting('cluster_name'), %s) RETURNING node"
conn, notices, next_id, due = None, [], 1, time.monotonic()
while not stopping:
    sent = time.time()
    try:
        if conn is None:
            # A fresh SYN every tick: libpq's connect_timeout (2 s at least) and the kernel's SYN
            # retransmits (1 s, 3 s) would hide the moment the VIP comes back.
            socket.create_connection((host, port), timeout=probe_timeout).close()
            conn = psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True,
                                   connect_timeout=connect_timeout, application_name="pha-writer",
                                   keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=2,
                                   tcp_user_timeout=2000)
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        del notices[:]
        node = conn.execute(insert, (next_id, sent)).fetchone()[0]
        cancelled = any("canceling wait for synchronous replication" in n for n in notices)
        emit(event="unconfirmed" if cancelled else "ack", id=next_id, sent=sent, t=time.time(), node=node)
    except (psycopg.Error, OSError) as exc:
        emit(event="error", id=next_id, sent=sent, t=time.time(), error=(str(exc).strip() or type(exc).__name__).splitlines()[0][:200])
        if conn is not None:
            conn.close()
        conn = None
    next_id += 1
    due = max(due + interval, time.monotonic())
    while not stopping and time.monotonic() < due:
        time.sleep(min(0.05, due - time.monotonic()))
emit(event="stopped", t=time.time())
"""

CREATE_TABLE = r"""
import sys
import psycopg
host, port, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True,
                     connect_timeout=5) as conn:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, node text NOT NULL, sent float8 NOT NULL)")
"""

READ_IDS = r"""
import json, sys
import psycopg
host, port, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True,
                     connect_timeout=5) as conn:
    recovery, node = conn.execute("SELECT pg_is_in_recovery(), current_setting('cluster_name')").fetchone()
    ids = [row[0] for row in conn.execute(f"SELECT id FROM {table}")]
print(json.dumps({"in_recovery": recovery, "node": node, "ids": ids}))
"""


class Ack(NamedTuple):
    """One acknowledged insert: its id, when it was sent and acknowledged, and by which node."""

    id: int
    sent: float
    t: float
    node: str


@dataclass
class WriterResult:
    """What the writer saw, checked against the primary's table."""

    checked_on: str
    attempts: int
    acknowledged: int
    lost: list[int]
    unconfirmed: list[int]
    errors: int
    error_samples: list[str]
    acks_by_node: dict[str, int]
    node_runs: list[str]
    interleaved: bool
    longest_gap: float
    fault_at: Optional[float] = None
    last_ack_before: Optional[float] = None
    first_ack_after: Optional[float] = None
    unavailability: Optional[float] = None
    marks: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        unavailable = "n/a" if self.unavailability is None else f"{self.unavailability:.2f}s"
        return (f"{self.acknowledged}/{self.attempts} acknowledged, {len(self.lost)} lost, "
                f"{len(self.unconfirmed)} unconfirmed, unavailable {unavailable} around the fault, "
                f"longest gap {self.longest_gap:.2f}s, writers {' -> '.join(self.node_runs) or 'none'}"
                + (" (INTERLEAVED)" if self.interleaved else "") + f", checked on {self.checked_on}")


def parse_log(lines: Iterable[str]) -> list[dict]:
    """The writer's JSON records (a torn last line is skipped)."""
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def acks_of(records: Iterable[dict]) -> list[Ack]:
    """The acknowledged inserts, in the order they were acknowledged."""
    return sorted((Ack(r["id"], r["sent"], r["t"], r["node"]) for r in records if r.get("event") == "ack"),
                  key=lambda a: a.t)


def analyse(records: list[dict], present_ids: Iterable[int], checked_on: str,
            fault_at: Optional[float] = None, marks: Optional[dict[str, float]] = None) -> WriterResult:
    """Check the writer's records against the ids present on the primary."""
    acks = acks_of(records)
    present = set(present_ids)
    attempts = [r for r in records if r.get("event") in ("ack", "unconfirmed", "error")]
    errors = [r for r in records if r.get("event") == "error"]
    runs: list[str] = []
    by_node: dict[str, int] = {}
    for ack in acks:
        by_node[ack.node] = by_node.get(ack.node, 0) + 1
        if not runs or runs[-1] != ack.node:
            runs.append(ack.node)
    times = [a.t for a in acks]
    result = WriterResult(
        checked_on=checked_on, attempts=len(attempts), acknowledged=len(acks),
        lost=sorted(a.id for a in acks if a.id not in present),
        unconfirmed=sorted(r["id"] for r in records if r.get("event") == "unconfirmed"),
        errors=len(errors), error_samples=list(dict.fromkeys(r["error"] for r in errors))[:5],
        acks_by_node=by_node, node_runs=runs, interleaved=len(runs) != len(set(runs)),
        longest_gap=max((b - a for a, b in zip(times, times[1:])), default=0.0),
        fault_at=fault_at, marks=dict(marks or {}))
    if fault_at is not None:
        before = [t for t in times if t <= fault_at]
        after = [t for t in times if t > fault_at]
        result.last_ack_before = before[-1] if before else None
        result.first_ack_after = after[0] if after else None
        if before and after:
            result.unavailability = max(b - a for a, b in zip(times, times[1:]) if b > fault_at)
    return result


class Writer:
    """The writer loop in the client namespace, writing through `vip`."""

    def __init__(self, lab: Lab, vip: str, port: int = config.PG_PORT, table: str = "pha_writer",
                 interval: float = 0.1, log_dir: Optional[Path] = None) -> None:
        if not TABLE_RE.fullmatch(table):
            raise ValueError(f"table: {table!r} is not a plain lower-case SQL name")
        if not 0.01 <= interval <= 10:
            raise ValueError(f"interval: {interval!r} must be 0.01-10 seconds")
        self.lab, self.vip, self.port, self.table, self.interval = lab, vip, port, table, interval
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="pha-writer."))
        self.log_path = self.log_dir / f"{table}.jsonl"
        self.marks: dict[str, float] = {}
        self._proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = START_TIMEOUT) -> "Writer":
        """(Re)create the table through the VIP, start the loop, wait for its first acknowledgement."""
        self.lab.client_exec([sys.executable, "-c", CREATE_TABLE, self.vip, str(self.port), self.table],
                             timeout=30)
        argv = self.lab.client_command([sys.executable, "-u", "-c", WRITER_PROGRAM, self.vip, str(self.port),
                                        self.table, str(self.interval), str(CONNECT_TIMEOUT)])
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as log, open(self.log_path.with_suffix(".stderr"), "wb") as err:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=err, stdin=subprocess.DEVNULL,
                                          env=self.lab.command_env(), cwd="/", start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.acks():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"writer through {self.vip}: no acknowledged insert within {timeout:.0f}s; "
                               f"{self.tail()}")
            time.sleep(0.05)
        return self

    def mark(self, label: str = "fault") -> float:
        """Record now (wall clock, as the writer's timestamps) as the moment of `label`."""
        self.marks[label] = time.time()
        return self.marks[label]

    def records(self) -> list[dict]:
        try:
            with open(self.log_path) as log:
                return parse_log(log)
        except FileNotFoundError:
            return []

    def acks(self) -> list[Ack]:
        return acks_of(self.records())

    def wait_ack_after(self, moment: float, timeout: float) -> Optional[Ack]:
        """The first acknowledgement after `moment` (wall clock), waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while True:
            later = [a for a in self.acks() if a.t > moment]
            if later:
                return later[0]
            if time.monotonic() > deadline or (self._proc is not None and self._proc.poll() is not None):
                return None
            time.sleep(0.1)

    def tail(self, lines: int = 5) -> str:
        err = self.log_path.with_suffix(".stderr")
        text = err.read_text(errors="replace") if err.exists() else ""
        records = self.records()[-lines:]
        return f"last records {records}; stderr: {text.strip()[-1000:] or '(empty)'}"

    def stop(self) -> None:
        """Stop the loop (SIGTERM, then SIGKILL); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def check(self, primary: str, fault: str = "fault") -> WriterResult:
        """Read every id on `primary` (a node name) and check the writer's records against them."""
        out = self.lab.client_exec([sys.executable, "-c", READ_IDS, self.lab.node_ip(primary),
                                    str(self.port), self.table], timeout=60).stdout
        table = json.loads(out)
        if table["in_recovery"]:
            raise LabError(f"writer check: {primary} ({table['node']}) is in recovery, not a primary")
        return analyse(self.records(), table["ids"], f"{primary} ({table['node']})",
                       self.marks.get(fault), self.marks)

    def stop_and_check(self, primary: str, fault: str = "fault") -> WriterResult:
        self.stop()
        return self.check(primary, fault)
