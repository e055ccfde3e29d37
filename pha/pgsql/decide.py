"""Pure decisions of the pgsql agent: no I/O here, so all of it is unit-tested.

- what each standby's attributes and promotion score are, from the primary's
  view of pg_stat_replication;
- which synchronous_standby_names the primary runs with, and when it may fall
  back to async;
- who wins an election when there is no primary;
- whether a node's history forked off the cluster's (REPL_INFO).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from pha.pgsql.names import (CANDIDATE_DATA, DISCONNECT, HS_ALONE, HS_ASYNC, HS_POTENTIAL, HS_SYNC,  # noqa: F401
                             LATEST, PRI, STOP, STREAMING_ASYNC, STREAMING_POTENTIAL, STREAMING_SYNC)

INFINITY = 1_000_000
PRIMARY_SCORE = 1000
CANDIDATE_SCORE = 100


# --- LSNs -------------------------------------------------------------------------
def parse_lsn(text: str) -> int:
    """'16/B374D848' -> int."""
    high, _, low = text.strip().partition("/")
    if not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_attr(value: int) -> str:
    """An LSN as a fixed-width attribute value (sorts as text)."""
    return f"{value:016X}"


# --- REPL_INFO: primary|timeline|switch-LSN -----------------------------------------
class ReplInfo(NamedTuple):
    primary: str
    timeline: int
    switch_lsn: int

    def render(self) -> str:
        return f"{self.primary}|{self.timeline}|{format_lsn(self.switch_lsn)}"

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["ReplInfo"]:
        if not text:
            return None
        parts = text.split("|")
        if len(parts) != 3:
            raise ValueError(f"REPL_INFO {text!r} is not primary|timeline|switch-LSN")
        return cls(parts[0], int(parts[1]), parse_lsn(parts[2]))


def parse_history(text: str) -> dict[int, int]:
    """A timeline history file: {parent timeline: LSN where it was left}."""
    switches = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            switches[int(fields[0])] = parse_lsn(fields[1])
    return switches


def forked(local_timeline: int, local_lsn: int, info: Optional[ReplInfo],
           history: Optional[dict[int, int]] = None) -> Optional[str]:
    """Why this node's WAL cannot follow the cluster's history, or None when it can.

    local_*: where this node's own WAL ends (timeline, LSN). info: REPL_INFO.
    history: the cluster's timeline history (parent -> switch LSN), when known.
    """
    if info is None or local_timeline >= info.timeline:
        return None
    switches = dict(history or {})
    switches.setdefault(info.timeline - 1, info.switch_lsn)
    left_at = switches.get(local_timeline)
    if left_at is None:
        return None  # not enough history to judge; PostgreSQL itself will refuse to stream
    if local_lsn > left_at:
        return (f"timeline {local_timeline} forked: WAL to {format_lsn(local_lsn)}, "
                f"past {format_lsn(left_at)} (timeline {local_timeline + 1})")
    return None


# --- the primary's view of its standbys -------------------------------------------------
class Standby(NamedTuple):
    """One row of pg_stat_replication."""

    name: str            # application_name
    state: str           # streaming, catchup, ...
    sync_state: str      # sync, potential, async, quorum
    replay_lag_bytes: int


class StandbyView(NamedTuple):
    status: str          # pgsql-status
    data_status: str     # pgsql-data-status
    score: int           # promotion score


def standby_views(nodes: list[str], me: str, rows: list[Standby], sync_mode: bool,
                  max_lag: int = 0) -> dict[str, StandbyView]:
    """Attributes and promotion score of every other node of node_list."""
    by_name = {r.name: r for r in rows}
    views = {}
    rank = 0
    for node in nodes:
        if node == me:
            continue
        row = by_name.get(node)
        if row is None or row.state != "streaming":
            data = DISCONNECT if row is None else f"{row.state.upper()}|{row.sync_state.upper()}"
            views[node] = StandbyView(HS_ALONE if row is None else HS_ASYNC, data, -INFINITY)
            continue
        kind = row.sync_state if row.sync_state in ("sync", "potential") else "async"
        status = {"sync": HS_SYNC, "potential": HS_POTENTIAL}.get(kind, HS_ASYNC)
        data = {"sync": STREAMING_SYNC, "potential": STREAMING_POTENTIAL}.get(kind, STREAMING_ASYNC)
        lagging = max_lag > 0 and row.replay_lag_bytes > max_lag
        if sync_mode:
            score = CANDIDATE_SCORE if kind == "sync" and not lagging else -INFINITY
        else:
            score = -INFINITY if lagging else CANDIDATE_SCORE - rank
            rank += 1
        views[node] = StandbyView(status, data, score)
    return views


def mark_stopped(views: dict[str, StandbyView], running: list[str]) -> dict[str, StandbyView]:
    """A disconnected node whose resource does not run (crm_mon) is STOP, not HS:alone."""
    return {node: view._replace(status=STOP) if view.status == HS_ALONE and node not in running else view
            for node, view in views.items()}


def sync_standby_names(nodes: list[str], me: str) -> str:
    """synchronous_standby_names naming every other node, the first connected one sync."""
    others = [n for n in nodes if n != me]
    return "FIRST 1 (" + ", ".join(f'"{n}"' for n in others) + ")" if others else ""


def may_fall_back_to_async(streaming_standbys: int, quorate: bool, lock_held: Optional[bool],
                           seconds_since_promotion: float, grace: float) -> bool:
    """Async only when no standby could acknowledge, and only while this
    primary is surely the cluster's (quorum, and the lock when there is one).
    Right after a promotion the standbys get `grace` seconds to reconnect."""
    return (streaming_standbys == 0 and quorate and lock_held is not False
            and seconds_since_promotion >= grace)


# --- election when there is no primary -----------------------------------------------------
class Candidate(NamedTuple):
    node: str
    timeline: int
    lsn: int
    data_status: Optional[str]


def elect(candidates: list[Candidate], nodes: list[str], sync_mode: bool) -> list[str]:
    """Nodes in promotion order: most advanced (timeline, LSN) first, ties by
    node_list order. In sync mode only nodes whose data was current (LATEST or
    the sync standby) may win, unless no node has any data status yet."""
    pool = candidates
    if sync_mode and any(c.data_status for c in candidates):
        pool = [c for c in candidates if c.data_status in CANDIDATE_DATA]
    order = {n: i for i, n in enumerate(nodes)}
    ranked = sorted(pool, key=lambda c: (-c.timeline, -c.lsn, order.get(c.node, len(order))))
    return [c.node for c in ranked]


def election_score(node: str, ranking: list[str]) -> int:
    """Promotion score of `node` from an election's ranking."""
    if node not in ranking:
        return -INFINITY
    return max(1, CANDIDATE_SCORE - ranking.index(node))
