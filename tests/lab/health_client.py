"""Run `pha health` in lab nodes and talk to it from the lab's client namespace.

Shared by tests/lab/test_health.py and tests/lab/test_haproxy_failover.py.
`HealthServices` starts one service per node (stopped by its PID at the end);
`client_run(lab, ACTIONS...)` runs CLIENT_CODE in the client namespace: the
only place lab addresses are reached from.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from pha.lab import config

DSN = f"host={config.PG_SOCKET_DIR} port={config.PG_PORT} dbname=postgres user=postgres"

# Reads a JSON list of actions on stdin, prints a JSON list of results.
CLIENT_CODE = r'''
import json, socket, sys, time, threading

def raw(host, port, data=b"", timeout=5.0, hold=0.0):
    """Send data, read until close: (first line or None, whole answer, seconds)."""
    start = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if hold:
            time.sleep(hold)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        s.close()
    answer = b"".join(chunks)
    return answer, time.monotonic() - start

def http(host, port, target, method="GET", timeout=5.0):
    answer, took = raw(host, port, f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), timeout)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode(errors="replace")
    return {"status": status, "body": parsed, "seconds": took, "head": head.decode(errors="replace")}

def slow_clients(host, port, count, seconds):
    """count connections trickling a request one byte per 50 ms; one that is answered or cut reconnects."""
    stop = time.monotonic() + seconds
    payload = b"GET /primary HTTP/1.1\r\nX-Slow: " + b"y" * 4000
    socks = {}
    while time.monotonic() < stop:
        for i in range(count):
            if i not in socks:
                try:
                    s = socket.create_connection((host, port), timeout=2)
                except OSError:
                    continue
                s.setblocking(False)
                socks[i] = [s, 0]
            s, sent = socks[i]
            try:
                s.recv(1, socket.MSG_PEEK)       # an answer (408) or a close: start again
                socks.pop(i)[0].close()
            except BlockingIOError:              # still waiting for our request
                try:
                    s.send(payload[sent % len(payload):][:1])
                    socks[i][1] += 1
                except OSError:
                    socks.pop(i)[0].close()
            except OSError:
                socks.pop(i)[0].close()
        time.sleep(0.05)
    for s, _ in socks.values():
        s.close()

def act(a):
    kind = a["kind"]
    if kind == "http":
        return http(a["host"], a["port"], a["target"], a.get("method", "GET"), a.get("timeout", 5.0))
    if kind == "raw":
        answer, took = raw(a["host"], a["port"], a.get("data", "").encode("latin-1"), a.get("timeout", 5.0),
                           a.get("hold", 0.0))
        return {"answer": answer.decode("latin-1"), "seconds": took}
    if kind == "flood":
        done, lock = [], threading.Lock()
        def worker():
            for _ in range(a["per_thread"]):
                r = http(a["host"], a["port"], a["target"])
                with lock:
                    done.append((r["status"], r["seconds"]))
        start = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(a["threads"])]
        for t in threads: t.start()
        for t in threads: t.join()
        return {"seconds": time.monotonic() - start, "statuses": sorted({s for s, _ in done}),
                "count": len(done), "max": max(t for _, t in done)}
    if kind == "slowloris":
        attack = threading.Thread(target=slow_clients, args=(a["host"], a["port"], a["count"], a["seconds"]))
        attack.start()
        time.sleep(a.get("warmup", 1.0))
        checks = []
        while attack.is_alive():
            try:
                r = http(a["host"], a["port"], a["target"], timeout=2.0)
                checks.append((r["status"], r["seconds"]))
            except OSError as exc:
                checks.append((None, repr(exc)))
            time.sleep(0.05)
        attack.join()
        return {"checks": checks}
    raise ValueError(kind)

print(json.dumps([act(a) for a in json.load(sys.stdin)]))
'''


def client_run(lab, actions: Sequence[dict], timeout: float = 120) -> list[dict]:
    """Run `actions` (see CLIENT_CODE) in the client namespace; their results."""
    done = lab.python("client", CLIENT_CODE, input=json.dumps(list(actions)), timeout=timeout)
    return json.loads(done.stdout)


def http_action(lab, node: str, target: str, port: int = 8008, method: str = "GET") -> dict:
    return {"kind": "http", "host": lab.node_ip(node), "port": port, "target": target, "method": method}


class HealthServices:
    """`pha health` processes started in lab nodes by this test, stopped by their PIDs."""

    def __init__(self, lab, log_dir: Path) -> None:
        self.lab = lab
        self.log_dir = log_dir
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, node: str, *options: str, name: str | None = None, wait: float = 15) -> Path:
        """Start `pha health` in `node`; wait until it listens; return its log file."""
        name = name or node
        log = self.log_dir / f"health-{name}.log"
        argv = [sys.executable, "-m", "pha.health", "--dsn", DSN, *options]
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.lab.node_command(node, argv), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=self.lab.command_env(),
                                    start_new_session=True)
        self.procs[name] = (proc, log)
        deadline = time.monotonic() + wait
        while b"listening on" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pha health in {node} did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return log

    def alive(self, name: str) -> bool:
        return self.procs[name][0].poll() is None

    def stop(self, name: str) -> None:
        proc, _ = self.procs.pop(name)
        # nsenter forks the service (it enters a PID namespace): signal the service itself.
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def pg_sql(lab, node: str, sql: str) -> Any:
    """Run one statement on `node`'s PostgreSQL (local socket) with psycopg; its first row."""
    code = ("import json, sys, psycopg\n"
            f"with psycopg.connect({DSN!r}, autocommit=True) as c:\n"
            "    cur = c.execute(sys.stdin.read())\n"
            "    print(json.dumps(cur.fetchone() if cur.description else None, default=str))\n")
    return json.loads(lab.python(node, code, input=sql).stdout)
