"""Pure decisions of the pgsql agent: no I/O here, so all of it is unit-tested.

- what each node's attributes and promotion score are, from the primary's
  view of pg_stat_replication, and which of them differ from the cluster's;
- which synchronous_standby_names the primary runs with, and when it may fall
  back to async;
- who wins an election when there is no primary, and when to hold one;
- whether this node may be promoted now, which peer it must catch up with
  first, and how a demote goes;
- whether a node's history forked off the cluster's (REPL_INFO);
- whether a refused connection still means a live server.
"""
from __future__ import annotations

from typing import Callable, Collection, Mapping, NamedTuple, Optional

from pha.pgsql.names import (ATTR_DATA, ATTR_LSN, ATTR_STATUS, ATTR_TIMELINE,  # noqa: F401
                             CANDIDATE_DATA, DISCONNECT, HS_ALONE, HS_ASYNC, HS_POTENTIAL, HS_SYNC,
                             LATEST, PRI, STOP, STREAMING_ASYNC, STREAMING_POTENTIAL, STREAMING_SYNC)

INFINITY = 1_000_000
PRIMARY_SCORE = 1000
CANDIDATE_SCORE = 100
FALLBACK_GRACE = 5.0     # seconds after a promotion for the standbys to reconnect
SETTLE = 2.0             # seconds after a promotion before the primary writes attributes

Attributes = Mapping[str, Mapping[str, str]]   # node -> attribute name -> value (crm_mon)


# --- promotion scores ---------------------------------------------------------------
def score_text(value: int) -> str:
    """A promotion score as Pacemaker writes it."""
    if value >= INFINITY:
        return "INFINITY"
    if value <= -INFINITY:
        return "-INFINITY"
    return str(value)


def promotable(score: Optional[str]) -> bool:
    """Whether a promotion score (as crm_mon shows it) lets Pacemaker promote the node."""
    if score is None or score == "-INFINITY":
        return False
    return score in ("INFINITY", "+INFINITY") or int(score) > 0


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


class StoppedWal(NamedTuple):
    """Where a stopped instance's WAL ends at the least, from pg_controldata."""

    timeline: int                             # the newest timeline it has WAL of
    checkpoint: int                           # its latest checkpoint's location: a record starts there
    min_recovery: Optional[tuple[int, int]]   # a standby's minimum recovery point (timeline, LSN), an end


def stopped_wal(control: Mapping[str, str], wal_timeline: int = 0) -> StoppedWal:
    """StoppedWal from pg_controldata's fields and the newest timeline in pg_wal."""
    timeline = max(int(control.get("Latest checkpoint's TimeLineID", "0") or 0), wal_timeline)
    min_lsn = parse_lsn(control.get("Minimum recovery ending location", "0/0"))
    min_tl = int(control.get("Min recovery ending loc's timeline", "0") or 0)
    return StoppedWal(timeline, parse_lsn(control.get("Latest checkpoint location", "0/0")),
                      (min_tl, min_lsn) if min_lsn and min_tl else None)


def forked(local_timeline: int, local_lsn: int, info: Optional[ReplInfo],
           history: Optional[dict[int, int]] = None) -> Optional[str]:
    """Why a running node's WAL cannot follow the cluster's history, or None when it can.

    local_*: where this node's own WAL ends (timeline, LSN): what it received
    or wrote. info: REPL_INFO. history: the cluster's timeline history
    (parent -> switch LSN), when known.
    """
    left = left_at(local_timeline, info, history)
    if left is not None and local_lsn > left:
        return (f"timeline {local_timeline} forked: WAL to {format_lsn(local_lsn)}, "
                f"past {format_lsn(left)} (timeline {local_timeline + 1})")
    return None


def stopped_forked(wal: StoppedWal, info: Optional[ReplInfo],
                   history: Optional[dict[int, int]] = None) -> Optional[str]:
    """Why a stopped node's WAL cannot follow the cluster's history, or None when it can.

    PostgreSQL's own two checks at a standby's start: its latest checkpoint
    must lie before the switch point (the record starts at its location, so
    one at the very switch point is already off the new timeline), and its
    minimum recovery point (an end) must not pass it. A node demoted and
    stopped while cut off has its checkpoint before the switch point and its
    minimum recovery point past it.
    """
    left = left_at(wal.timeline, info, history)
    if left is not None and wal.checkpoint >= left:
        return (f"timeline {wal.timeline} forked: checkpoint at {format_lsn(wal.checkpoint)}, "
                f"not before {format_lsn(left)} (timeline {wal.timeline + 1})")
    if wal.min_recovery:
        timeline, lsn = wal.min_recovery
        left = left_at(timeline, info, history)
        if left is not None and lsn > left:
            return (f"timeline {timeline} forked: minimum recovery point {format_lsn(lsn)}, "
                    f"past {format_lsn(left)} (timeline {timeline + 1})")
    return None


