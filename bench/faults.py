"""The faults of the primary's node that need fencing, for bench/failover.py.

Each runs on a lab brought up with its BMCs and their `fence_ipmilan` devices
(`Lab.up(fence=True)`, the same for both agents), and returns the
moment of the fault; `result.fenced_after` is when the primary's node lost power
(its BMC killed its PID 1), seen from the host every 50 ms:

- corosync-kill: `kill -9` of corosync on the primary's node;
- pacemaker-kill: `kill -9` of every Pacemaker daemon there;
- cut-fenced: the node unplugged from the lab switch (its BMC stays reachable);
  plugged back once its BMC powered it on again;
- sigstop: SIGSTOP of every PostgreSQL process of the primary (a hung server),
  SIGCONT once writes resumed (no fencing expected: the stop ends it with SIGKILL).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from pha.lab import Lab, fence
from pha.lab.procs import start_time

import pgsql_cluster as pc

PACEMAKER_DAEMONS = ("pacemakerd", "pacemaker-based", "pacemaker-fenced", "pacemaker-execd", "pacemaker-attrd",
                     "pacemaker-schedulerd", "pacemaker-controld")
POWER_WATCH_SECONDS = 120.0
RESUME_TIMEOUT = 90.0
FENCE_SETTLE = 5.0       # after writes resumed elsewhere, how long to wait for a power-off still to come
POWER_ON_TIMEOUT = 90.0


def watch_power(lab: Lab, node: str, result: Any, fault_at: Callable[[], float],
                done: threading.Event) -> threading.Thread:
    """Set result.fenced_after when `node`'s PID 1 dies (its BMC cut the power), until `done`
    (the lab going down after the run is no fencing)."""
    record = dict(lab.info["nodes"][node])

    def watch() -> None:
        deadline = time.monotonic() + POWER_WATCH_SECONDS
        while time.monotonic() < deadline and not done.is_set():
            if start_time(record["pid"]) != record["pid_start"]:
                result.fenced_after = round(time.time() - fault_at(), 2)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _strike(lab: Lab, writer: Any, result: Any, inflict: Callable[[str], None]) -> float:
    """Inflict the fault on the primary's node; return once another node took a write (the old
    primary may go on acknowledging until it is stopped or fenced) and its power is settled."""
    old = result.old_primary
    moment: dict[str, float] = {}
    done = threading.Event()
    watcher = watch_power(lab, old, result, lambda: moment["at"], done)
    moment["at"] = writer.mark()
    inflict(old)
    deadline = time.monotonic() + RESUME_TIMEOUT
    while not any(a.node != old and a.t > moment["at"] for a in writer.acks()):
        if time.monotonic() > deadline:
            result.notes.append(f"no write acknowledged by another node within {RESUME_TIMEOUT:.0f}s")
            break
        time.sleep(0.1)
    watcher.join(timeout=FENCE_SETTLE)
    done.set()
    result.notes.append("not powered off" if result.fenced_after is None
                        else f"powered off by its BMC {result.fenced_after}s after the fault")
    return moment["at"]


def corosync_kill(lab: Lab, writer: Any, result: Any) -> float:
    def inflict(node: str) -> None:
        lab.exec(node, ["kill", "-9", lab.exec(node, ["pidof", "corosync"]).stdout.split()[0]])
    return _strike(lab, writer, result, inflict)


def pacemaker_kill(lab: Lab, writer: Any, result: Any) -> float:
    def inflict(node: str) -> None:
        lab.exec(node, ["kill", "-9", *lab.exec(node, ["pidof", *PACEMAKER_DAEMONS]).stdout.split()])
    return _strike(lab, writer, result, inflict)


def cut_fenced(lab: Lab, writer: Any, result: Any) -> float:
    at = _strike(lab, writer, result, lab.cut)
    old = result.old_primary
    pc.wait_for(f"{old} powered on by its BMC", lambda: fence.power_status(lab, old), timeout=POWER_ON_TIMEOUT)
    lab.heal(old)
    return at


def sigstop(lab: Lab, writer: Any, result: Any) -> float:
    def inflict(node: str) -> None:
        lab.exec(node, ["pkill", "-STOP", "-u", "postgres"])
    at = _strike(lab, writer, result, inflict)
    lab.exec(result.old_primary, ["pkill", "-CONT", "-u", "postgres"], check=False)
    return at


ACTIONS = {"corosync-kill": corosync_kill, "pacemaker-kill": pacemaker_kill, "cut-fenced": cut_fenced,
           "sigstop": sigstop}
