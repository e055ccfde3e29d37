#!/usr/bin/env python3
"""Benchmark: programming IPVS with pha.ipvs (netlink) vs pha4pgsql's one ipvsadm process per step.

usage: bench/ipvs_reconcile.py [--sizes 10,100,1000] [--repeat 3] [--output FILE]

IPVS needs a kernel that has it: on a host without, the script re-runs itself in a
user-mode-linux guest through tools/uml-run (both ways are measured in that same guest run).
For each size N it measures, on a fresh virtual service:
- from empty: pha reconciles N real servers into an empty service (read + plan + apply);
  pha4pgsql runs ipvsadm -A once and ipvsadm -a N times;
- one weight change: pha reconciles with one weight changed; pha4pgsql's monitor lists the
  service, reads each real server's weight with its own ipvsadm -L (N processes), then runs
  ipvsadm -e once (its grep/cut/awk processes are not even counted);
- no-op: the same with nothing to change;
- one weight change, write only: pha applies the one prepared change without reading first;
  pha4pgsql runs ipvsadm -e alone.
pha's netlink writes come from IPVSClient.writes; each ipvsadm -A/-a/-e is one write.
A markdown table goes to stdout and to --output (default bench/results/ipvs_reconcile.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIP = "10.82.0.100"
PORT = 5432


def real_server_address(i: int) -> str:
    return f"10.83.{i // 250}.{i % 250 + 1}"


def ipvsadm(*args: str) -> str:
    return subprocess.run(["ipvsadm", *args], check=True, capture_output=True, text=True).stdout


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def bench_pha(size: int, repeat: int) -> dict[str, tuple[float, int]]:
    """Median seconds and netlink writes of each scenario, through pha.ipvs."""
    from pha.ipvs import SET_REAL_SERVER, Change, IPVSClient, RealServer, ServiceState, VirtualService
    service = VirtualService(VIP, PORT, scheduler="wrr")
    servers = tuple(RealServer(real_server_address(i), PORT, 1) for i in range(size))
    desired = ServiceState(service, servers)
    changed = ServiceState(service, (RealServer(servers[0].address, PORT, 5),) + servers[1:])
    results: dict[str, list[tuple[float, int]]] = {"from empty": [], "one weight change": [], "no-op": [],
                                                   "write only": []}
    blind = [Change(SET_REAL_SERVER, service, RealServer(servers[0].address, PORT, 1))]
    with IPVSClient() as client:
        for _ in range(repeat):
            client.remove(service)
            for name, target in (("from empty", desired), ("one weight change", changed), ("no-op", changed)):
                before = client.writes
                seconds = timed(lambda: client.reconcile(target))
                results[name].append((seconds, client.writes - before))
            before = client.writes
            results["write only"].append((timed(lambda: client.apply(blind)), client.writes - before))
            assert client.read(service) is not None and len(client.read(service).real_servers) == size
        client.remove(service)
    return {name: (statistics.median(s for s, _ in runs), runs[0][1]) for name, runs in results.items()}


def bench_ipvsadm(size: int) -> dict[str, tuple[float, int, int]]:
    """Seconds, ipvsadm processes and netlink writes of each scenario, pha4pgsql's way."""
    target = f"{VIP}:{PORT}"
    results: dict[str, tuple[float, int, int]] = {}

    def from_empty() -> None:
        ipvsadm("-A", "-t", target, "-s", "wrr")
        for i in range(size):
            ipvsadm("-a", "-t", target, "-r", f"{real_server_address(i)}:{PORT}", "-g", "-w", "1")

    def monitor(change_first: bool) -> None:
        listing = ipvsadm("-L", "-n", "-t", target)                  # the current real servers
        for line in listing.splitlines():
            if line.strip().startswith("->") and "RemoteAddress" not in line:
                ipvsadm("-L", "-n", "-t", target)                    # one read per real server's weight
        if change_first:
            ipvsadm("-e", "-t", target, "-r", f"{real_server_address(0)}:{PORT}", "-g", "-w", "5")

    results["from empty"] = (timed(from_empty), 1 + size, 1 + size)
    results["one weight change"] = (timed(lambda: monitor(True)), 2 + size, 1)
    results["no-op"] = (timed(lambda: monitor(False)), 1 + size, 0)
    results["write only"] = (timed(lambda: ipvsadm("-e", "-t", target, "-r", f"{real_server_address(0)}:{PORT}",
                                                "-g", "-w", "1")), 1, 1)
    ipvsadm("-D", "-t", target)
    return results


def table(rows: list[tuple[int, str, tuple[float, int], tuple[float, int, int]]]) -> str:
    lines = ["| real servers | scenario | pha | pha netlink writes | pha4pgsql (ipvsadm) | ipvsadm processes"
             " | ipvsadm writes | speed-up |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for size, scenario, (pha_s, pha_w), (adm_s, adm_p, adm_w) in rows:
        lines.append(f"| {size} | {scenario} | {pha_s * 1000:.1f} ms | {pha_w} | {adm_s * 1000:.0f} ms | {adm_p}"
                     f" | {adm_w} | {adm_s / pha_s:.0f}x |")
    return "\n".join(lines)


def run(sizes: list[int], repeat: int, output: Path) -> None:
    from pha.ipvs import IPVSClient
    with IPVSClient() as client:
        for state in client.services():
            if state.service.address == VIP:
                client.remove(state.service)
    rows = []
    for size in sizes:
        pha = bench_pha(size, repeat)
        adm = bench_ipvsadm(size)
        for scenario in ("from empty", "one weight change", "no-op"):
            rows.append((size, scenario, pha[scenario], adm[scenario]))
        rows.append((size, "one weight change, write only", pha["write only"], adm["write only"]))
        print(f"measured {size} real servers", file=sys.stderr, flush=True)
    kernel = os.uname().release
    report = (f"# IPVS reconcile: pha.ipvs (netlink) vs pha4pgsql (one ipvsadm per step)\n\n"
              f"Kernel {kernel} (user-mode-linux guest: 1 vCPU, every process start is ptrace-slow), "
              f"{time.strftime('%Y-%m-%d %H:%M')}; pha: median of {repeat} runs, in-process "
              f"(read + plan + apply); ipvsadm: one run.\n\n{table(rows)}\n\n"
              "pha4pgsql's monitor also pipes every ipvsadm -L through grep/cut/awk; those processes "
              "are not counted here.\n")
    print(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="real-server counts (default 10,100,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="pha runs per scenario (median)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "ipvs_reconcile.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if os.environ.get("PHA_UML_GUEST") != "1" and not os.path.exists("/proc/net/ip_vs"):
        args.output.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, str(REPO / "tools" / "uml-run"), "--rw", str(args.output.resolve().parent), "--",
                sys.executable, str(Path(__file__).resolve()), "--sizes", args.sizes, "--repeat", str(args.repeat),
                "--output", str(args.output.resolve())]
        sys.exit(subprocess.run(argv, cwd=REPO).returncode)
    run(sizes, args.repeat, args.output)


if __name__ == "__main__":
    main()
