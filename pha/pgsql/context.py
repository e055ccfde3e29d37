"""What every pgsql action works with: its Pacemaker side, its PostgreSQL
side and this node's small state file.

`Ctx` takes the two sides as parameters: `build` wires the real ones
(pha.crm.Crm and pha.pgsql.instance.Instance); unit tests pass fakes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ContextManager, Optional, Protocol

from pha import ocf
from pha.pgsql import decide, guard, names

if TYPE_CHECKING:
    from pha.crmstatus import ClusterStatus
    from pha.pgsql.instance import Instance


class Cluster(Protocol):
    """The part of pha.crm.Crm the agent uses."""

    def set_node_attr(self, name: str, value: object, node: Optional[str] = ...,
                      lifetime: str = ...) -> None: ...
    def delete_node_attr(self, name: str, node: Optional[str] = ..., lifetime: str = ...) -> None: ...
    def set_promotion_score(self, score: Any, resource: Optional[str] = ..., node: Optional[str] = ...) -> None: ...
    def delete_promotion_score(self, resource: Optional[str] = ..., node: Optional[str] = ...) -> None: ...
    def get_property(self, name: str, set_name: Optional[str] = ...) -> Optional[str]: ...
    def set_property(self, name: str, value: object, set_name: Optional[str] = ...) -> None: ...
    def has_quorum(self, timeout: Optional[float] = ...) -> bool: ...
    def status(self) -> "ClusterStatus": ...


class Postgres(Protocol):
    """The part of pha.pgsql.instance.Instance the agent uses."""

    pgdata: str
    pgctl: str
    port: int
    socketdir: str
    socket_path: str
    user: str
    config: str          # postgresql.conf
    conf_path: str       # pha.conf

    def is_running(self) -> bool: ...
    def port_in_use(self) -> bool: ...
    def start(self, timeout: float) -> None: ...
    def stop(self, escalate_after: float, immediate: bool = ...) -> None: ...
    def controldata(self) -> dict[str, str]: ...
    def set_standby(self, standby: bool) -> None: ...
    def write_conf(self, settings: dict[str, str]) -> bool: ...
    def ensure_included(self) -> None: ...
    def auto_conf_settings(self) -> dict[str, str]: ...
    def wal_timeline(self) -> int: ...
    def history(self, timeline: int) -> Optional[str]: ...
    def connect(self, timeout: int = ..., walsender: bool = ...) -> ContextManager[Any]: ...
    def wait_ready(self, timeout: float) -> None: ...


@dataclass
class State:
    """What this node remembers between actions (JSON in tmpdir, one file per resource)."""

    primary: bool = False            # this node runs the primary (it was promoted)
    held: bool = False               # started as the recorded primary, read-only until promoted
    rounds: int = 0                  # monitors without a primary (elections)
    promoted_at: float = 0.0         # time.time() of the promotion
    published: dict[str, Optional[str]] = field(default_factory=dict)  # node/name/lifetime -> value
    baseline: Optional[str] = None   # LSN at promotion, until the primary publishes it
    repl_info: Optional[str] = None  # the REPL_INFO this primary wrote
    receiver_seen: Optional[str] = None  # WAL receiver status at the last monitor
    stop_follows: bool = False       # the pre-demote notification said a stop follows
    conf_checked_at: float = 0.0     # time.time() of the last attempt to put pha.conf in effect

    @classmethod
    def from_json(cls, data: object) -> "State":
        """A state from its JSON; unknown keys and values of the wrong type are dropped."""
        state = cls()
        if not isinstance(data, dict):
            return state
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            default = getattr(state, f.name)
            kind = (int, float) if isinstance(default, float) else type(default)
            if value is None or (default is not None and not isinstance(value, kind)):
                continue
            setattr(state, f.name, value)
        return state

    def left_primary(self) -> None:
        """Forget being the primary (after a demote)."""
        self.primary = self.held = False
        self.published = {}
        self.repl_info = None


class Ctx:
    """Everything an action needs, built once per invocation."""

    def __init__(self, res: ocf.Resource, crm: Cluster, pg: Postgres, guard_dir: str = guard.GUARD_DIR) -> None:
        p = res.params
        self.res = res
        self.params = p
        self.log = res.log
        self.crm = crm
        self.pg = pg
        self.nodes = str(p["node_list"]).split()
        self.me = res.node_name
        self.sync = p["rep_mode"] == "sync"
        self.rsc = res.instance.split(":")[0]
        self.score_name = names.score_attr(self.rsc)
        self.state_path = names.state_path(str(p["tmpdir"]), self.rsc)
        self.fork_marker = names.fork_marker_path(str(p["tmpdir"]), self.rsc)
        self.guard_dir = guard_dir

    # --- local state -------------------------------------------------------------
    def load(self) -> State:
        try:
            with open(self.state_path) as f:
                return State.from_json(json.load(f))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as err:
            self.log.warning(f"state file {self.state_path} unreadable, starting afresh: {err}")
            return State()

    def save(self, state: State) -> None:
        from pha import files
        files.private_dir(os.path.dirname(self.state_path))
        files.write_json(self.state_path, dataclasses.asdict(state))

    def guard_primary(self) -> None:
        """Record this node's primary for `pha guard` (pha.pgsql.guard)."""
        pg = self.pg
        guard.write_record(guard.Record(self.rsc, self.me, pg.pgdata, pg.pgctl, pg.port, pg.socketdir, pg.user),
                           self.guard_dir)

    def unguard(self) -> None:
        """No primary of this resource here for `pha guard` to watch."""
        guard.remove_record(self.rsc, self.guard_dir)

    # --- Pacemaker -------------------------------------------------------------------
    def publish(self, state: State, name: str, value: Optional[str]) -> None:
        """Set (None: delete) one of this node's transient attributes, skipping
        the call when the value is unchanged since the last one."""
        key = f"{self.me}/{name}/reboot"
        if state.published.get(key, "\0") == value:
            return
        if value is None:
            self.crm.delete_node_attr(name, node=self.me, lifetime="reboot")
        else:
            self.crm.set_node_attr(name, value, node=self.me, lifetime="reboot")
        state.published[key] = value

    def score(self, node: str, value: int) -> None:
        """Set a promotion score (never cached: the primary sets them too)."""
        self.crm.set_promotion_score(decide.score_text(value), resource=self.rsc, node=node)

    def step_aside(self) -> None:
        """This node gives up its promotion score: it must not be (or stay) the primary now."""
        from pha.crm import CrmError
        try:
            self.crm.set_promotion_score("-INFINITY", resource=self.rsc, node=self.me)
        except CrmError as err:
            self.log.warning(f"could not lower this node's promotion score: {err}")

    def repl_info(self) -> Optional[decide.ReplInfo]:
        return decide.ReplInfo.parse(self.crm.get_property(names.REPL_INFO, set_name=names.PROPERTY_SET))

    def set_repl_info(self, value: str) -> None:
        self.crm.set_property(names.REPL_INFO, value, set_name=names.PROPERTY_SET)

    def quorate(self) -> bool:
        """Whether this partition has quorum; an unanswered question counts as no."""
        from pha.crm import CrmError
        try:
            return self.crm.has_quorum(timeout=5)
        except CrmError as err:
            self.log.warning(f"cannot tell whether this partition has quorum, assuming not: {err}")
            return False

    # --- the distributed lock ---------------------------------------------------------
    def lock_held(self) -> Optional[bool]:
        """Take or renew the lock: True/False with enable_distlock, None without one."""
        if not self.params["enable_distlock"]:
            return None
        return self.res.cached("lock", lambda: self.take_lock() == 0)  # once per action

    def take_lock(self) -> int:
        """distlock_lock_cmd's exit code: 0 taken or renewed, 1 held by another, other: failed."""
        return self._lock_cmd("distlock_lock_cmd")

    def unlock(self) -> None:
        if self.params["enable_distlock"] and self.params["distlock_unlock_cmd"]:
            if self._lock_cmd("distlock_unlock_cmd") != 0:
                self.log.warning("could not release the distributed lock")

    def _lock_cmd(self, param: str) -> int:
        """Run a lock command, return its exit code: `pha distlock ...` in this
        process (the monitor renews the lease every time), any other command
        as a process."""
        import shlex
        import subprocess
        argv = shlex.split(str(self.params[param]))
        if len(argv) > 1 and os.path.basename(argv[0]) == "pha" and argv[1] == "distlock":
            from pha import distlock
            return distlock.run_inline(argv[2:])
        try:
            return subprocess.run(argv, capture_output=True, timeout=10).returncode
        except (OSError, subprocess.TimeoutExpired) as err:
            self.log.warning(f"{param}: {err}")
            return 2

    # --- PostgreSQL -----------------------------------------------------------------
    def role(self) -> Optional[str]:
        """'primary', 'standby' or None (not answering)."""
        import psycopg
        try:
            with self.pg.connect(timeout=3) as conn:
                return "standby" if conn.execute("select pg_is_in_recovery()").fetchone()[0] else "primary"
        except psycopg.Error as err:
            self.log.warning(f"PostgreSQL does not answer: {err}")
            return None

    def reload(self) -> None:
        with self.pg.connect() as conn:
            conn.execute("select pg_reload_conf()")

    def action_timeout(self, default_ms: str) -> float:
        """Seconds this action may spend waiting for PostgreSQL: its timeout less 10 s, 10 at least."""
        return max(10, int(self.res.meta("timeout", default_ms)) / 1000 - 10)

    def settings(self, sync_names: str, read_only: bool = False, source: Optional[str] = None) -> dict[str, str]:
        """The content of pha.conf; `source`: stream from that peer standby's address
        instead of master_ip (a promotion catching up, pha.pgsql.peers)."""
        p = self.params
        # read-write: never stream from a standby that still holds master_ip (a demoted
        # primary restarts as a standby before the writer VIP leaves it).
        upstream = f"host={source}" if source else f"host={p['master_ip']}"
        conninfo = (f"{upstream} port={p['pgport']} user={p['repuser']} application_name={self.me} "
                    f"connect_timeout=5{'' if source else ' target_session_attrs=read-write'} "
                    f"{p['primary_conninfo_opt']}").strip()
        if p["passfile"]:
            conninfo += f" passfile={p['passfile']}"
        settings = {
            "primary_conninfo": conninfo,
            "recovery_target_timeline": "latest",
            # no notifications: a standby finds the new primary behind master_ip by retrying
            "wal_retrieve_retry_interval": "250ms",
            "hot_standby": "on",
            "synchronous_standby_names": sync_names,
            "wal_sender_timeout": f"{p['wal_timeout']}s",
            "wal_receiver_timeout": f"{p['wal_timeout']}s",
        }
        if p["restore_command"]:
            settings["restore_command"] = str(p["restore_command"])
        if p["replication_slot_name"]:
            settings["primary_slot_name"] = f"{p['replication_slot_name']}_{self.me}"
        if read_only:
            settings["default_transaction_read_only"] = "on"
        return settings

    def primary_sync_names(self) -> str:
        """synchronous_standby_names for this node as the primary: every other node in sync mode."""
        return decide.sync_standby_names(self.nodes, self.me) if self.sync else ""

    def since_promotion(self, state: State) -> float:
        return time.time() - state.promoted_at


def instance_of(res: ocf.Resource) -> "Instance":
    """The PostgreSQL instance the parameters describe (pgctl empty: PGDATA's version's programs)."""
    from pha.pgsql.instance import Instance
    p = res.params
    return Instance(str(p["pgctl"] or ""), str(p["pgdata"]), int(p["pgport"]), str(p["socketdir"]),
                    str(p["pgdba"]), str(p["pgdb"]), p["config"], str(p["start_opt"]),
                    str(p["ctl_opt"]), str(p["logfile"]) if p["logfile"] else None)


def build(res: ocf.Resource) -> Ctx:
    """The production wiring: Pacemaker's CLIs and the PostgreSQL instance of the parameters."""
    from pha.crm import Crm
    return Ctx(res, Crm(), res.cached("instance", lambda: instance_of(res)))
