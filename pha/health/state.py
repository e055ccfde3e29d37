"""What a node is, and what each health endpoint answers about it (pure logic).

A `Snapshot` is one observation of the local PostgreSQL (plus pha's node
attributes); `answer()` turns a request path and query into a status code and
a JSON-ready body. Nothing here does I/O, so all of it is unit-tested.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

from pha.pgsql import names
from pha.values import parse_size, shown

PRIMARY = "primary"
STANDBY = "standby"
UNKNOWN = "unknown"

# pha node attributes (set by ocf:pha:pgsql) read into the snapshot.
PHA_ATTRIBUTES = (names.ATTR_STATUS, names.ATTR_DATA)

_SYNC_VALUES = {names.HS_SYNC: "sync", names.STREAMING_SYNC: "sync",
                names.HS_ASYNC: "async", names.STREAMING_ASYNC: "async",
                names.HS_POTENTIAL: "async", names.STREAMING_POTENTIAL: "async"}


class Snapshot(NamedTuple):
    """One observation of the local PostgreSQL and of pha's attributes for this node."""

    running: bool
    role: str = UNKNOWN                      # PRIMARY, STANDBY or UNKNOWN (not running)
    timeline: Optional[int] = None
    wal_lsn: Optional[str] = None            # primary: pg_current_wal_lsn()
    receive_lsn: Optional[str] = None        # standby: pg_last_wal_receive_lsn()
    replay_lsn: Optional[str] = None         # standby: pg_last_wal_replay_lsn()
    upstream_lsn: Optional[str] = None       # standby: WAL end last reported by the primary
    lag_bytes: Optional[int] = None          # standby: upstream (or received) WAL not yet replayed
    replay_paused: Optional[bool] = None
    last_replay: Optional[str] = None        # standby: commit time of the last replayed transaction
    receiver: Optional[str] = None           # standby: pg_stat_wal_receiver.status ("streaming", ...)
    replication: tuple = ()                  # primary: its standbys, from pg_stat_replication
    server_version: Optional[int] = None
    attributes: Mapping[str, str] = {}       # pha node attributes that are set
    taken_at: float = 0.0                    # time.time() of the observation

    @property
    def streaming(self) -> bool:
        return self.running and self.role == STANDBY and self.receiver == "streaming"

    @property
    def sync_state(self) -> Optional[str]:
        """"sync" / "async" for a streaming standby, from pha's attributes; None when unknown."""
        if not self.streaming:
            return None
        for name in PHA_ATTRIBUTES:
            found = _SYNC_VALUES.get(self.attributes.get(name, ""))
            if found:
                return found
        return None

    def brief(self) -> dict[str, Any]:
        """What anyone may see (the status codes tell as much): role and whether it runs."""
        return {"role": self.role, "running": self.running}

    def to_json(self) -> dict[str, Any]:
        """The snapshot as the response body shows it (no connection details, no secrets)."""
        body: dict[str, Any] = {"role": self.role, "running": self.running}
        if self.running:
            body["timeline"] = self.timeline
            if self.server_version is not None:
                body["server_version"] = self.server_version
        if self.role == PRIMARY:
            body["wal_lsn"] = self.wal_lsn
            body["replication"] = [dict(r) for r in self.replication]
        elif self.role == STANDBY:
            body.update(receive_lsn=self.receive_lsn, replay_lsn=self.replay_lsn,
                        upstream_lsn=self.upstream_lsn, lag_bytes=self.lag_bytes,
                        replay_paused=self.replay_paused, last_replay=self.last_replay,
                        wal_receiver=self.receiver, sync_state=self.sync_state)
        if self.attributes:
            body["pha"] = dict(self.attributes)
        body["checked_at"] = round(self.taken_at, 3)
        return body


DOWN = Snapshot(running=False)


class BadRequest(ValueError):
    """The request names a known endpoint with bad parameters."""


class NotFound(LookupError):
    """The request names no endpoint."""


def _primary(s: Snapshot, lag: Optional[int]) -> bool:
    return s.running and s.role == PRIMARY


def _within(s: Snapshot, lag: Optional[int]) -> bool:
    return lag is None or (s.lag_bytes is not None and s.lag_bytes <= lag)


def _replica(s: Snapshot, lag: Optional[int]) -> bool:
    return s.streaming and _within(s, lag)


def _read_only(s: Snapshot, lag: Optional[int]) -> bool:
    if s.running and s.role == PRIMARY:
        return True
    return s.running and s.role == STANDBY and _within(s, lag)


def _sync(s: Snapshot, lag: Optional[int]) -> bool:
    return s.sync_state == "sync" and _within(s, lag)


def _async(s: Snapshot, lag: Optional[int]) -> bool:
    return s.sync_state == "async" and _within(s, lag)


def _health(s: Snapshot, lag: Optional[int]) -> bool:
    return s.running


# path -> (test, accepts ?lag=)
ENDPOINTS = {
    "/primary": (_primary, False), "/master": (_primary, False), "/read-write": (_primary, False),
    "/replica": (_replica, True), "/standby": (_replica, True),
    "/read-only": (_read_only, True),
    "/sync": (_sync, True), "/async": (_async, True),
    "/health": (_health, False),
}
LIVENESS = "/liveness"
PGSQLCHK = "/"
ALL_PATHS = (*ENDPOINTS, LIVENESS, PGSQLCHK)


def normalise_path(path: str) -> str:
    """"/primary/" -> "/primary"; "/" stays."""
    return path.rstrip("/") or "/"


def needs_snapshot(path: str) -> bool:
    """Whether answering `path` needs the database state (liveness and unknown paths do not)."""
    return normalise_path(path) in ENDPOINTS or normalise_path(path) == PGSQLCHK


def parse_query(path: str, query: Mapping[str, list[str]]) -> Optional[int]:
    """The ?lag= limit in bytes (None if absent); BadRequest for anything else."""
    path = normalise_path(path)
    if path not in ENDPOINTS and path not in (LIVENESS, PGSQLCHK):
        raise NotFound(f"no endpoint {path!r}; endpoints: {', '.join(ALL_PATHS)}")
    unknown = sorted(set(query) - {"lag"})
    if unknown:
        raise BadRequest(f"{path}: unknown parameter {unknown[0]!r} (only lag= is accepted)")
    if "lag" not in query:
        return None
    if path not in ENDPOINTS or not ENDPOINTS[path][1]:
        raise BadRequest(f"{path}: does not take lag=")
    values = query["lag"]
    if len(values) != 1:
        raise BadRequest(f"{path}: lag= given {len(values)} times")
    try:
        return parse_size(values[0])
    except ValueError as exc:
        raise BadRequest(f"lag: {shown(values[0])!r} {exc}") from None


def answer(path: str, lag: Optional[int], snapshot: Snapshot) -> int:
    """The status code of a known endpoint (see ENDPOINTS) for this snapshot.

    `/` is pgsqlchk mode: 200 on the primary, 206 on a standby, 503 otherwise.
    """
    path = normalise_path(path)
    if path == LIVENESS:
        return 200
    if path == PGSQLCHK:
        if snapshot.running and snapshot.role == PRIMARY:
            return 200
        return 206 if snapshot.running and snapshot.role == STANDBY else 503
    test, _ = ENDPOINTS[path]
    return 200 if test(snapshot, lag) else 503


def text_answer(snapshot: Snapshot) -> Optional[bytes]:
    """The text port's line: production on the primary, standby on a standby, None (close) when down."""
    if not snapshot.running:
        return None
    if snapshot.role == PRIMARY:
        return b"production\n"
    return b"standby\n" if snapshot.role == STANDBY else None
