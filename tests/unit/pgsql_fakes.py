"""Fakes for the pgsql agent's two sides, and a way to run its actions through AGENT.run.

FakeCluster stands for pha.crm.Crm: node attributes, promotion scores,
properties, quorum and the crm_mon view, all in dicts. FakePostgres stands
for pha.pgsql.instance.Instance: is_running/start/stop, files, and SQL
answered by FakeConn from the instance's current state.
"""
from __future__ import annotations

import copy
import os
import pwd
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import psycopg
import pytest
from psycopg import sql

from pha import crm, crmstatus
from pha.agents import pgsql as agent
from pha.pgsql import context, decide, peers, rewind

NODES = ["node1", "node2", "node3"]
SYSTEM = "7000000000000000001"                       # the database cluster's system identifier
RSC = "pgsql"
SCORE = f"master-{RSC}"
WANTED = decide.sync_standby_names(NODES, "node1")     # node1's synchronous_standby_names as the primary


class FakeCluster:
    """Pacemaker in dicts; `broken` names methods that fail like a CLI would (CrmError)."""

    def __init__(self, nodes: list[str] = NODES) -> None:
        self.attrs: dict[str, dict[str, str]] = {n: {} for n in nodes}
        self.lifetimes: dict[tuple[str, str], str] = {}
        self.props: dict[str, str] = {}
        self.online = list(nodes)
        self.running = list(nodes)
        self.quorum = True                 # crm_mon's view
        self.corosync_quorum = True        # crm_node -q
        self.shutdown: set[str] = set()
        self.target_role: Optional[str] = None
        self.broken: set[str] = set()
        self.writes: list[tuple[str, ...]] = []

    def _check(self, method: str) -> None:
        if method in self.broken:
            raise crm.CrmError(("crm_attribute",), "failed with exit code 102: Connection refused", 102)

    def set_node_attr(self, name: str, value: object, node: Optional[str] = None, lifetime: str = "forever",
                      timeout: Optional[float] = None) -> None:
        self._check("set_node_attr")
        self.attrs.setdefault(str(node), {})[name] = str(value)
        self.lifetimes[(str(node), name)] = lifetime
        self.writes.append(("attr", str(node), name, str(value)))

    def delete_node_attr(self, name: str, node: Optional[str] = None, lifetime: str = "forever",
                         timeout: Optional[float] = None) -> None:
        self._check("delete_node_attr")
        self.attrs.get(str(node), {}).pop(name, None)
        self.writes.append(("delete", str(node), name))

    def set_promotion_score(self, score: Any, resource: Optional[str] = None, node: Optional[str] = None,
                            timeout: Optional[float] = None) -> None:
        self._check("set_promotion_score")
        self.attrs.setdefault(str(node), {})[f"master-{resource}"] = str(score)
        self.writes.append(("score", str(node), str(score)))

    def delete_promotion_score(self, resource: Optional[str] = None, node: Optional[str] = None,
                               timeout: Optional[float] = None) -> None:
        self._check("delete_promotion_score")
        self.attrs.get(str(node), {}).pop(f"master-{resource}", None)
        self.writes.append(("delete", str(node), f"master-{resource}"))

    def get_property(self, name: str, set_name: Optional[str] = None,
                     timeout: Optional[float] = None) -> Optional[str]:
        self._check("get_property")
        return self.props.get(name)

    def set_property(self, name: str, value: object, set_name: Optional[str] = None,
                     timeout: Optional[float] = None) -> None:
        self._check("set_property")
        self.props[name] = str(value)
        self.writes.append(("property", name, str(value)))

    def has_quorum(self, timeout: Optional[float] = None) -> bool:
        self._check("has_quorum")
        return self.corosync_quorum

    def status(self, timeout: Optional[float] = None) -> crmstatus.ClusterStatus:
        self._check("status")
        summary = crmstatus.Summary(stack="corosync", dc="node1", dc_id="1", dc_version="2.1.5", quorum=self.quorum,
                              nodes_configured=len(self.attrs), resources_configured=len(self.attrs),
                              resources_disabled=0, resources_blocked=0, maintenance_mode=False,
                              stop_all_resources=False, fencing_enabled=False, no_quorum_policy="stop",
                              pacemakerd_state="running")
        nodes = [crmstatus.Node(name=n, id=str(i), online=n in self.online, standby=False, standby_onfail=False,
                          maintenance=False, pending=False, unclean=False, shutdown=n in self.shutdown,
                          expected_up=True, is_dc=i == 1, resources_running=0, type="member")
                 for i, n in enumerate(self.attrs, 1)]
        resources = [crmstatus.Resource(id=f"{RSC}:{i}", agent="ocf:pha:pgsql", role="Unpromoted",
                                  target_role=self.target_role, active=n in self.running, orphaned=False,
                                  blocked=False, managed=True, failed=False, failure_ignored=False,
                                  nodes=(n,) if n in self.running else (), clone=f"{RSC}-clone", promotable=True)
                     for i, n in enumerate(self.attrs)]
        return crmstatus.ClusterStatus(summary, nodes, resources, {}, {}, copy.deepcopy(self.attrs), {}, [], [])


