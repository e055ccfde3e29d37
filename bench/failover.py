#!/usr/bin/env python3
"""Failover benchmark: ocf:pha:pgsql against the stock ocf:heartbeat:pgsql, in the namespace lab.

usage: PHA_LAB_INSTANCE=N bench/failover.py [--runs 5] [--agents stock,pha]
           [--scenarios kill9-async,kill9-sync,cut,switchover,switchover-async,
                        corosync-kill,pacemaker-kill,cut-fenced,sigstop]
           [--healthy-timeout S] [--isolation S] [--switch-timeout S] [--output FILE]

Every run starts from a fresh lab (`Lab.up`, PostgreSQL stopped), builds the
cluster with pha.cluster (same configuration for both agents but for the
agent's own monitor intervals, see pha.cluster.AGENT_DEFAULTS), and measures
the bring-up: from the CIB push to 1 Promoted + 2 streaming standbys + VIPs.
Then a writer inserts every 100 ms through the writer VIP from the client
namespace (tests/lab/writer.py) and, 2 s plus a random 0-4 s later (so the
fault falls anywhere in the agents' monitor cycles), the scenario strikes:

- kill9-async, kill9-sync: `kill -9` of the primary's postmaster;
- cut: the primary's node is unplugged from the lab switch; it is plugged
  back once writes have resumed and the isolated node has stopped its
  PostgreSQL and removed the writer VIP (or after --isolation seconds);
- switchover, switchover-async: `crm_resource --move --promoted` to a
  streaming standby (the sync one in sync mode), then `--clear` once it is
  promoted (or after --switch-timeout seconds);
- corosync-kill, pacemaker-kill, cut-fenced, sigstop: faults of the primary's
  node on a lab with its BMCs and fence_ipmilan devices (fencing on, for both
  agents): see bench/faults.py. Their report adds when the node was powered
  off by its BMC ("fenced").

Per run: write unavailability (the longest gap between acknowledged inserts
that ends after the fault: for a kill or a cut, the last acknowledged insert
before it to the first after it), acknowledged inserts missing on the final primary,
whether two servers took turns acknowledging, and the time from the fault
until every node is healthy again (bounded by --healthy-timeout; an old
primary whose start has been refused for 10 s ends the wait: the stock
agent's PGSQL.lock and pha's fork guard both need an operator). Once per
agent, after bring-up, the median wall and CPU time of one `monitor` action
on the primary and on a standby: the agent is run by hand inside the node
with the environment Pacemaker gave its last monitor (read from /proc).
Results go to --output (default bench/results/failover.md), rewritten after
every run so an interrupted bench keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "lab")]

from pha import cluster, crmstatus  # noqa: E402
from pha.lab import Lab, LabError, config  # noqa: E402
from pha.lab.core import LabCommandError  # noqa: E402

import faults  # noqa: E402
import report  # noqa: E402
import pgsql_cluster as pc  # noqa: E402
from writer import Writer  # noqa: E402

AGENTS = {"stock": cluster.STOCK_AGENT, "pha": cluster.PHA_AGENT}
AGENT_PATHS = {"stock": "/usr/lib/ocf/resource.d/heartbeat/pgsql", "pha": "/usr/lib/ocf/resource.d/pha/pgsql"}
SCENARIOS = {"kill9-async": "async", "kill9-sync": "sync", "cut": "sync", "switchover": "sync",
             "switchover-async": "async", **{name: "sync" for name in faults.ACTIONS}}
FENCED = set(faults.ACTIONS)
STEADY_SECONDS = 2.0
# The fault comes a random 0-4 s later: healthy is seen right after a primary monitor wrote
# its attributes, so a fixed delay would strike at the same point of every monitor cycle.
FAULT_JITTER_SECONDS = 4.0
RESUME_TIMEOUT = 90.0
MONITOR_SAMPLES = 20
REFUSED_SECONDS = 10.0
TIMELINE_STEP = 0.5
SETTLE_SECONDS = 5.0

# Runs inside a node: grab the environment Pacemaker gave a recurring monitor
# of the agent in `role`, then time `samples` monitor actions run with it.
MEASURE_MONITOR = r"""
import json, os, resource, statistics, subprocess, sys, time
path, role, samples = json.loads(sys.stdin.read())
TICK = os.sysconf("SC_CLK_TCK")
KEEP = ("OCF_", "HA_", "PCMK_")
def pacemaker_env():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if path.encode() not in argv or b"monitor" not in argv:
                    continue
                pairs = [e.decode().split("=", 1) for e in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in e]
            except OSError:
                continue
            env = {k: v for k, v in pairs if k.startswith(KEEP) or k in ("PATH", "LANG", "LC_ALL", "HOME")}
            if env.get("OCF_RESKEY_CRM_meta_role") == role and env.get("OCF_RESKEY_CRM_meta_interval", "0") != "0":
                return env
        time.sleep(0.002)
    raise SystemExit(f"no {role} monitor of {path} seen within 30s")
