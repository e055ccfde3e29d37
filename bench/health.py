#!/usr/bin/env python3
"""Benchmark `pha health` against the process-per-check approach and Patroni's REST API.

Everything runs in a one-node namespace lab (PostgreSQL primary on node1):
- pha health: `pha health` on node1, GET /primary;
- process per check (seed 000's pgsqlchk under xinetd): an xinetd-style
  listener on node1 that forks and executes a bash script per connection, the
  script running one `psql` query (psql on purpose: it is the baseline);
- Patroni's REST API (Debian's patroni, raft DCS, managing node1's
  PostgreSQL), GET /primary, when `patroni` is installed (else reported).

The load comes from the lab's client namespace: C concurrent checkers (50 by
default), each opening a new connection per check as HAProxy does.
"saturated": every checker checks again as soon as it has its answer, for
--seconds; "paced": every checker checks every 1/--rate s. Reported:
checks/s, p50 and p99 latency. Results go to bench/results/health.md.

Run as root with a lab instance of your own, e.g.
    PHA_LAB_INSTANCE=2 .venv/bin/python bench/health.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pha.lab import Lab, config, postgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "health.md"
PHA_PORT, PGSQLCHK_PORT, PATRONI_PORT = 8008, 8009, 8010
DSN = f"host={config.PG_SOCKET_DIR} port={config.PG_PORT} dbname=postgres user=postgres"

# Seed 000's check, as xinetd runs it: the request comes on stdin, the answer goes to stdout.
PGSQLCHK = r"""#!/bin/bash
# pgsqlchk (seed 000): 200 primary, 206 standby, 503 down; one psql per check.
while IFS= read -r -t 2 line && [ "${line%$'\r'}" != "" ]; do :; done
answer() { printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "$1" "${#2}" "$2"; }
r=$(@PSQL@ -h @SOCKET@ -p @PORT@ -U postgres -d postgres -qtAX -c 'select pg_is_in_recovery()' 2>/dev/null)
if [ "$r" = "f" ]; then answer "200 OK" "Primary"
elif [ "$r" = "t" ]; then answer "206 Partial Content" "Standby"
else answer "503 Service Unavailable" "DB Down"; fi
"""

# xinetd's "wait = no" service: fork + exec the server per connection, the socket as stdin/stdout.
XINETD = r"""
import os, signal, socket, sys
def reap(*_):    # reaped with waitpid so their CPU time adds up in this process's cutime/cstime
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
listener = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=512, reuse_port=True)
print("listening", flush=True)
while True:
    conn, _ = listener.accept()     # retried after SIGCHLD (PEP 475)
    if os.fork() == 0:
        listener.close()
        os.dup2(conn.fileno(), 0); os.dup2(conn.fileno(), 1)
        os.execv("/bin/bash", ["bash", sys.argv[2]])
    conn.close()
"""

PATRONI_YML = """\
scope: bench
name: node1
restapi:
  listen: 0.0.0.0:{rest_port}
  connect_address: {ip}:{rest_port}
raft:
  data_dir: {raft_dir}
  self_addr: 127.0.0.1:2222
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
postgresql:
  listen: 0.0.0.0:{pg_port}
  connect_address: {ip}:{pg_port}
  data_dir: {pgdata}
  bin_dir: {bin_dir}
  pgpass: /tmp/patroni.pgpass
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: postgres}}
  parameters:
    unix_socket_directories: {socket}
"""

# The load generator, run in the client namespace. argv: JSON settings. Prints JSON results.
LOAD = r"""
import asyncio, json, sys, time
cfg = json.loads(sys.argv[1])
request = f"GET {cfg['path']} HTTP/1.1\r\nHost: {cfg['host']}\r\n\r\n".encode()

async def check():
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(cfg["host"], cfg["port"])
    writer.write(request)
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    return status, time.perf_counter() - t0

async def checker(deadline, period, phase, latencies, statuses):
    # Paced checkers are spread over the period, as HAProxy spreads its checks.
    await asyncio.sleep(phase)
    due = time.perf_counter()
    while time.perf_counter() < deadline:
        if period:
            due += period
        try:
            status, took = await asyncio.wait_for(check(), 10)
        except (OSError, asyncio.TimeoutError):
            status, took = -1, 10.0
        latencies.append(took)
        statuses[status] = statuses.get(status, 0) + 1
        if period:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

async def main():
    latencies, statuses = [], {}
    start = time.perf_counter()
    deadline = start + cfg["seconds"]
    period = 1.0 / cfg["rate"] if cfg["rate"] else 0.0
    await asyncio.gather(*(checker(deadline, period, period * i / cfg["checkers"], latencies, statuses)
                           for i in range(cfg["checkers"])))
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(json.dumps({"checks": len(latencies), "seconds": elapsed, "per_s": len(latencies) / elapsed,
                      "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": latencies[-1] * 1000,
                      "statuses": statuses}))

