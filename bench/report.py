"""bench/failover.py's report: the summary (medians, max) and every run, as Markdown."""
from __future__ import annotations

import statistics
from dataclasses import fields
from typing import Any, Optional

from pha import cluster

# The anchors (stock pgsql / PAF 2.3 / pha goal), for the report.
ANCHORS = {
    "bring-up": ("20 s", "3.6 s", "≤ 3 s"),
    "kill9-async": ("23 s", "15 s", "≤ 3 s"),
    "kill9-sync": ("3.9 s", "—", "≤ 3 s"),
    "cut": ("24 s", "10 s", "≤ 9 s"),
    "switchover": ("old primary stays down; 18 s", "2.9 s", "≤ 2 s"),
    "switchover-async": ("impossible (--move --promoted does nothing)", "2.9 s", "≤ 2 s"),
    "corosync-kill": ("—", "—", "≤ 15 s (issue 10: 63-72 s)"),
    "pacemaker-kill": ("—", "—", "≤ 15 s (issue 10: 66 s)"),
    "cut-fenced": ("—", "—", "≤ 12 s with fencing (issue 10)"),
    "sigstop": ("—", "—", "≤ 20 s (issue 10: 42 s)"),
    "monitor-primary": ("452 ms", "287 ms", "≤ 100 ms"),
    "monitor-standby": ("126 ms", "175 ms", "≤ 100 ms"),
}


def _seconds(values: list[Optional[float]], never: str = "never") -> str:
    """"median s (max s)" of the measured values, plus how many runs never got there."""
    done = [v for v in values if v is not None]
    text = f"{statistics.median(done):.1f} s (max {max(done):.1f})" if done else "—"
    missing = len(values) - len(done)
    return text + (f", {missing}/{len(values)} {never}" if missing and values else "")


def _cell(runs: list[Any], attribute: str, never: str = "never") -> str:
    """A scenario's measure over the runs where the primary changed; the others are counted."""
    moved = [r for r in runs if not r.error and r.new_primary and r.new_primary != r.old_primary]
    text = _seconds([getattr(r, attribute) for r in moved], never)
    failed = sum(1 for r in runs if r.error)
    stayed = sum(1 for r in runs if not r.error and r.new_primary == r.old_primary)
    extra = ([f"primary unchanged in {stayed}/{len(runs)}"] if stayed else []) + \
        ([f"{failed}/{len(runs)} runs failed"] if failed else [])
    return ", ".join([text, *extra]) if moved or not extra else ", ".join(extra)