class FakeConn:
    """Answers the agent's SQL from FakePostgres's state; records what ran."""

    def __init__(self, pg: "FakePostgres", walsender: bool = False) -> None:
        self.pg = pg
        self.walsender = walsender
        self.rows: list[tuple] = []

    def execute(self, query: Union[str, sql.Composable], params: tuple = ()) -> "FakeConn":
        text = query if isinstance(query, str) else query.as_string(None)
        if self.walsender and params:
            raise psycopg.errors.ProtocolViolation("extended query protocol not supported in a replication "
                                                   "connection")
        self.pg.executed.append(text)
        for key, answer in self.pg.answers():
            if key in text:
                result = answer(text, params) if callable(answer) else answer
                if isinstance(result, Exception):
                    raise result
                self.rows = list(result)
                return self
        raise AssertionError(f"FakePostgres has no answer to {text!r}")

    def fetchone(self) -> Optional[tuple]:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return self.rows


class FakePostgres:
    """A PostgreSQL instance in memory."""

    def __init__(self, pgdata: str) -> None:
        self.pgdata = pgdata
        self.config = os.path.join(pgdata, "postgresql.conf")
        self.conf_path = os.path.join(pgdata, "pha.conf")
        self.conf_source: Optional[str] = self.conf_path   # synchronous_standby_names' sourcefile
        self.config_file = self.config                      # the config_file PostgreSQL reads
        self.port = 5432
        self.pgctl = ""
        self.socketdir = "/run/postgresql"
        self.user = "postgres"
        self.socket_path = "/run/postgresql/.s.PGSQL.5432"
        self.running = True
        self.in_recovery = True
        self.timeline = 3
        self.lsn = "0/5000060"
        self.receiver = "streaming"
        self.lag = 0
        self.replication: list[tuple] = []          # (application_name, state, sync_state, lag)
        self.sync_names = ""
        self.slots: list[str] = []
        self.receiver_pid: Optional[int] = None
        self.control = {"Latest checkpoint's TimeLineID": "3", "Latest checkpoint location": "0/5000028",
                        "Database cluster state": "shut down"}
        self.histories: dict[int, str] = {}
        self.system = SYSTEM
        self.upstream_lsn: dict[str, str] = {}       # a peer's address -> the WAL it streams to this node
        self.auto_conf: dict[str, str] = {}
        self.connect_error: Optional[Exception] = None
        self.walsender_error: Optional[Exception] = None
        self.stop_error: Optional[Exception] = None
        self.port_taken = False
        self.conf: Optional[dict[str, str]] = None
        self.standby_signal: Optional[bool] = None
        self.calls: list[tuple] = []
        self.executed: list[str] = []

    def answers(self) -> list[tuple[str, Any]]:
        return [
            ("from pg_control_system()", [(self.system, self.lsn, self.timeline)]),
            ("select pg_last_wal_receive_lsn()::text", lambda text, params: [(self._received(),)]),
            ("pg_is_in_recovery()", [(self.in_recovery,)]),
            ("from pg_stat_replication", self.replication),
            ("current_setting('synchronous_standby_names')", [(self.sync_names,)]),
            ("from pg_settings", [("config_file", self.config_file, None),
                                  ("synchronous_standby_names", self.sync_names, self.conf_source)]),
            ("pg_reload_conf()", [(True,)]),
            ("select coalesce((select status from pg_stat_wal_receiver)",
             [(self.receiver, self.lag, self.lsn, self.timeline)]),
            ("select greatest(", [(self.lsn, self.timeline)]),
            ("pg_promote(", self._promote),
            ("select (select timeline_id from pg_control_checkpoint()), pg_current_wal_lsn()",
             [(self.timeline, self.lsn)]),
            ("pg_walfile_name(", [(f"{self.timeline:08X}0000000000000005",)]),
            ("pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()", [(False,)]),
            ("select pg_current_wal_lsn()::text", [(self.lsn,)]),
            ("select slot_name from pg_replication_slots", [(s,) for s in self.slots]),
            ("pg_create_physical_replication_slot",
             lambda text, params: self.slots.append(re.search(r"\('([^']*)'\)", text).group(1)) or []),
            ("where backend_type = 'walreceiver'", [(self.receiver_pid,)] if self.receiver_pid else []),
            ("select 1", [(1,)]),
        ]

    def _received(self) -> str:
        """What the WAL receiver has: the peer's WAL when pha.conf streams from a peer that sends it."""
        host = (self.conf or {}).get("primary_conninfo", "").split()[0].removeprefix("host=")
        if host in self.upstream_lsn:
            self.lsn = self.upstream_lsn[host]
        return self.lsn

    def _promote(self, text: str, params: tuple) -> list[tuple]:
        self.in_recovery = False
        self.timeline += 1
        self.histories[self.timeline] = f"{self.timeline - 1}\t{self.lsn}\tno recovery target specified\n"
        return [(True,)]

    @contextmanager
    def connect(self, timeout: int = 5, walsender: bool = False) -> Iterator[FakeConn]:
        """walsender: the monitor's way in when every slot is taken (walsender_error refuses it)."""
        error = self.walsender_error if walsender else self.connect_error
        if error is not None or not self.running:
            raise error or _connection_refused()
        if walsender:
            self.calls.append(("connect", "walsender"))
        yield FakeConn(self, walsender)

    def is_running(self) -> bool:
        return self.running

    def port_in_use(self) -> bool:
        return self.port_taken

    def start(self, timeout: float) -> None:
        self.calls.append(("start",))
        self.running = True
        self.in_recovery = bool(self.standby_signal)

    def stop(self, escalate_after: float, immediate: bool = False) -> None:
        self.calls.append(("stop", escalate_after, immediate))
        if self.stop_error:
            raise self.stop_error
        self.running = False

    def wait_ready(self, timeout: float) -> None:
        self.calls.append(("wait_ready",))

    def controldata(self) -> dict[str, str]:
        return dict(self.control)

    def set_standby(self, standby: bool) -> None:
        self.standby_signal = standby

    def write_conf(self, settings: dict[str, str]) -> bool:
        changed = settings != self.conf
        self.conf = dict(settings)
        return changed

    def ensure_included(self) -> None:
        self.calls.append(("ensure_included",))

    def auto_conf_settings(self) -> dict[str, str]:
        return dict(self.auto_conf)

    def wal_timeline(self) -> int:
        return self.timeline

    def history(self, timeline: int) -> Optional[str]:
        return self.histories.get(timeline)