asyncio.run(main())
"""


class Background:
    """A process started in a lab node; stopped by its own PID (nsenter forks it)."""

    def __init__(self, lab: Lab, node: str, argv: list[str], log: Path, ready: str,
                 user: str | None = None, timeout: float = 60) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(lab.node_command(node, argv, user=user), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=lab.command_env(),
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while ready.encode() not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not start; {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)

    def tree(self) -> list[int]:
        """PIDs of the process tree under the nsenter we started (itself first)."""
        found, pending = [], [self.proc.pid]
        while pending:
            pid = pending.pop()
            try:
                pending += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except FileNotFoundError:
                continue
            found.append(pid)
        return found

    def cpu_seconds(self) -> float:
        """CPU time of the service's process tree (live processes, and the children they reaped)."""
        total = 0.0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        return total

    def renice(self, nice: int) -> None:
        """Set the nice value of every thread of the service's process tree (children inherit it)."""
        for pid in self.tree():
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(task), nice)
            except (FileNotFoundError, ProcessLookupError):
                continue

    def stop(self) -> None:
        """SIGTERM the service (the child of nsenter), SIGKILL it after 30 s."""
        if self.proc.poll() is not None:
            return
        service = self.tree()[1:2]
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            for pid in service:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def load(lab: Lab, port: int, path: str, checkers: int, seconds: float, rate: float, nice: int = 0) -> dict:
    settings = {"host": lab.node_ip("node1"), "port": port, "path": path, "checkers": checkers,
                "seconds": seconds, "rate": rate}
    done = lab.client_exec(["nice", "-n", str(nice), sys.executable, "-c", LOAD, json.dumps(settings)],
                           timeout=seconds + 120)
    return json.loads(done.stdout)


def start_pha(lab: Lab, work: Path) -> Background:
    return Background(lab, "node1", [sys.executable, "-m", "pha.health", "--dsn", DSN, "--port", str(PHA_PORT),
                                     "--max-connections", "1024"],
                      work / "pha-health.log", ready="listening on", timeout=15)


def start_pgsqlchk(lab: Lab, work: Path) -> Background:
    script = work / "pgsqlchk"
    script.write_text(PGSQLCHK.replace("@PSQL@", shutil.which("psql") or "/usr/bin/psql")
                      .replace("@SOCKET@", config.PG_SOCKET_DIR).replace("@PORT@", str(config.PG_PORT)))
    script.chmod(0o755)
    return Background(lab, "node1", [sys.executable, "-c", XINETD, str(PGSQLCHK_PORT), str(script)],
                      work / "xinetd.log", ready="listening")


def start_patroni(lab: Lab, work: Path) -> Background:
    raft = lab.node_path("node1", "/var/lib/postgresql/raft")
    raft.mkdir(exist_ok=True)
    shutil.chown(raft, "postgres", "postgres")
    yml = lab.node_path("node1", "/var/lib/postgresql/patroni.yml")
    yml.write_text(PATRONI_YML.format(rest_port=PATRONI_PORT, ip=lab.node_ip("node1"), raft_dir="/var/lib/postgresql/raft",
                                      pg_port=config.PG_PORT, pgdata=config.PGDATA, bin_dir=config.PG_BIN,
                                      socket=config.PG_SOCKET_DIR))
    shutil.chown(yml, "postgres", "postgres")
    return Background(lab, "node1", ["patroni", "/var/lib/postgresql/patroni.yml"], work / "patroni.log",
                      ready="no action. I am (node1), the leader with the lock", user="postgres", timeout=120)


