"""The other standbys at a promotion: where their WAL ends, asked of them directly,
and catching up from the one that has more before this node is promoted.

Why ask at all: the promotion score says which node the last primary (or an
election) chose, but not what happened since. When the primary's Pacemaker
dies, nobody rewrites the attributes; if its sync standby failed at the same
time, PostgreSQL went on with the next standby of synchronous_standby_names as
its sync and acknowledged commits that only that standby holds. The node
Pacemaker promotes then lacks them. So the promoting node asks every running
peer for its position (IDENTIFY_SYSTEM over a replication connection: the
walsender answers from shared memory, whatever the peer's connection slots)
and, when one has more WAL, streams it from that peer first (pg_auto_failover's
"fast forward"). Only when that fails does it hand the promotion to the peer.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, NamedTuple, Optional

import psycopg

from pha.pgsql import decide, names
from pha.pgsql.context import Ctx
from pha.values import first_line

ASK_TIMEOUT = 2          # seconds to connect to a peer (libpq's least connect_timeout)
CATCH_UP_WAIT = 5.0      # seconds the promoting node streams from a peer before it hands over


class Identity(NamedTuple):
    """IDENTIFY_SYSTEM's answer: which database cluster, and where its WAL ends."""

    system: str
    position: decide.Position


def identify(conn: Any) -> Identity:
    """IDENTIFY_SYSTEM on a replication connection (a standby answers with what it
    received or replayed, whichever is further, and that WAL's timeline)."""
    system, timeline, xlogpos = (_text(v) for v in conn.execute("IDENTIFY_SYSTEM").fetchone()[:3])
    return Identity(system, decide.Position(int(timeline), decide.parse_lsn(xlogpos)))


def _text(value: object) -> str:
    """A column of a replication command's answer: psycopg hands it over as bytes (no type known)."""
    return bytes(value).decode() if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


def ask(address: str, conninfo: str) -> Identity:
    """A peer's identity, asked at `address` (conninfo: the replication user's options)."""
    with psycopg.connect(f"host={address} {conninfo}", autocommit=True) as conn:
        return identify(conn)


def peers_to_ask(ctx: Ctx, status: Any) -> list[str]:
    """The other nodes of node_list that are online and run the resource, a primary excepted
    (promotion_refusal refuses while one runs)."""
    online, running = set(status.online_nodes()), set(status.resource_nodes(ctx.rsc))
    attrs = status.node_attributes
    return [n for n in ctx.nodes if n != ctx.me and n in online and n in running
            and attrs.get(n, {}).get(names.ATTR_STATUS) != names.PRI]


def addresses(nodes: list[str]) -> dict[str, Optional[str]]:
    """Each node's address: its first corosync ring address, else the system resolver's
    (asked only for a node corosync.conf does not name)."""
    from pha.lvs import hosts
    ring = hosts.cluster_nodes()
    found: dict[str, Optional[str]] = {}
    for node in nodes:
        try:
            found[node] = next(iter(ring.get(node) or hosts.system_resolver(node)), None)
        except OSError:
            found[node] = None
    return found


def peer_conninfo(ctx: Ctx, me: str) -> str:
    """The replication user's connection options for a peer (host aside)."""
    p = ctx.params
    conninfo = (f"port={p['pgport']} user={p['repuser']} replication=true connect_timeout={ASK_TIMEOUT} "
                f"application_name=pha-promote-{me} {p['primary_conninfo_opt']}").strip()
    return conninfo + (f" passfile={p['passfile']}" if p["passfile"] else "")


def positions(ctx: Ctx, peers: list[str], system: str,
              where: Mapping[str, Optional[str]]) -> dict[str, Optional[decide.Position]]:
    """Every peer's position, asked at once; None for one that cannot be asked (logged) or
    that holds another database cluster."""
    conninfo = peer_conninfo(ctx, ctx.me)

    def one(node: str) -> Optional[decide.Position]:
        address = where.get(node)
        if not address:
            ctx.log.warning(f"cannot ask {node} where its WAL ends: no address for it")
            return None
        try:
            identity = ask(address, conninfo)
        except (psycopg.Error, OSError, ValueError) as err:
            ctx.log.warning(f"cannot ask {node} ({address}) where its WAL ends: {first_line(err)}")
            return None
        if identity.system != system:
            ctx.log.warning(f"{node} ({address}) runs another database cluster (system {identity.system}, "
                            f"ours {system}): not counted")
            return None
        return identity.position

    if not peers:
        return {}
    with ThreadPoolExecutor(max_workers=len(peers)) as pool:
        return dict(zip(peers, pool.map(one, peers)))


def catch_up(ctx: Ctx, conn: Any, address: str, target: decide.Position) -> bool:
    """Stream from the peer at `address` until this node has received its WAL to
    `target` (within CATCH_UP_WAIT); True when it has. primary_conninfo points
    at the peer meanwhile (a reload restarts the WAL receiver); the caller puts
    it back."""
    ctx.pg.write_conf(ctx.settings("", source=address))
    conn.execute("select pg_reload_conf()")
    deadline = time.monotonic() + CATCH_UP_WAIT
    while True:
        received = conn.execute("select pg_last_wal_receive_lsn()::text").fetchone()[0]
        if received and decide.parse_lsn(received) >= target.lsn:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