def worker_cpu():
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != os.getpid() and b"pha.worker import serve" in open(f"/proc/{pid}/cmdline", "rb").read():
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += sum(int(f) for f in fields[11:15]) / TICK
        except OSError:
            pass
    return total
env = pacemaker_env()
walls, cpus, codes = [], [], []
for _ in range(samples):
    before, wbefore = resource.getrusage(resource.RUSAGE_CHILDREN), worker_cpu()
    t0 = time.perf_counter()
    codes.append(subprocess.run([path, "monitor"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode)
    walls.append(time.perf_counter() - t0)
    after, wafter = resource.getrusage(resource.RUSAGE_CHILDREN), worker_cpu()
    cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime + wafter - wbefore)
    time.sleep(0.3)
print(json.dumps({"wall_ms": statistics.median(walls) * 1000, "cpu_ms": statistics.median(cpus) * 1000,
                  "codes": sorted(set(codes))}))
"""

# Runs inside the isolated node: is its PostgreSQL running, and does it hold the writer VIP?
ISOLATED_STATE = r"""
import json, os, sys
from pha import net
pidfile, vip = sys.argv[1], sys.argv[2]
try:
    pid = int(open(pidfile).readline())
    os.kill(pid, 0)
    running = True
except (OSError, ValueError):
    running = False
print(json.dumps({"postgres": running, "vip": net.has_address("eth0", vip)}))
"""


@dataclass
class RunResult:
    agent: str
    scenario: str
    run: int
    lab_up: Optional[float] = None
    pcs: Optional[float] = None
    bringup: Optional[float] = None
    milestones: dict[str, float] = field(default_factory=dict)
    unavailability: Optional[float] = None
    acknowledged: Optional[int] = None
    lost: Optional[int] = None
    unconfirmed: Optional[int] = None
    interleaved: Optional[bool] = None
    writers: str = ""
    healthy_after: Optional[float] = None
    fenced_after: Optional[float] = None
    new_primary_after: Optional[float] = None   # the fault -> the first write the new primary acknowledged
    old_primary: str = ""
    new_primary: str = ""
    old_primary_outcome: str = ""
    timeline: str = ""
    writer_log: str = ""
    notes: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Bench:
    runs: int
    healthy_timeout: float
    isolation: float
    switch_timeout: float
    output: Path
    token_ms: int = config.DEFAULT_TOKEN_MS
    pg_version: str = ""                  # the lab's, seen at the first run
    results: list[RunResult] = field(default_factory=list)
    monitor: dict[str, dict[str, dict]] = field(default_factory=dict)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))
    revision: str = field(default_factory=lambda: git_revision())


def git_revision() -> str:
    """The commit the bench runs (with "+changes" when the work tree differs from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# --- scenario pieces -------------------------------------------------------------------
def postmaster_pid(lab: Lab, node: str) -> int:
    return int(lab.node_path(node, f"{config.PGDATA}/postmaster.pid").read_text().splitlines()[0])


def node_outcome(lab: Lab, node: str, observers: list[str]) -> str:
    """How `node` ended: Promoted, streaming, another Unpromoted state, refused (exit reason) or stopped."""
    try:
        view = pc.status(lab, observers)
    except LabError as exc:
        return f"unknown ({exc})"
    if node in view.promoted_nodes(pc.CLONE):
        return "Promoted"
    if node in view.unpromoted_nodes(pc.CLONE):
        return f"Unpromoted {view.attribute(node, pc.DATA_STATUS) or ''}".strip()
    refusal = start_refusal(view, node)
    return f"refused: {refusal}" if refusal else "stopped"


def start_refusal(view: crmstatus.ClusterStatus, node: str) -> str:
    """The exit reason of a failed start of the pgsql resource on `node` ("" if none)."""
    reasons = [f.exit_reason or f.rc_text for f in view.failures
               if f.node == node and f.op_key.startswith(pc.RESOURCE + "_") and f.task == "start"]
    return reasons[-1] if reasons else ""


def wait_recovered(lab: Lab, old: str, rep_mode: str, timeout: float) -> str:
    """Wait until the cluster is healthy ("healthy"), or the old primary has stayed refused
    (a failed start, not running) for REFUSED_SECONDS ("refused": it needs an operator)."""
    refused_since: list[float] = []

    def verdict() -> str:
        view = pc.status(lab)
        if not pc.health_problems(view, lab.nodes, rep_mode):
            return "healthy"
        if old in view.resource_nodes(pc.CLONE) or not start_refusal(view, old):
            refused_since.clear()
            return ""
        refused_since[:] = refused_since or [time.monotonic()]
        return "refused" if time.monotonic() - refused_since[0] >= REFUSED_SECONDS else ""
    return pc.wait_for("every node healthy", verdict, timeout,
                       explain=lambda: "; ".join(pc.health_problems(pc.status(lab), lab.nodes, rep_mode)))[0]


def wait_resumed(writer: Writer, result: RunResult, fault_at: float) -> None:
    """Wait for an insert sent after the fault to be acknowledged (one in flight at the
    fault may still be acknowledged by the old primary: that is not a resumption)."""
    deadline = time.monotonic() + RESUME_TIMEOUT
    while not any(a.sent > fault_at for a in writer.acks()):
        if time.monotonic() > deadline:
            result.notes.append(f"no write acknowledged within {RESUME_TIMEOUT:.0f}s of the fault")
            return
        time.sleep(0.1)


def wait_new_primary(lab: Lab, old: str, observers: list[str], timeout: float) -> Optional[str]:
    try:
        return pc.wait_for("a new primary", lambda: next(
            (n for n in pc.status(lab, observers).promoted_nodes(pc.CLONE) if n != old), None), timeout)[0]
    except LabError:
        return None


def kill9(lab: Lab, bench: Bench, writer: Writer, result: RunResult) -> float:
    old = result.old_primary
    pid = postmaster_pid(lab, old)
    fault_at = writer.mark()
    lab.exec(old, ["kill", "-9", str(pid)])
    wait_resumed(writer, result, fault_at)
    return fault_at


def cut(lab: Lab, bench: Bench, writer: Writer, result: RunResult) -> float:
    old = result.old_primary
    states: list[tuple[float, dict]] = []
    done = threading.Event()
    fault_at = writer.mark()
    lab.cut(old)
    watcher = threading.Thread(target=watch_isolated, args=(lab, old, states, done), daemon=True)
    watcher.start()
    wait_resumed(writer, result, fault_at)

    def first_gone(key: str) -> Optional[float]:
        return next((t - fault_at for t, state in states if state.get(key) is False), None)

    deadline = time.monotonic() + bench.isolation
    while time.monotonic() < deadline and (first_gone("postgres") is None or first_gone("vip") is None):
        time.sleep(0.3)
    done.set()
    watcher.join(timeout=15)
    for key, what in (("postgres", "isolated PostgreSQL stopped"), ("vip", "isolated writer VIP removed")):
        seconds = first_gone(key)
        result.notes.append(f"{what} after {seconds:.1f}s" if seconds is not None
                            else f"{what}: not within {time.time() - fault_at:.0f}s")
    writer.mark("heal")
    lab.heal(old)
    return fault_at


def watch_isolated(lab: Lab, node: str, states: list, done: threading.Event) -> None:
    """Poll, from inside `node`, whether its PostgreSQL runs and it holds the writer VIP."""
    argv = [sys.executable, "-c", ISOLATED_STATE, f"{config.PGDATA}/postmaster.pid", lab.vip(0)]
    while not done.is_set():
        try:
            states.append((time.time(), json.loads(lab.exec(node, argv, timeout=10).stdout)))
        except (LabError, OSError, ValueError, subprocess.SubprocessError):
            pass  # a busy node: ask again
        time.sleep(0.3)


def switchover(lab: Lab, bench: Bench, writer: Writer, result: RunResult) -> float:
    old = result.old_primary
    view = pc.status(lab)
    standbys = [n for n in view.unpromoted_nodes(pc.CLONE)
                if (view.attribute(n, pc.DATA_STATUS) or "").startswith("STREAMING")]
    target = next((n for n in standbys if view.attribute(n, pc.DATA_STATUS) == "STREAMING|SYNC"), standbys[0])
    fault_at = writer.mark()
    lab.exec(lab.nodes[0], ["crm_resource", f"--resource={pc.CLONE}", "--move", "--promoted",
                            f"--node={target}"])
    promoted = wait_new_primary(lab, old, lab.nodes, bench.switch_timeout)
    if promoted is None:
        result.notes.append(f"--move --promoted to {target}: no new primary within {bench.switch_timeout:.0f}s")
    else:
        wait_resumed(writer, result, fault_at)
    lab.exec(lab.nodes[0], ["crm_resource", f"--resource={pc.CLONE}", "--clear"])
    return fault_at


SCENARIO_ACTIONS: dict[str, Callable[[Lab, Bench, Writer, RunResult], float]] = {
    "kill9-async": kill9, "kill9-sync": kill9, "cut": cut, "switchover": switchover,
    "switchover-async": switchover,
    **{name: (lambda lab, bench, writer, result, act=act: act(lab, writer, result))
       for name, act in faults.ACTIONS.items()}}


class Timeline:
    """Where the clone is Promoted and the writer VIP runs, as seen every TIMELINE_STEP s
    by the quorate partition, while a scenario runs: its changes only."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.changes: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            try:
                view = pc.status(self.lab)
                state = (f"P{view.promoted_nodes(pc.CLONE)} W{view.resource_nodes(pc.WRITER_VIP)}"
                         .replace("'", ""))
            except LabError:
                state = "no quorate view"
            if not self.changes or self.changes[-1][1] != state:
                self.changes.append((time.time(), state))
            self.done.wait(TIMELINE_STEP)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)

    def render(self, origin: float) -> str:
        return ", ".join(f"{t - origin:+.1f}s {state}" for t, state in self.changes)


# --- one run ---------------------------------------------------------------------------
def measure_monitor(lab: Lab, agent: str, primary: str) -> dict[str, dict]:
    """Monitor cost on the primary and on a standby (the first whose monitor shows up)."""
    measured = {}
    standbys = [n for n in lab.nodes if n != primary]
    for role, nodes in (("Promoted", [primary]), ("Unpromoted", standbys)):
        for node in nodes:
            out = lab.python(node, MEASURE_MONITOR, input=json.dumps([AGENT_PATHS[agent], role, MONITOR_SAMPLES]),
                             timeout=300, check=False)
            if out.returncode == 0:
                measured[role] = {**json.loads(out.stdout), "node": node}
                break
            log(f"monitor cost on {node}: {out.stderr.strip()[-300:]}")
    return measured


def failures_seen(lab: Lab) -> list[str]:
    """The failed actions a node of the lab reports (for a run that went wrong)."""
    try:
        view = pc.status(lab)
    except (LabError, OSError):
        return []
    return [f"{f.node} {f.task} failed: {f.exit_reason or f.rc_text}" for f in view.failures][:5]


def describe(exc: Exception) -> str:
    """A one-line account of what went wrong (a failed lab command: where and its error output)."""
    if isinstance(exc, LabCommandError):
        argv = list(exc.cmd)
        command = argv[argv.index("--") + 1:] if "--" in argv else argv
        text = (f"{exc.where}: {' '.join(command)[:80]} exited {exc.returncode}: "
                f"{(exc.stderr or exc.stdout or '').strip()[-300:]}")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def one_run(bench: Bench, agent: str, scenario: str, run: int) -> RunResult:
    result = RunResult(agent, scenario, run)
    lab = Lab()
    writer: Optional[Writer] = None
    timeline: Optional[Timeline] = None
    try:
        fenced = scenario in FENCED
        result.lab_up = round(max(lab.up(nodes=3, pg=True, force=True, fence=fenced,
                                         token_ms=bench.token_ms).values()), 2)
        bench.pg_version = lab.pg_version
        timings = pc.create_pgsql_cluster(lab, rep_mode=SCENARIOS[scenario], agent=AGENTS[agent],
                                          fencing=fenced)
        result.pcs, result.bringup = timings.pop("pcs"), timings.pop("healthy")
        result.milestones = timings
        first_primary = pc.primary_of(lab)
        if len(bench.monitor.get(agent, {})) < 2:
            bench.monitor[agent] = {**bench.monitor.get(agent, {}),
                                    **measure_monitor(lab, agent, first_primary)}
        writer = Writer(lab, lab.vip(0)).start()
        result.writer_log = str(writer.log_path)
        time.sleep(STEADY_SECONDS + random.uniform(0, FAULT_JITTER_SECONDS))
        result.old_primary = pc.primary_of(lab)
        if result.old_primary != first_primary:
            result.notes.append(f"the primary moved by itself after bring-up: {first_primary} → {result.old_primary}")
        timeline = Timeline(lab)
        fault_at = SCENARIO_ACTIONS[scenario](lab, bench, writer, result)
        observers = [n for n in lab.nodes if n != result.old_primary] + [result.old_primary]
        try:
            if wait_recovered(lab, result.old_primary, SCENARIOS[scenario], bench.healthy_timeout) == "healthy":
                result.healthy_after = round(time.time() - fault_at, 2)
                time.sleep(SETTLE_SECONDS)  # the timeline shows whether the primary stays put
            else:
                result.notes.append(f"old primary refused {time.time() - fault_at:.1f}s after the fault")
        except LabError as exc:
            result.notes.append(f"not healthy within {bench.healthy_timeout:.0f}s: {exc}")
        timeline.stop()
        result.timeline = timeline.render(fault_at)
        result.new_primary = pc.wait_for("one primary", lambda: pc.primary_of(lab, observers), 30)[0]
        result.old_primary_outcome = node_outcome(lab, result.old_primary, observers)
        writer.stop()
        checked = pc.wait_for(f"the writer's rows on {result.new_primary}",
                              lambda: writer.check(result.new_primary), 30)[0]
        result.unavailability = None if checked.unavailability is None else round(checked.unavailability, 2)
        result.acknowledged, result.lost = checked.acknowledged, len(checked.lost)
        result.unconfirmed, result.interleaved = len(checked.unconfirmed), checked.interleaved
        result.writers = " -> ".join(checked.node_runs)
        first = next((a.t for a in writer.acks() if a.node == result.new_primary and a.t > fault_at), None)
        result.new_primary_after = None if first is None else round(first - fault_at, 2)
        if checked.lost:
            result.notes.append(f"lost ids {checked.lost[:20]}")
    except Exception as exc:  # one broken run must not end the bench
        result.error = describe(exc)
        traceback.print_exc()
        result.notes += failures_seen(lab)
    finally:
        if timeline is not None:
            timeline.stop()
        if writer is not None:
            writer.stop()
        try:
            lab.down()
        except Exception as exc:
            result.notes.append(f"lab down failed: {exc}")
    return result


def pha_agent_missing() -> Optional[str]:
    """Why ocf:pha:pgsql cannot run in the lab yet (None when it can)."""
    from pha import install
    if "pgsql" not in install.AGENTS:
        return "pha.install.AGENTS has no pgsql: the lab does not install ocf:pha:pgsql"
    try:
        __import__("pha.agents.pgsql")
    except ImportError as exc:
        return f"pha.agents.pgsql does not import: {exc}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per agent and scenario")
    parser.add_argument("--agents", default="stock,pha", help="comma-separated: " + ", ".join(AGENTS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--healthy-timeout", type=float, default=90.0)
    parser.add_argument("--isolation", type=float, default=60.0,
                        help="cut: longest wait for the isolated node to stop before healing it")
    parser.add_argument("--switch-timeout", type=float, default=30.0)
    parser.add_argument("--token", type=int, default=config.DEFAULT_TOKEN_MS,
                        help="corosync token timeout of the lab (ms)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "failover.md")
    opts = parser.parse_args()
    agents = [a for a in opts.agents.split(",") if a]
    scenarios = [s for s in opts.scenarios.split(",") if s]
    unknown = [a for a in agents if a not in AGENTS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown or opts.runs < 1:
        parser.error(f"unknown agent or scenario {unknown}" if unknown else "--runs must be at least 1")
    if "pha" in agents and (why := pha_agent_missing()):
        log(f"skipping pha: {why}")
        agents.remove("pha")
    bench = Bench(opts.runs, opts.healthy_timeout, opts.isolation, opts.switch_timeout, opts.output,
                  token_ms=opts.token)
    for scenario in scenarios:
        for run in range(1, opts.runs + 1):
            for agent in agents:
                log(f"{agent} {scenario} run {run}/{opts.runs}")
                result = one_run(bench, agent, scenario, run)
                bench.results.append(result)
                log(json.dumps(asdict(result)))
                opts.output.parent.mkdir(parents=True, exist_ok=True)
                opts.output.write_text(report.render(bench, agents, scenarios, AGENTS, FENCED, (STEADY_SECONDS, FAULT_JITTER_SECONDS)))
    print(report.render(bench, agents, scenarios, AGENTS, FENCED, (STEADY_SECONDS, FAULT_JITTER_SECONDS)))
    return 0 if not any(r.error for r in bench.results) else 1


if __name__ == "__main__":
    sys.exit(main())