def left_at(timeline: int, info: Optional[ReplInfo], history: Optional[dict[int, int]]) -> Optional[int]:
    """Where the cluster's history left `timeline` (its successor's switch point); None when
    the timeline is the cluster's own or newer, or unknown (PostgreSQL itself refuses to
    stream if it forked)."""
    if info is None or timeline >= info.timeline:
        return None
    switches = dict(history or {})
    switches.setdefault(info.timeline - 1, info.switch_lsn)
    return switches.get(timeline)


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


def may_fall_back_to_async(quorate: bool, lock_held: Optional[bool],
                           seconds_since_promotion: float, grace: float = FALLBACK_GRACE) -> bool:
    """With no standby streaming: async only while this primary is surely the
    cluster's (quorum, and the lock when there is one). Right after a
    promotion the standbys get `grace` seconds to reconnect."""
    return quorate and lock_held is not False and seconds_since_promotion >= grace


def sync_target(streaming: int, current: str, wanted: str,
                may_go_async: Callable[[], bool]) -> Optional[str]:
    """The synchronous_standby_names to set now, or None to leave `current`.

    Sync (`wanted`) as soon as a standby streams; async ("") only when none
    does and `may_go_async()` (asked only then: it costs a Pacemaker call).
    """
    if streaming:
        return wanted if current != wanted else None
    if current and may_go_async():
        return ""
    return None


class Write(NamedTuple):
    """One node attribute (or promotion score) the primary must write."""

    node: str
    name: str
    value: str
    lifetime: str


def cluster_views(nodes: list[str], me: str, rows: list[Standby], sync_mode: bool, max_lag: int,
                  running: list[str]) -> dict[str, StandbyView]:
    """Every node's attributes and score as the primary `me` sees them;
    `running`: the nodes where the resource is active (crm_mon)."""
    views = mark_stopped(standby_views(nodes, me, rows, sync_mode, max_lag), running)
    views[me] = StandbyView(PRI, LATEST, PRIMARY_SCORE)
    return views


def attribute_writes(views: Mapping[str, StandbyView], actual: Attributes, score_name: str) -> list[Write]:
    """What differs between the views and the cluster's attributes: only that is written.
    A Write named `score_name` is a promotion score."""
    writes = []
    for node, view in views.items():
        now = actual.get(node, {})
        if now.get(ATTR_STATUS) != view.status:
            writes.append(Write(node, ATTR_STATUS, view.status, "reboot"))
        if now.get(ATTR_DATA) != view.data_status:
            writes.append(Write(node, ATTR_DATA, view.data_status, "forever"))
        if now.get(score_name) != score_text(view.score):
            writes.append(Write(node, score_name, score_text(view.score), "reboot"))
    return writes


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


def leader_known(nodes: list[str], me: str, attrs: Attributes, online: list[str], score_name: str) -> bool:
    """A primary, or a node Pacemaker can promote already (the sync standby the
    last primary marked): then no election, and no attribute churn to abort
    Pacemaker's transition."""
    return any(attrs.get(n, {}).get(ATTR_STATUS) == PRI for n in nodes if n != me) or any(
        n in online and promotable(attrs.get(n, {}).get(score_name)) for n in nodes)


def election_pool(nodes: list[str], me: Candidate, attrs: Attributes,
                  online: list[str]) -> tuple[list[Candidate], list[str]]:
    """The candidates (this node, and the online standbys that published their
    position) and the online nodes still starting (no pgsql-status yet)."""
    candidates, starting = [], []
    for node in nodes:
        a = attrs.get(node, {})
        if node == me.node:
            candidates.append(me)
        elif node in online and a.get(ATTR_LSN) and a.get(ATTR_STATUS, "").startswith("HS"):
            candidates.append(Candidate(node, int(a.get(ATTR_TIMELINE, "0")), int(a[ATTR_LSN], 16),
                                        a.get(ATTR_DATA)))
        elif node in online and not a.get(ATTR_STATUS):
            starting.append(node)
    return candidates, starting


WAIT_STARTING = "starting"    # a node is starting: it may have the best data
WAIT_MISSING = "missing"      # a node has not published its position yet


def election_wait(rounds: int, check_count: int, published: int, node_count: int,
                  starting: list[str]) -> Optional[str]:
    """Why this elector's `rounds`-th monitor without a primary does not
    elect yet, or None to elect now. Starting nodes get 5 x xlog_check_count
    rounds; otherwise the election is held at once when every node of
    node_list has published, else after xlog_check_count rounds."""
    if starting and rounds < 5 * check_count:
        return WAIT_STARTING
    if published < node_count and rounds < check_count:
        return WAIT_MISSING
    return None


def election_score(node: str, ranking: list[str]) -> int:
    """Promotion score of `node` from an election's ranking."""
    if node not in ranking:
        return -INFINITY
    return max(1, CANDIDATE_SCORE - ranking.index(node))


def may_reassert_repl_info(mine: Optional[str], current: Optional[str], probe: bool) -> bool:
    """Whether a primary writes its REPL_INFO back over `current`. Only from a
    recurring monitor (a probe runs before Pacemaker decided anything: a node
    whose stack came back must not undo a failover), and never over a record
    of the same or a newer timeline than its own: that one was written by a
    later promotion."""
    if probe or not mine or current == mine:
        return False
    ours = ReplInfo.parse(mine)
    try:
        theirs = ReplInfo.parse(current)
    except ValueError:
        return True  # a malformed record: ours is the cluster's history
    return ours is not None and (theirs is None or theirs.timeline < ours.timeline)