def wait_ready(lab: Lab, port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        result = load(lab, port, path, checkers=1, seconds=0.2, rate=0)
        if result["statuses"].get("200"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} {path}: no 200 within 30s ({result['statuses']})")
        time.sleep(0.5)


def measure(lab: Lab, name: str, service: Background, port: int, path: str, nice: int,
            args: argparse.Namespace) -> dict:
    wait_ready(lab, port, path)
    service.renice(nice)
    load(lab, port, path, args.checkers, 1.0, 0, nice)                  # warm-up
    cpu = service.cpu_seconds()
    saturated = load(lab, port, path, args.checkers, args.seconds, 0, nice)
    saturated["cpu_ms_per_check"] = 1000 * (service.cpu_seconds() - cpu) / saturated["checks"]
    paced = load(lab, port, path, args.checkers, args.seconds, args.rate, nice)
    print(f"nice {nice}: {name}: saturated {saturated['per_s']:.0f}/s p99 {saturated['p99_ms']:.1f} ms; "
          f"paced {paced['per_s']:.0f}/s p99 {paced['p99_ms']:.1f} ms", flush=True)
    return {"name": name, "saturated": saturated, "paced": paced}


def run_all(lab: Lab, work: Path, nice: int, args: argparse.Namespace) -> tuple[list[dict], str]:
    """Measure every approach at `nice`; (rows, what happened to Patroni)."""
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for name, start, port, path in (("pha health", start_pha, PHA_PORT, "/primary"),
                                    ("process per check (xinetd-style + psql)", start_pgsqlchk,
                                     PGSQLCHK_PORT, "/")):
        service = start(lab, work)
        try:
            rows.append(measure(lab, name, service, port, path, nice, args))
        finally:
            service.stop()
    if args.no_patroni:
        note = "not measured (--no-patroni)."
    elif shutil.which("patroni") is None:
        note = ("not measured: `patroni` is not installed (`apt-get install patroni "
                "python3-pysyncobj` installs Debian's 3.0.2 with the raft DCS).")
    else:
        version = subprocess.run(["patroni", "--version"], capture_output=True, text=True).stdout.strip()
        service = start_patroni(lab, work)
        try:
            rows.append(measure(lab, f"Patroni REST API ({version})", service, PATRONI_PORT, "/primary",
                                nice, args))
        finally:
            service.stop()          # Patroni stops PostgreSQL as it exits: start it again
            postgres.start(lab, "node1")
        note = (f"{version} from Debian, raft DCS (python3-pysyncobj), managing node1's PostgreSQL "
                "(it takes the running cluster over), REST API GET /primary.")
    for row in rows:
        row["loadavg"] = f"{loadavg} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    return rows, note


def table(rows: list[dict], nice: int, args: argparse.Namespace) -> list[str]:
    base = next(r for r in rows if r["name"].startswith("process per check"))
    pha = next(r for r in rows if r["name"] == "pha health")
    lines = [f"## nice {nice}", "", f"Load average (1, 5, 15 min) before and after: {rows[0]['loadavg']}.", "",
             "| approach | saturated checks/s | p50 ms | p99 ms | CPU ms/check | paced checks/s | p50 ms | p99 ms "
             "| checks/s vs process per check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        s, p = row["saturated"], row["paced"]
        ratio = s["per_s"] / base["saturated"]["per_s"]
        lines.append(f"| {row['name']} | {s['per_s']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                     f"{s['cpu_ms_per_check']:.2f} | {p['per_s']:.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} "
                     f"| {ratio:.1f}x |")
    ratio = pha["saturated"]["per_s"] / base["saturated"]["per_s"]
    paced_p99, saturated = pha["paced"]["p99_ms"], pha["saturated"]
    lines += ["", "Answers (saturated; -1 is a check that failed: connection error or no answer in 10 s): "
              + "; ".join(f"{r['name']} {r['saturated']['statuses']}" for r in rows) + ".", "",
              f"Goals: at least 10x the checks/s of process per check: **{ratio:.0f}x** "
              f"({'met' if ratio >= 10 else 'NOT met'}); p99 under 10 ms at {args.checkers} checkers: "
              f"**{paced_p99:.1f} ms** paced ({'met' if paced_p99 < 10 else 'NOT met'}), "
              f"{saturated['p99_ms']:.1f} ms saturated (mostly queueing there: {args.checkers} checkers / "
              f"{saturated['per_s']:.0f} checks/s = {1000 * args.checkers / saturated['per_s']:.1f} ms on average).",
              ""]
    return lines


def report(runs: list[tuple[int, list[dict]]], patroni_note: str, args: argparse.Namespace) -> str:
    lines = ["# pha health: checks per second and latency", "",
             f"`bench/health.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
             f"{os.cpu_count()} CPUs shared by the load generator, the services and whatever else runs on the "
             "machine). A one-node namespace lab: the services run in node1 (PostgreSQL 15 primary), the "
             "checkers in the lab's client namespace, one new TCP connection per check (as HAProxy "
             "checks), GET /primary (`/` for pgsqlchk).", "",
             f"- saturated: {args.checkers} checkers, each checking again as soon as answered, {args.seconds:g} s;",
             f"- paced: {args.checkers} checkers, each checking {args.rate:g} times a second, spread over the "
             f"period as HAProxy spreads its checks ({args.checkers * args.rate:g} checks/s offered), "
             f"{args.seconds:g} s.", "",
             "The checks/s of pha health are bounded by the load generator (Python, one connection per "
             "check); the service's own cost is the CPU ms/check column (its process tree; for the process "
             "per check that includes bash and psql; PostgreSQL's work is counted for none). Each nice "
             "value is a full run with the services and the load generator at that priority: on a busy "
             "shared machine the latencies at nice 0 are mostly time spent waiting for a CPU.", ""]
    for nice, rows in runs:
        lines += table(rows, nice, args)
    lines += [f"Patroni: {patroni_note}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="checks/s of one checker when paced")
    parser.add_argument("--no-patroni", action="store_true")
    parser.add_argument("--nice", type=int, action="append",
                        help="run everything at this nice value (repeatable; default 0)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    lab = Lab()
    work = Path(lab.state_dir.parent / f"{lab.state_dir.name}-bench-health")
    lab.up(nodes=1, pg=True, pg_running=True, force=True)
    work.mkdir(exist_ok=True)
    runs, note = [], ""
    try:
        for nice in args.nice or [0]:
            rows, note = run_all(lab, work, nice, args)
            runs.append((nice, rows))
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    text = report(runs, note, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