def _connection_refused() -> Exception:
    import psycopg
    return psycopg.OperationalError('connection failed: connection to server on socket '
                                    '"/run/postgresql/.s.PGSQL.5432" failed: No such file or directory')


class Node:
    """One node's agent: its parameters, fakes and state dir; run(action) goes through AGENT.run."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster,
                 name: str = "node1", **params: str) -> None:
        self.name, self.cluster = name, cluster
        pgdata = tmp_path / f"{name}-data"
        pgdata.mkdir(mode=0o700, exist_ok=True)
        (pgdata / "PG_VERSION").write_text("15\n")
        self.pg = FakePostgres(str(pgdata))
        self.tmpdir = tmp_path / f"{name}-run"
        self.guard_dir = tmp_path / f"{name}-guard"
        self.params = {"pgctl": "/bin/true", "pgdata": str(pgdata), "pgdba": pwd.getpwuid(os.geteuid()).pw_name,
                       "node_list": " ".join(NODES), "master_ip": "10.0.0.100", "rep_mode": "sync",
                       "tmpdir": str(self.tmpdir), **params}
        self.rc: Optional[int] = None
        self.ctx: Optional[context.Ctx] = None
        # pha.pgsql.rewind's I/O, faked: what a rewind at start returns (or raises), and its calls
        self.rewind_result: Any = rewind.Result(rewind.NONE, "not forked")
        self.rewinds: list[dict[str, Any]] = []
        self.source_up = True
        monkeypatch.setattr(context, "build", self._build)
        monkeypatch.setattr(rewind, "rewind_instance", self._rewind_instance)
        monkeypatch.setattr(rewind, "reachable", lambda host, port, timeout=5.0: self.source_up)
        # pha.pgsql.peers' I/O, faked: each peer's address, and what IDENTIFY_SYSTEM answers there
        # (an Identity, or an exception to raise); a peer not named answers with this node's position.
        self.peer_answers: dict[str, Any] = {}
        self.asked: list[tuple[str, str]] = []
        monkeypatch.setattr(peers, "addresses", lambda nodes: {n: peer_address(n) for n in nodes})
        monkeypatch.setattr(peers, "ask", self._ask)

    def _ask(self, address: str, conninfo: str) -> peers.Identity:
        self.asked.append((address, conninfo))
        node = next(n for n in NODES if peer_address(n) == address)
        answer = self.peer_answers.get(node)
        if answer is None:
            return peers.Identity(self.pg.system, decide.Position(self.pg.timeline, decide.parse_lsn(self.pg.lsn)))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _rewind_instance(self, pg: Any, info: Any, host: str, port: int, repuser: str, passfile: str = "",
                         **kw: Any) -> Any:
        self.rewinds.append({"info": info, "host": host, "port": port, "repuser": repuser,
                             "passfile": passfile, **kw})
        if isinstance(self.rewind_result, Exception):
            raise self.rewind_result
        if self.rewind_result.action in (rewind.REWIND, rewind.RECLONE):
            pg.timeline = info.timeline      # pg_rewind brought the primary's timeline
            pg.control["Latest checkpoint's TimeLineID"] = str(info.timeline)
        return self.rewind_result

    def _build(self, res: Any) -> context.Ctx:
        self.ctx = context.Ctx(res, self.cluster, self.pg, guard_dir=str(self.guard_dir))
        return self.ctx

    def run(self, action: str, interval: int = 2000, timeout: int = 60000, **meta: str) -> int:
        env = {f"OCF_RESKEY_{k}": v for k, v in self.params.items()}
        env.update({"OCF_RESOURCE_INSTANCE": f"{RSC}:0", "OCF_RESKEY_CRM_meta_on_node": self.name,
                    "OCF_RESKEY_CRM_meta_interval": str(interval if action == "monitor" else 0),
                    "OCF_RESKEY_CRM_meta_timeout": str(timeout), "HA_LOGFACILITY": "none"})
        env.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in meta.items()})
        self.rc = agent.AGENT.run([action], env=env)
        return self.rc

    def state(self) -> context.State:
        return context.State.from_json(_read_json(self.tmpdir / f"{RSC}.state"))

    def save_state(self, **fields: Any) -> None:
        import dataclasses
        import json
        self.tmpdir.mkdir(mode=0o700, exist_ok=True)
        state = dataclasses.replace(self.state(), **fields)
        (self.tmpdir / f"{RSC}.state").write_text(json.dumps(dataclasses.asdict(state)))


def peer_address(node: str) -> str:
    """A node's address in these tests: node3 is 10.0.0.3."""
    return f"10.0.0.{node.removeprefix('node')}"


def _read_json(path: Path) -> object:
    import json
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def primary_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster,
                 promoted_ago: float = 60.0, **params: str) -> Node:
    """node1 running as the writable primary, promoted `promoted_ago` seconds ago."""
    import time
    node = Node(tmp_path, monkeypatch, cluster, **params)
    node.pg.in_recovery = False
    node.save_state(primary=True, promoted_at=time.time() - promoted_ago, repl_info="node1|3|0/3000000")
    cluster.props["REPL_INFO"] = "node1|3|0/3000000"
    return node


def stream(*spec: tuple[str, str]) -> list[tuple]:
    """pg_stat_replication rows: (node, sync_state) streaming, no lag."""
    return [(n, "streaming", s, 0) for n, s in spec]


@pytest.fixture
def cluster() -> FakeCluster:
    """A quorate three-node cluster with every node online and the resource running everywhere."""
    return FakeCluster()