# --- promotion and demotion ------------------------------------------------------------------
def held_primary(info: Optional[ReplInfo], me: str, local_timeline: int, clean: bool) -> bool:
    """The node REPL_INFO records as primary, shut down cleanly on the recorded
    timeline, starts as a held (read-only) primary: its promotion makes no new timeline."""
    return bool(info and info.primary == me and local_timeline == info.timeline and clean)


class Refusal(NamedTuple):
    reason: str
    step_aside: bool      # this node also gives up its promotion score


def promotion_refusal(me: str, nodes: list[str], attrs: Attributes, sync_mode: bool,
                      caught_up_with: Collection[str] = ()) -> Optional[Refusal]:
    """Why this node must not be promoted now (re-checked against what the
    others publish at the promotion itself), or None.

    caught_up_with: the peers whose WAL this node has at the least, asked of
    them at this promotion. In sync mode a node whose data is not current
    (not LATEST, not the sync standby) may still be promoted once it holds
    everything a current one holds: a peer handed it the promotion because
    it has more WAL than the sync standby the last primary marked (the
    primary's Pacemaker died and it went on with this node as its sync)."""
    mine = attrs.get(me, {}).get(ATTR_DATA)
    vouched = any(attrs.get(n, {}).get(ATTR_DATA) in CANDIDATE_DATA for n in caught_up_with)
    if sync_mode and mine and mine not in CANDIDATE_DATA and not vouched:
        return Refusal(f"not promoting: this node's data is {mine}, not the sync standby's", True)
    for node in nodes:
        if node != me and attrs.get(node, {}).get(ATTR_STATUS) == PRI:
            return Refusal(f"not promoting: {node} is still the primary", False)
    return None


class Position(NamedTuple):
    """Where a node's WAL ends: what it wrote, received or replayed (IDENTIFY_SYSTEM)."""

    timeline: int
    lsn: int

    def __str__(self) -> str:
        return f"{format_lsn(self.lsn)} on timeline {self.timeline}"


def most_advanced_peer(mine: Position, peers: Mapping[str, Optional[Position]],
                       nodes: list[str]) -> Optional[str]:
    """The peer whose WAL goes furthest past this node's (a newer timeline, or
    more WAL on the same one), ties by node_list order; None when no peer has
    more. A peer on an older timeline never has more: its WAL past the switch
    point forked off (the fork guard's business). Peers not asked (None) are
    not counted."""
    order = {n: i for i, n in enumerate(nodes)}
    ahead = [(node, p) for node, p in peers.items() if p is not None and p > mine]
    if not ahead:
        return None
    return min(ahead, key=lambda item: (-item[1].timeline, -item[1].lsn, order.get(item[0], len(order))))[0]


DEMOTE_NOT_RUNNING = "not running"   # a failed primary: Pacemaker stops (and maybe restarts) it next
DEMOTE_BY_STOPPING = "stop"          # the same transition stops it: shut down as the primary
DEMOTE_TO_STANDBY = "standby"        # restart as a standby of master_ip


def demote_path(running: bool, stop_follows: Callable[[], bool]) -> str:
    """How a demote goes; `stop_follows()` is asked only for a running primary."""
    if not running:
        return DEMOTE_NOT_RUNNING
    return DEMOTE_BY_STOPPING if stop_follows() else DEMOTE_TO_STANDBY


def stop_follows_demote(clone_target_role: Optional[str], node_shutting_down: bool) -> bool:
    """A demote is followed by a stop when the clone is being disabled or the node shuts down."""
    return clone_target_role == "Stopped" or node_shutting_down


# --- the monitor ----------------------------------------------------------------------------------
# SQLSTATEs of a server that refuses a connection but is alive.
TOO_MANY_CONNECTIONS = "53300"
CANNOT_CONNECT_NOW = "57P03"
# libpq keeps no SQLSTATE for a connection refused at startup, only the
# server's message: these are the (C locale) messages of those two SQLSTATEs.
_ALIVE_MESSAGES = {
    "too many clients": TOO_MANY_CONNECTIONS,
    "remaining connection slots are reserved": TOO_MANY_CONNECTIONS,
    "the database system is starting up": CANNOT_CONNECT_NOW,
    "the database system is shutting down": CANNOT_CONNECT_NOW,
    "the database system is not yet accepting connections": CANNOT_CONNECT_NOW,
}


def busy_sqlstate(sqlstate: Optional[str], message: str) -> Optional[str]:
    """53300 or 57P03 when a failed connection or query says the server is
    alive but busy (full, starting up, shutting down), else None."""
    if sqlstate in (TOO_MANY_CONNECTIONS, CANNOT_CONNECT_NOW):
        return sqlstate
    if sqlstate:
        return None
    return next((code for text, code in _ALIVE_MESSAGES.items() if text in message), None)
