#!/usr/bin/env python3
"""Cost of one agent action: ocf:pha:vip against ocf:heartbeat:IPaddr2.

Runs in a lab node (brings a lab up with --no-pg if none is up), on the same
address, in the same run: `meta-data` and `monitor`, N times each, for
  - ocf:heartbeat:IPaddr2 (the baseline),
  - ocf:pha:vip through the agent worker (how Pacemaker runs it),
  - ocf:pha:vip in-process (PHA_WORKER=0: what the worker saves).
Reports the median wall and CPU time (the action's process and its
children, plus the worker's share: what it and the action it forked used)
and the ratios to IPaddr2, and writes bench/results/agent_cost.md.

usage: bench/agent_cost.py [--runs N] [--node node1]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pha.lab import Lab, LabError  # noqa: E402

# Runs inside the node: times each action in a fresh process, as Pacemaker does.
MEASURE = r"""
import json, os, resource, statistics, subprocess, sys, time
agents, runs, env = json.loads(sys.stdin.read())
TICK = os.sysconf("SC_CLK_TCK")
def worker_cpu():
    # CPU seconds of the agent worker and its reaped children (the actions it forked)
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != os.getpid() and b"import serve" in open(f"/proc/{pid}/cmdline", "rb").read():
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15]) / TICK
        except OSError:
            pass
    return total
def once(path, action, extra):
    before, wbefore = resource.getrusage(resource.RUSAGE_CHILDREN), worker_cpu()
    t0 = time.perf_counter()
    rc = subprocess.run([path, action], env={**os.environ, **env, **extra},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after, wafter = resource.getrusage(resource.RUSAGE_CHILDREN), worker_cpu()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + (wafter - wbefore)
    return rc, wall, cpu
result = {}
for label, path, extra in agents:
    subprocess.run([path, "start"], env={**os.environ, **env, **extra}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    once(path, "monitor", extra)  # warm-up: page cache, and the worker for pha
    time.sleep(1)
    for action in ("meta-data", "monitor"):
        samples = [once(path, action, extra) for _ in range(runs)]
        assert all(rc == 0 for rc, _, _ in samples), (label, action, samples[:3])
        result[f"{label} {action}"] = {
            "wall_ms": statistics.median(s[1] for s in samples) * 1000,
            "cpu_ms": statistics.median(s[2] for s in samples) * 1000,
        }
    subprocess.run([path, "stop"], env={**os.environ, **env, **extra},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps(result))
"""

AGENTS = [
    ("IPaddr2", "/usr/lib/ocf/resource.d/heartbeat/IPaddr2", {}),
    ("pha vip (worker)", "/usr/lib/ocf/resource.d/pha/vip", {}),
    ("pha vip (in-process)", "/usr/lib/ocf/resource.d/pha/vip", {"PHA_WORKER": "0"}),
]


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=30)
    args.add_argument("--node", default="node1")
    opts = args.parse_args()
    try:
        lab, owned = Lab.load(), False
    except LabError:
        lab, owned = Lab(), True
        lab.up(nodes=1, pg=False)
    try:
        env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "bench-vip",
               "OCF_RESKEY_ip": lab.vip(90), "OCF_RESKEY_cidr_netmask": "24",
               "OCF_RESKEY_nic": "eth0", "OCF_RESKEY_CRM_meta_interval": "10000",
               "OCF_RESKEY_arp_count": "1"}
        out = lab.python(opts.node, MEASURE, input=json.dumps([AGENTS, opts.runs, env]),
                         timeout=1800)
        result = json.loads(out.stdout)
    finally:
        if owned:
            lab.down()
    report = render(result, opts.runs)
    print(report)
    target = Path(__file__).parent / "results" / "agent_cost.md"
    target.parent.mkdir(exist_ok=True)
    target.write_text(report)
    return 0


def render(result: dict, runs: int) -> str:
    lines = [f"# Agent action cost ({time.strftime('%Y-%m-%d')}, median of {runs} runs)", "",
             "| agent action | wall ms | CPU ms | wall vs IPaddr2 | CPU vs IPaddr2 |",
             "|---|---|---|---|---|"]
    for key, m in result.items():
        label, action = key.rsplit(" ", 1)
        base = result[f"IPaddr2 {action}"]
        lines.append(f"| {key} | {m['wall_ms']:.1f} | {m['cpu_ms']:.1f} | "
                     f"{m['wall_ms'] / base['wall_ms']:.2f}x | {m['cpu_ms'] / max(base['cpu_ms'], 0.01):.2f}x |")
    lines += ["", "Reproduce: `.venv/bin/python bench/agent_cost.py` (as root; uses the lab, or a "
              "1-node lab of its own)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