def render(bench: Any, agents: list[str], scenarios: list[str], agent_ids: dict[str, str], fenced: set[str],
           fault_delay: tuple[float, float]) -> str:
    """The report of `bench` (failover.Bench); agent_ids: agent -> OCF agent, fenced: the
    scenarios run with fencing, fault_delay: (steady seconds, jitter seconds)."""
    steady, jitter = fault_delay
    by = {(a, s): [r for r in bench.results if r.agent == a and r.scenario == s]
          for a in agents for s in scenarios}
    failed = [r for r in bench.results if r.error]
    stock, pha = cluster.AGENT_DEFAULTS[cluster.STOCK_AGENT], cluster.AGENT_DEFAULTS[cluster.PHA_AGENT]
    defaults = {f.name: f.default for f in fields(cluster.ClusterSpec)}
    lines = [
        f"# Failover: {' against '.join(agent_ids[a] for a in agents)} ({bench.started}, "
        f"up to {bench.runs} runs per agent and scenario, pha at {bench.revision})", "",
        f"Every run starts from a fresh 3-node namespace lab (corosync token {bench.token_ms} ms, "
        f"PostgreSQL {bench.pg_version or '?'}), "
        "built with `pha.cluster` and a writer inserting every 100 ms through the writer VIP from the "
        "client namespace. Monitor intervals Promoted / Unpromoted: stock "
        f"{stock['promoted_monitor']} s / {stock['unpromoted_monitor']} s (its wiki configuration), pha "
        f"{pha['promoted_monitor']} s / {pha['unpromoted_monitor']} s; migration-threshold "
        f"{defaults['migration_threshold']}, failure-timeout {defaults['failure_timeout']} s, no fencing "
        f"but in {', '.join(sorted(fenced))} (fence_ipmilan against the lab's BMCs, reboot), "
        "no-quorum-policy=stop; notify=true for the stock agent only (pha's needs none). The fault "
        f"comes {steady:g} s plus a random 0-{jitter:g} s after the writer starts, "
        "anywhere in the monitor cycles.", "",
        "Write unavailability: the longest gap between two acknowledged inserts that ends after the fault "
        "(for a kill or a cut, the last acknowledged insert before it to the first after it). "
        "Healthy again: from the fault until 1 Promoted, every other node Unpromoted and streaming "
        f"(one STREAMING|SYNC in sync mode) and the VIPs up, within {bench.healthy_timeout:.0f} s "
        "of the end of the scenario. Lost: acknowledged inserts missing on the final primary.", "",
        "## Summary (median, max in parentheses)", "",
        "| scenario | " + " | ".join(f"{agent_ids[a]}" for a in agents) + " | anchor: stock / PAF 2.3 / pha goal |",
        "|---|" + "---|" * len(agents) + "---|",
    ]
    every = {a: [r for r in bench.results if r.agent == a and r.bringup is not None] for a in agents}
    lines.append("| resource created → 1 promoted + 2 streaming + VIPs | "
                 + " | ".join(_seconds([r.bringup for r in every[a]]) for a in agents)
                 + " | " + " / ".join(ANCHORS["bring-up"]) + " |")
    for s in scenarios:
        lines.append(f"| {s}: write unavailability | "
                     + " | ".join(_cell(by[a, s], "unavailability", "no write after") for a in agents)
                     + " | " + " / ".join(ANCHORS[s]) + " |")
        if s in fenced:
            lines.append(f"| {s}: first write on the new primary, from the fault | "
                         + " | ".join(_cell(by[a, s], "new_primary_after", "no write after") for a in agents)
                         + " | " + ANCHORS[s][2] + " |")
            lines.append(f"| {s}: primary's node powered off by its BMC | "
                         + " | ".join(_cell(by[a, s], "fenced_after", "not fenced") for a in agents) + " | |")
        lines.append(f"| {s}: healthy again | "
                     + " | ".join(_cell(by[a, s], "healthy_after") for a in agents) + " | |")
        lines.append(f"| {s}: lost acknowledged inserts | "
                     + " | ".join(_lost(by[a, s]) for a in agents) + " | 0 in sync mode |")
    for role in ("Promoted", "Unpromoted"):
        cells = []
        for a in agents:
            m = bench.monitor.get(a, {}).get(role)
            cells.append(f"{m['wall_ms']:.0f} ms wall, {m['cpu_ms']:.0f} ms CPU (exit codes "
                         f"{', '.join(map(str, m['codes']))})" if m else "—")
        where = "primary" if role == "Promoted" else "standby"
        lines.append(f"| monitor action on the {where}, median | " + " | ".join(cells)
                     + " | " + " / ".join(ANCHORS[f"monitor-{where}"]) + " (wall) |")
    lines += ["", "## Runs", "",
              "| agent | scenario | run | lab up s | pcs s | bring-up s (promoted / writer VIP / streaming) | "
              "unavailable s | acked | lost | writers | healthy after s | old primary → new | "
              "old primary ended | notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in bench.results:
        notes = " ".join("; ".join(r.notes + ([f"timeline: {r.timeline}"] if r.timeline else [])
                                   + ([f"ERROR {r.error}"] if r.error else [])).split()).replace("|", "/")
        lines.append(f"| {r.agent} | {r.scenario} | {r.run} | {_n(r.lab_up)} | {_n(r.pcs)} | {_n(r.bringup)} ({_steps(r.milestones)}) | "
                     f"{_n(r.unavailability)} | {_n(r.acknowledged)} | {_n(r.lost)} | {r.writers}"
                     f"{' INTERLEAVED' if r.interleaved else ''} | {_n(r.healthy_after)} | "
                     f"{r.old_primary} → {r.new_primary or '?'} | {r.old_primary_outcome.replace('|', '/')} | {notes} |")
    if failed:
        lines += ["", f"{len(failed)} run(s) failed; their rows above say why."]
    lines += ["", "Reproduce: `PHA_LAB_INSTANCE=N .venv/bin/python bench/failover.py --runs 5` (root; "
              "one fresh lab per run)."]
    return "\n".join(lines) + "\n"


def _lost(results: list[Any]) -> str:
    counted = [r.lost for r in results if r.lost is not None]
    return f"{sum(counted)} ({len(counted)} runs)" if counted else "—"


def _steps(milestones: dict[str, float]) -> str:
    return " / ".join(_n(milestones.get(name)) for name in ("promoted", "writer_vip", "streaming"))


def _n(value: object) -> str:
    return "—" if value is None else str(value)


