"""ocf:pha:pgsql: PostgreSQL 12+ as a promotable clone with streaming replication.

One primary and N hot standbys. The primary's monitor reads
pg_stat_replication, publishes every standby's state and promotion score,
chooses the synchronous standby (synchronous_standby_names in pha.conf,
reloaded, never restarted) and falls back to async only while it holds
quorum. Standbys publish their WAL position; with no primary they elect the
most advanced one. Every promotion records REPL_INFO (primary|timeline|
switch-LSN) and a node whose history forked off it refuses to start.

Decisions live in pha.pgsql.decide (pure); PostgreSQL I/O in
pha.pgsql.instance; Pacemaker I/O in pha.crm. This module wires them into
one function per action.
"""
from __future__ import annotations

import json
import os
import time
from typing import Optional

from pha import __version__, ocf
from pha.pgsql import decide

PROPERTY_SET = "pha-pgsql"
REPL_INFO = "REPL_INFO"
ATTR_STATUS = "pgsql-status"            # transient
ATTR_DATA = "pgsql-data-status"         # forever: survives a restart of the cluster
ATTR_LSN = "pgsql-xlog-loc"             # transient, for elections
ATTR_TIMELINE = "pgsql-timeline"        # transient
ATTR_LAG = "pgsql-replay-lag"           # transient, on standbys: bytes received but not replayed
ATTR_RECEIVER = "pgsql-receiver"        # transient, on standbys: WAL receiver status
ATTR_BASELINE = "pgsql-master-baseline"  # transient, on the primary: LSN at promotion
FALLBACK_GRACE = 5.0                    # seconds after a promotion for the standbys to reconnect
SETTLE = 2.0                            # seconds after a promotion before the primary writes attributes


def _port(value: ocf.Value) -> Optional[str]:
    return None if 1 <= int(value) <= 65535 else "must be a port (1-65535)"


def _positive(value: ocf.Value) -> Optional[str]:
    return None if int(value) > 0 else "must be positive"


def _not_negative(value: ocf.Value) -> Optional[str]:
    return None if int(value) >= 0 else "must be 0 or more"


P = ocf.Param
AGENT = ocf.Agent(
    name="pgsql",
    version=__version__,
    shortdesc="PostgreSQL 12+ streaming replication (promotable)",
    longdesc=("Manages PostgreSQL 12 or newer as a promotable clone: one primary and hot standbys on "
              "streaming replication, synchronous or asynchronous. The most advanced node is promoted; "
              "in sync mode only the synchronous standby, so no acknowledged commit is lost. A node whose "
              "timeline forked off the cluster's history refuses to start (repair it with "
              "cls_repair_by_pg_rewind). Passwords come from a passfile, never from the CIB."),
    params=[
        P("pgctl", default="/usr/lib/postgresql/15/bin/pg_ctl", shortdesc="pg_ctl path",
          longdesc="Path of pg_ctl; pg_controldata is taken from the same directory."),
        P("psql", deprecated=True, shortdesc="Unused (psql path)",
          longdesc="Accepted for pha4pgsql configurations and ignored: the agent speaks SQL itself."),
        P("pgdata", default="/var/lib/postgresql/15/main", shortdesc="Data directory",
          longdesc="PGDATA: owned by pgdba, mode 0700 or 0750."),
        P("pgdba", default="postgres", shortdesc="Database superuser and OS user",
          longdesc="OS user that runs PostgreSQL; the agent connects as this database user."),
        P("pghost", deprecated=True, replaced_with=("socketdir",), shortdesc="Unused (host)",
          longdesc="Accepted and ignored: the agent connects over the unix socket in socketdir."),
        P("pgport", "integer", default=5432, check=_port, shortdesc="Port"),
        P("pgdb", default="postgres", shortdesc="Database the agent connects to"),
        P("config", shortdesc="postgresql.conf path",
          longdesc="Path of postgresql.conf; default PGDATA/postgresql.conf."),
        P("socketdir", default="/var/run/postgresql", shortdesc="Unix socket directory"),
        P("start_opt", default="", shortdesc="Extra postgres options for start"),
        P("ctl_opt", default="", shortdesc="Extra pg_ctl options"),
        P("logfile", default="/dev/null", shortdesc="Server log file (pg_ctl -l)"),
        P("tmpdir", default="/run/pha/pgsql", shortdesc="Agent state directory",
          longdesc="Where the agent keeps its small state file (mode 0700)."),
        P("rep_mode", "select", options=("async", "sync"), default="async",
          shortdesc="Replication mode",
          longdesc=("sync: the primary keeps one synchronous standby, and only it may be promoted; "
                    "async: the most advanced streaming standby is promoted.")),
        P("node_list", required=True, shortdesc="Cluster nodes (space separated)",
          longdesc="Pacemaker node names of the nodes running this resource; each standby's "
                   "application_name is its node name."),
        P("master_ip", required=True, shortdesc="Writer VIP the standbys stream from"),
        P("repuser", default="postgres", shortdesc="Replication user"),
        P("passfile", shortdesc="libpq passfile for replication",
          longdesc="Passfile (mode 0600, owned by pgdba) used by primary_conninfo; passwords never "
                   "go into the CIB or argv."),
        P("primary_conninfo_opt", default="keepalives_idle=10 keepalives_interval=2 keepalives_count=3",
          shortdesc="Extra primary_conninfo options"),
        P("restore_command", default="", shortdesc="restore_command for standbys"),
        P("replication_slot_name", default="", shortdesc="Replication slot name prefix",
          longdesc="When set, each standby streams through the physical slot PREFIX_<node>, "
                   "which the primary creates."),
        P("xlog_check_count", "integer", default=2, check=_positive,
          shortdesc="Election rounds",
          longdesc="With no primary, the standbys elect the most advanced one as soon as every node "
                   "of node_list has published its WAL position, or after this many monitors."),
        P("check_wal_receiver", "boolean", default=True, shortdesc="Publish the WAL receiver state"),
        P("stop_escalate", "integer", default=10, check=_positive,
          shortdesc="Seconds of fast shutdown before immediate"),
        P("wal_timeout", "integer", default=5, check=_positive,
          shortdesc="Seconds before a silent replication peer counts as gone",
          longdesc="wal_sender_timeout and wal_receiver_timeout: how soon the primary notices a "
                   "standby it cannot reach (then the sync fallback can act) and a standby its primary."),
        P("max_lag", "integer", default=0, check=_not_negative,
          shortdesc="Bytes of replay lag that make a standby unpromotable (0: no limit)"),
        P("monitor_user", shortdesc="Unused (monitor user)", deprecated=True, replaced_with=("pgdba",),
          longdesc="Accepted and ignored: the agent monitors as pgdba over the unix socket."),
        P("monitor_password", shortdesc="Unused (monitor password)", deprecated=True,
          replaced_with=("passfile",), longdesc="Accepted and ignored: passwords belong in a passfile."),
        P("monitor_sql", default="select 1", shortdesc="SQL run by every monitor"),
        P("enable_distlock", "boolean", default=False, shortdesc="Require a lock to be primary",
          longdesc="For 2-node clusters: promotion and the async fallback need the lock, and a primary "
                   "that loses it stops. `pha distlock` is the standard lock command."),
        P("distlock_lock_cmd", default="", shortdesc="Command that takes or renews the lock (exit 0)",
          longdesc="Run at every primary monitor and before a promotion. Exit 0: the lock is ours; 1: "
                   "another holds it (a promotion waits for it, within the promote timeout); anything "
                   "else: failed (a promotion is refused at once). A `pha distlock ...` command (its "
                   "first word's name is pha) runs inside the agent, without a process; any other runs "
                   "with a 10 s timeout. The lease must outlast the monitor interval."),
        P("distlock_unlock_cmd", default="", shortdesc="Command that releases the lock"),
    ],
    actions=[
        ocf.Action("start", timeout=120),
        ocf.Action("stop", timeout=120),
        ocf.Action("promote", timeout=120),
        ocf.Action("demote", timeout=120),
        ocf.Action("notify", timeout=90),
        ocf.Action("monitor", timeout=30, interval=3, depth=0),
        ocf.Action("monitor", timeout=30, interval=2, depth=0, role="Promoted"),
        ocf.Action("meta-data", timeout=5),
        ocf.Action("validate-all", timeout=30),
    ],
)


# --- context --------------------------------------------------------------------------
class Ctx:
    """Everything an action needs, built once per invocation."""

    def __init__(self, res: ocf.Resource) -> None:
        from pha import crm
        from pha.pgsql.instance import Instance
        p = res.params
        self.res = res
        self.log = res.log
        self.crm = crm.Crm()
        self.pg = Instance(str(p["pgctl"]), str(p["pgdata"]), int(p["pgport"]), str(p["socketdir"]),
                           str(p["pgdba"]), str(p["pgdb"]), p["config"], str(p["start_opt"]),
                           str(p["ctl_opt"]), str(p["logfile"]) if p["logfile"] else None)
        self.nodes = str(p["node_list"]).split()
        self.me = res.node_name
        self.sync = p["rep_mode"] == "sync"
        self.rsc = res.instance.split(":")[0]
        self.state_path = os.path.join(str(p["tmpdir"]), f"{self.rsc}.state")

    # local state: what was last published, election rounds...
    def load(self) -> dict:
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def save(self, state: dict) -> None:
        os.makedirs(os.path.dirname(self.state_path), mode=0o700, exist_ok=True)
        tmp = f"{self.state_path}.{os.getpid()}.tmp"   # two actions at once (a probe by hand) each have one
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path)

    def publish(self, state: dict, node: str, name: str, value: Optional[str],
                lifetime: str = "reboot") -> None:
        """Set a node attribute, skipping the call when the value is unchanged."""
        key = f"{node}/{name}/{lifetime}"
        cache = state.setdefault("published", {})
        if cache.get(key, "\0") == value:
            return
        if value is None:
            self.crm.delete_node_attr(name, node=node, lifetime=lifetime)
        else:
            self.crm.set_node_attr(name, value, node=node, lifetime=lifetime)
        cache[key] = value

    def score(self, node: str, value: int) -> None:
        """Set a promotion score (never cached: the primary sets them too)."""
        self.crm.set_promotion_score(_score_text(value), resource=self.rsc, node=node)

    def repl_info(self) -> Optional[decide.ReplInfo]:
        return decide.ReplInfo.parse(self.crm.get_property(REPL_INFO, set_name=PROPERTY_SET))

    def lock_held(self) -> Optional[bool]:
        """Take or renew the lock: True/False with enable_distlock, None without one."""
        if not self.res.params["enable_distlock"]:
            return None
        return self.res.cached("lock", lambda: self.take_lock() == 0)  # once per action

    def take_lock(self) -> int:
        """distlock_lock_cmd's exit code: 0 taken or renewed, 1 held by another, other: failed."""
        return self._lock_cmd("distlock_lock_cmd")

    def unlock(self) -> None:
        if self.res.params["enable_distlock"] and self.res.params["distlock_unlock_cmd"]:
            if self._lock_cmd("distlock_unlock_cmd") != 0:
                self.log.warning("could not release the distributed lock")

    def _lock_cmd(self, param: str) -> int:
        """Run a lock command, return its exit code: `pha distlock ...` in this
        process (the monitor renews the lease every time), any other command
        as a process."""
        import shlex
        import subprocess
        argv = shlex.split(str(self.res.params[param]))
        if len(argv) > 1 and os.path.basename(argv[0]) == "pha" and argv[1] == "distlock":
            from pha import distlock
            return distlock.run_inline(argv[2:])
        try:
            return subprocess.run(argv, capture_output=True, timeout=10).returncode
        except (OSError, subprocess.TimeoutExpired):
            return 2


def _score_text(value: int) -> str:
    if value >= decide.INFINITY:
        return "INFINITY"
    if value <= -decide.INFINITY:
        return "-INFINITY"
    return str(value)


def ctx_of(res: ocf.Resource) -> Ctx:
    return res.cached("ctx", lambda: Ctx(res))


# --- validation -------------------------------------------------------------------------
@AGENT.validator
def validate(res: ocf.Resource) -> None:
    import pwd
    p = res.params
    if not os.access(str(p["pgctl"]), os.X_OK):
        raise ocf.OCFError(ocf.ERR_INSTALLED, f"parameter pgctl={p['pgctl']}: not an executable")
    try:
        account = pwd.getpwnam(str(p["pgdba"]))
    except KeyError:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgdba={p['pgdba']}: no such user") from None
    pgdata = str(p["pgdata"])
    try:
        st = os.stat(pgdata)
    except OSError:
        # This node's problem (a wiped disk, say): ERR_INSTALLED keeps the others running.
        raise ocf.OCFError(ocf.ERR_INSTALLED, f"parameter pgdata={pgdata}: no such directory") from None
    if not os.path.exists(os.path.join(pgdata, "PG_VERSION")):
        raise ocf.OCFError(ocf.ERR_INSTALLED, f"parameter pgdata={pgdata}: not a PostgreSQL data directory")
    if st.st_uid != account.pw_uid or st.st_mode & 0o027:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgdata={pgdata}: must be owned by "
                           f"{p['pgdba']} with mode 0700 or 0750")
    with open(os.path.join(pgdata, "PG_VERSION")) as f:
        version = int(f.read().strip().split(".")[0])
    if version < 12:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgdata={pgdata}: PostgreSQL {version}; pha needs 12+")
    nodes = str(p["node_list"]).split()
    if res.node_name not in nodes:
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"parameter node_list={p['node_list']} does not hold this node ({res.node_name})")
    import ipaddress
    try:
        ipaddress.ip_address(str(p["master_ip"]))
    except ValueError:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter master_ip={p['master_ip']} is not an address") from None
    if p["enable_distlock"] and not p["distlock_lock_cmd"]:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, "parameter distlock_lock_cmd is required with enable_distlock")
    passfile = p["passfile"]
    if passfile and (not os.path.exists(str(passfile)) or os.stat(str(passfile)).st_mode & 0o077):
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"parameter passfile={passfile}: missing, or readable by group/others")


# --- pha.conf -----------------------------------------------------------------------------
def conf_settings(ctx: Ctx, sync_names: str, read_only: bool = False) -> dict[str, str]:
    p = ctx.res.params
    # read-write: never stream from a standby that still holds master_ip (a demoted
    # primary restarts as a standby before the writer VIP leaves it).
    conninfo = (f"host={p['master_ip']} port={p['pgport']} user={p['repuser']} "
                f"application_name={ctx.me} connect_timeout=5 target_session_attrs=read-write "
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
        settings["primary_slot_name"] = f"{p['replication_slot_name']}_{ctx.me}"
    if read_only:
        settings["default_transaction_read_only"] = "on"
    return settings


def check_auto_conf(ctx: Ctx) -> None:
    """A primary_conninfo in postgresql.auto.conf overrides pha.conf: refuse it."""
    stale = ctx.pg.auto_conf_settings().get("primary_conninfo")
    if stale:
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"{ctx.pg.pgdata}/postgresql.auto.conf sets primary_conninfo={stale} "
                           "(pg_basebackup -R?), which overrides pha's; run ALTER SYSTEM RESET "
                           "primary_conninfo or remove that line")


# --- start ---------------------------------------------------------------------------------
@AGENT.handler("start")
def start(res: ocf.Resource) -> int:
    ctx = ctx_of(res)
    check_auto_conf(ctx)
    if ctx.pg.is_running():
        return ocf.SUCCESS if role(ctx) else ocf.ERR_GENERIC
    if ctx.pg.port_in_use():
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgport={ctx.pg.port}: another server listens "
                           f"on it ({ctx.pg.socket_path})")
    info = ctx.repl_info()
    control = ctx.pg.controldata()
    local_tl = max(int(control.get("Latest checkpoint's TimeLineID", "0")), ctx.pg.wal_timeline())
    # The checkpoint is where this node's WAL ends at the least; the monitor
    # checks the true end once the standby has replayed it.
    local_lsn = decide.parse_lsn(control.get("Latest checkpoint location", "0/0"))
    clean = control.get("Database cluster state") == "shut down"
    guard(ctx, info, local_tl, local_lsn)
    # The recorded primary, cleanly shut down on the recorded timeline, comes back
    # as a held (read-only) primary: its promotion makes no new timeline.
    held = bool(info and info.primary == ctx.me and local_tl == info.timeline and clean)
    ctx.pg.ensure_included()
    ctx.pg.write_conf(conf_settings(ctx, decide.sync_standby_names(ctx.nodes, ctx.me) if ctx.sync and held
                                    else "", read_only=held))
    ctx.pg.set_standby(not held)
    timeout = max(10, int(res.meta("timeout", "120000")) / 1000 - 10)
    from pha.pgsql.instance import PgError
    try:
        ctx.pg.start(timeout)
        ctx.pg.wait_ready(timeout)
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(err)) from None
    state = {"held": held, "rounds": 0}  # and a fresh cache of published attributes
    ctx.publish(state, ctx.me, ATTR_STATUS, decide.HS_ALONE)
    if held:
        ctx.score(ctx.me, decide.PRIMARY_SCORE)
        res.log.info(f"started as the recorded primary (timeline {local_tl}), read-only until promoted")
    else:
        publish_position(ctx, state)
        res.log.info("started as a standby")
    ctx.save(state)
    return ocf.SUCCESS


def guard(ctx: Ctx, info: Optional[decide.ReplInfo], timeline: int, lsn: int) -> None:
    """Refuse a node whose WAL forked off the cluster's history.

    A verdict is remembered (next to the agent's state) until REPL_INFO
    changes or the node is repaired, so a restart cannot slip past it.
    """
    marker = ctx.state_path + ".forked"
    try:
        with open(marker) as f:
            remembered, why = f.read().split("\n", 1)
        if info and remembered == info.render() and ctx.pg.wal_timeline() < info.timeline:
            raise ocf.OCFError(ocf.ERR_GENERIC, why)
    except (OSError, ValueError):
        pass
    history_text = ctx.pg.history(info.timeline) if info else None
    history = decide.parse_history(history_text) if history_text else None
    why = decide.forked(timeline, lsn, info, history)
    if why and info:
        # First, as Pacemaker keeps only ~128 characters of an exit reason.
        why = "repair with cls_repair_by_pg_rewind: " + why
        os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
        with open(marker, "w") as f:
            f.write(info.render() + "\n" + why)
        raise ocf.OCFError(ocf.ERR_GENERIC, why)


# --- stop ------------------------------------------------------------------------------------
@AGENT.handler("stop")
def stop(res: ocf.Resource) -> int:
    ctx = ctx_of(res)
    quorate = _quorate(ctx)
    from pha.pgsql.instance import PgError
    try:
        # Without quorum nobody can be waiting for our WAL: no use waiting for walsenders.
        ctx.pg.stop(int(res.params["stop_escalate"]), immediate=not quorate)
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(err)) from None
    if ctx.load().get("primary"):
        ctx.unlock()
    try:
        ctx.crm.delete_promotion_score(resource=ctx.rsc, node=ctx.me)  # a stopped node is not promotable
    except Exception as err:
        res.log.warning(f"could not delete this node's promotion score: {err}")
    state = ctx.load()
    try:
        ctx.publish(state, ctx.me, ATTR_STATUS, decide.STOP)
    except Exception as err:  # the cluster may be going away with us
        res.log.warning(f"could not publish {ATTR_STATUS}: {err}")
    state.pop("held", None)
    ctx.save(state)
    return ocf.SUCCESS


def _quorate(ctx: Ctx) -> bool:
    try:
        return ctx.crm.has_quorum(timeout=5)
    except Exception:
        return False


# --- monitor ------------------------------------------------------------------------------------
@AGENT.handler("monitor")
def monitor(res: ocf.Resource) -> int:
    """A failed primary reports it and writes nothing: a score written beside
    the failure held Pacemaker's reaction back by a second (measured); its
    stop deletes the score, so recovery promotes the sync standby."""
    ctx = ctx_of(res)
    if not ctx.pg.is_running():
        return ocf.NOT_RUNNING
    try:
        with ctx.pg.connect(timeout=5) as conn:
            conn.execute(str(res.params["monitor_sql"]))
            in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()[0]
            state = ctx.load()
            if not in_recovery and not state.get("held"):
                return monitor_primary(ctx, conn, state)
            return monitor_standby(ctx, conn, state, held=bool(state.get("held")))
    except ocf.OCFError:
        raise
    except Exception as err:
        if res.is_probe:
            raise ocf.OCFError(ocf.ERR_GENERIC, f"PostgreSQL runs but does not answer: {err}") from None
        failed = ocf.FAILED_PROMOTED if ctx.load().get("primary") else ocf.ERR_GENERIC
        raise ocf.OCFError(failed, f"PostgreSQL does not answer: {err}") from None


def monitor_primary(ctx: Ctx, conn, state: dict) -> int:
    rows = conn.execute(
        "select application_name, state, sync_state,"
        " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint"
        " from pg_stat_replication").fetchall()
    standbys = [decide.Standby(r[0], r[1], r[2], int(r[3])) for r in rows]
    views = decide.standby_views(ctx.nodes, ctx.me, standbys, ctx.sync, int(ctx.res.params["max_lag"]))
    views[ctx.me] = decide.StandbyView(decide.PRI, decide.LATEST, decide.PRIMARY_SCORE)
    state["primary"] = True
    if ctx.lock_held() is False:
        # Someone else may be promoted now: never stay a writable primary without the lease.
        step_aside(ctx)
        ctx.pg.stop(1, immediate=True)
        raise ocf.OCFError(ocf.ERR_GENERIC, "lost the distributed lock: PostgreSQL stopped")
    if time.time() - state.get("promoted_at", 0) < SETTLE:
        return ocf.RUNNING_PROMOTED
    # Other nodes write some of these too (start, stop): compare with what the
    # cluster holds now, one crm_mon, and write only the differences.
    from pha import crm
    cluster = crm.crm_mon(ctx.crm)
    if not cluster.summary.quorum:
        # A minority partition writes nothing: its configuration changes could
        # win the CIB merge when the partition heals and undo the majority's.
        return ocf.RUNNING_PROMOTED
    reassert_repl_info(ctx, state)
    views = decide.mark_stopped(views, cluster.resource_nodes(ctx.rsc))
    actual = cluster.node_attributes
    score_name = f"master-{ctx.rsc}"
    for node, view in views.items():
        now = actual.get(node, {})
        if now.get(ATTR_STATUS) != view.status:
            ctx.crm.set_node_attr(ATTR_STATUS, view.status, node=node, lifetime="reboot")
        if now.get(ATTR_DATA) != view.data_status:
            ctx.crm.set_node_attr(ATTR_DATA, view.data_status, node=node, lifetime="forever")
        if now.get(score_name) != _score_text(view.score):
            ctx.crm.set_promotion_score(_score_text(view.score), resource=ctx.rsc, node=node)
    if "baseline" in state:
        ctx.crm.set_node_attr(ATTR_BASELINE, state.pop("baseline"), node=ctx.me, lifetime="reboot")
        for standby_only in (ATTR_LSN, ATTR_TIMELINE, ATTR_RECEIVER, ATTR_LAG):
            ctx.publish(state, ctx.me, standby_only, None)
    if ctx.res.params["replication_slot_name"]:
        ensure_slots(ctx, conn)
    if ctx.sync:
        manage_sync(ctx, conn, state, sum(1 for s in standbys if s.state == "streaming"))
    ctx.save(state)
    return ocf.RUNNING_PROMOTED


def reassert_repl_info(ctx: Ctx, state: dict) -> None:
    """Put back this primary's REPL_INFO if the cluster lost it (a CIB merge
    after a partition can bring back an older configuration)."""
    mine = state.get("repl_info")
    if mine and ctx.crm.get_property(REPL_INFO, set_name=PROPERTY_SET) != mine:
        ctx.crm.set_property(REPL_INFO, mine, set_name=PROPERTY_SET)
        ctx.log.warning(f"REPL_INFO was not {mine}: written again")


def manage_sync(ctx: Ctx, conn, state: dict, streaming: int) -> None:
    """Keep one sync standby; go async only when safe, come back when one streams."""
    now = time.time()
    wanted_sync = decide.sync_standby_names(ctx.nodes, ctx.me)
    current = conn.execute("select current_setting('synchronous_standby_names')").fetchone()[0]
    if streaming and current != wanted_sync:
        target = wanted_sync
    elif not streaming and current and decide.may_fall_back_to_async(
            streaming, _quorate(ctx), ctx.lock_held(), now - state.get("promoted_at", 0), FALLBACK_GRACE):
        target = ""
    else:
        return
    ctx.pg.write_conf(conf_settings(ctx, target))
    conn.execute("select pg_reload_conf()")
    ctx.log.info(f"synchronous_standby_names = '{target}'" + ("" if target else ": no standby, async"))


def ensure_slots(ctx: Ctx, conn) -> None:
    prefix = ctx.res.params["replication_slot_name"]
    have = {r[0] for r in conn.execute("select slot_name from pg_replication_slots").fetchall()}
    for node in ctx.nodes:
        slot = f"{prefix}_{node}"
        if node != ctx.me and slot not in have:
            conn.execute("select pg_create_physical_replication_slot(%s)", (slot,))


def monitor_standby(ctx: Ctx, conn, state: dict, held: bool) -> int:
    if held:
        return ocf.SUCCESS  # a held primary: promotable at once (score set by start)
    receiver = conn.execute(
        "select coalesce((select status from pg_stat_wal_receiver), 'stopped'),"
        " coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,"
        " greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,"
        " (select timeline_id from pg_control_checkpoint())").fetchone()
    status, lag, lsn_text = receiver[0], max(0, int(receiver[1])), receiver[2]
    timeline = max(int(receiver[3]), ctx.pg.wal_timeline())
    if ctx.res.params["check_wal_receiver"]:
        # Publish a change only once two monitors agree: a failover's passing
        # "stopped" would otherwise abort Pacemaker's transition. Lag in MiB steps.
        if state.get("receiver_seen") == status:
            ctx.publish(state, ctx.me, ATTR_RECEIVER, status)
        state["receiver_seen"] = status
        ctx.publish(state, ctx.me, ATTR_LAG, str(lag >> 20 << 20))
    lsn = decide.parse_lsn(lsn_text) if lsn_text else 0
    if status == "streaming":
        state["rounds"] = 0
    else:  # a forked standby cannot stream: this is where the guard catches it running
        guard(ctx, ctx.repl_info(), timeline, lsn)
        elect_if_leaderless(ctx, state, timeline, lsn)
    ctx.save(state)
    return ocf.SUCCESS


def publish_position(ctx: Ctx, state: dict, conn=None) -> None:
    """Publish this standby's timeline and WAL position for elections."""
    if conn is None:
        with ctx.pg.connect() as fresh:
            return publish_position(ctx, state, fresh)
    lsn_text, timeline = conn.execute(
        "select greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,"
        " (select timeline_id from pg_control_checkpoint())").fetchone()
    ctx.publish(state, ctx.me, ATTR_LSN, decide.lsn_attr(decide.parse_lsn(lsn_text or "0/0")))
    ctx.publish(state, ctx.me, ATTR_TIMELINE, str(max(timeline, ctx.pg.wal_timeline())))


def elect_if_leaderless(ctx: Ctx, state: dict, timeline: int, lsn: int) -> None:
    """With no primary and no promotable node, rank the standbys and write their
    scores: at once when every node of node_list has published its position,
    else after xlog_check_count monitors."""
    from pha import crm
    status = crm.crm_mon(ctx.crm)
    attrs = status.node_attributes
    online = set(status.online_nodes())
    score_name = f"master-{ctx.rsc}"
    # A primary, or a node Pacemaker can promote already (the sync standby the
    # last primary marked): no election, and no attribute churn to abort
    # Pacemaker's transition.
    if any(attrs.get(n, {}).get(ATTR_STATUS) == decide.PRI for n in ctx.nodes if n != ctx.me) or any(
            n in online and _promotable(attrs.get(n, {}).get(score_name)) for n in ctx.nodes):
        state["rounds"] = 0
        return
    ctx.publish(state, ctx.me, ATTR_LSN, decide.lsn_attr(lsn))
    ctx.publish(state, ctx.me, ATTR_TIMELINE, str(timeline))
    state["rounds"] = state.get("rounds", 0) + 1
    candidates, starting = [], []
    for node in ctx.nodes:
        a = attrs.get(node, {})
        if node == ctx.me:
            candidates.append(decide.Candidate(node, timeline, lsn, a.get(ATTR_DATA)))
        elif node in online and a.get(ATTR_LSN) and a.get(ATTR_STATUS, "").startswith("HS"):
            candidates.append(decide.Candidate(node, int(a.get(ATTR_TIMELINE, "0")),
                                               int(a[ATTR_LSN], 16), a.get(ATTR_DATA)))
        elif node in online and not a.get(ATTR_STATUS):
            starting.append(node)
    rounds = int(ctx.res.params["xlog_check_count"])
    if starting and state["rounds"] < 5 * rounds:
        ctx.log.info(f"no primary: waiting for {', '.join(starting)} to publish its position")
        return
    # Every node of node_list has published: decide now. Otherwise give the
    # missing ones xlog_check_count monitors to come.
    if len(candidates) < len(ctx.nodes) and state["rounds"] < rounds:
        return
    ranking = decide.elect(candidates, ctx.nodes, ctx.sync)
    # Every elector writes the whole ranking (the same from the same data), so
    # the winner is promotable at once, even before its own monitor runs.
    for candidate in candidates:
        ctx.score(candidate.node, decide.election_score(candidate.node, ranking))
    ctx.log.info(f"no primary: election ranks {ranking or 'nobody'}")


def _promotable(score: Optional[str]) -> bool:
    return score is not None and score != "-INFINITY" and (score == "INFINITY" or int(score) > 0)


def role(ctx: Ctx) -> Optional[str]:
    """'primary', 'standby' or None (not answering)."""
    try:
        with ctx.pg.connect(timeout=3) as conn:
            return "standby" if conn.execute("select pg_is_in_recovery()").fetchone()[0] else "primary"
    except Exception:
        return None


def step_aside(ctx: Ctx) -> None:
    """This node gives up its promotion score: it must not be (or stay) the primary now."""
    try:
        ctx.crm.set_promotion_score("-INFINITY", resource=ctx.rsc, node=ctx.me)
    except Exception as err:
        ctx.log.warning(f"could not lower this node's promotion score: {err}")


# --- promote / demote ------------------------------------------------------------------------------
@AGENT.handler("promote")
def promote(res: ocf.Resource) -> int:
    ctx = ctx_of(res)
    state = ctx.load()
    wait_for_lock(ctx)
    with ctx.pg.connect() as conn:
        in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()[0]
        if state.get("held") and not in_recovery:
            return finish_held_promotion(ctx, conn, state)
        if not in_recovery:
            return ocf.SUCCESS
        check_best(ctx)
        wait_replayed(conn, seconds=10)
        conn.execute("select pg_promote(true, 60)")
        timeline, baseline = conn.execute(
            "select (select timeline_id from pg_control_checkpoint()), pg_current_wal_lsn()::text").fetchone()
    timeline = _current_timeline(ctx, timeline)
    history = ctx.pg.history(timeline)
    switches = decide.parse_history(history) if history else {}
    switch_lsn = switches.get(timeline - 1, decide.parse_lsn(baseline))
    info = decide.ReplInfo(ctx.me, timeline, switch_lsn)
    ctx.crm.set_property(REPL_INFO, info.render(), set_name=PROPERTY_SET)
    state["repl_info"] = info.render()
    became_primary(ctx, state, baseline)
    res.log.info(f"promoted: REPL_INFO={info.render()}")
    return ocf.SUCCESS


def wait_for_lock(ctx: Ctx) -> None:
    """Promotion needs the lock. While another node's lease is unexpired (exit
    1), wait for it within the action's timeout: the old primary stops once it
    cannot renew. Any other failure (the lock server is out of reach, as on
    the cut-off side of a 2-node cluster) refuses at once, and this node
    steps aside."""
    if not ctx.res.params["enable_distlock"]:
        return
    deadline = time.monotonic() + max(5.0, int(ctx.res.meta("timeout", "60000")) / 1000 - 10)
    code = ctx.take_lock()
    if code == 1:
        ctx.log.info("waiting for the distributed lock before promoting")
    while code == 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        code = ctx.take_lock()
    if code != 0:
        step_aside(ctx)
        why = "held by another node" if code == 1 else f"distlock_lock_cmd failed (exit {code})"
        raise ocf.OCFError(ocf.ERR_GENERIC, f"not promoting without the distributed lock: {why}")


def _current_timeline(ctx: Ctx, fallback: int) -> int:
    """The timeline after promotion (the checkpoint's may lag behind)."""
    try:
        with ctx.pg.connect() as conn:
            name = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        return int(name[:8], 16)
    except Exception:
        return fallback


def finish_held_promotion(ctx: Ctx, conn, state: dict) -> int:
    """The recorded primary, running read-only: make it writable, no new timeline."""
    ctx.pg.write_conf(conf_settings(ctx, decide.sync_standby_names(ctx.nodes, ctx.me) if ctx.sync else ""))
    conn.execute("select pg_reload_conf()")
    baseline = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
    state.pop("held", None)
    info = ctx.repl_info()
    if info:
        state["repl_info"] = info.render()
    became_primary(ctx, state, baseline)
    ctx.log.info("promoted the recorded primary in place: same timeline")
    return ocf.SUCCESS


def became_primary(ctx: Ctx, state: dict, baseline: str) -> None:
    """After promotion: the primary's own score and the sync setting now, the
    other attributes at the first monitor after SETTLE seconds (every CIB
    write aborts the transition that is about to start the writer VIP).

    The score cannot wait: the election left this node one point ahead of
    the runner-up, and any other preference Pacemaker adds (a colocated
    resource's stickiness) could move the Promoted role over that margin."""
    state.update(primary=True, rounds=0, promoted_at=time.time(), published={}, baseline=baseline)
    ctx.score(ctx.me, decide.PRIMARY_SCORE)
    ctx.pg.set_standby(False)
    if ctx.sync:
        ctx.pg.write_conf(conf_settings(ctx, decide.sync_standby_names(ctx.nodes, ctx.me)))
        with ctx.pg.connect() as conn:
            conn.execute("select pg_reload_conf()")
    ctx.save(state)


def check_best(ctx: Ctx) -> None:
    """Promote only the node with the best data: re-checked against what the others publish."""
    from pha import crm
    attrs = crm.crm_mon(ctx.crm).node_attributes
    mine = attrs.get(ctx.me, {}).get(ATTR_DATA)
    if ctx.sync and mine and mine not in decide.CANDIDATE_DATA:
        step_aside(ctx)
        raise ocf.OCFError(ocf.ERR_GENERIC, f"not promoting: this node's data is {mine}, not the sync standby's")
    for node in ctx.nodes:
        if node != ctx.me and attrs.get(node, {}).get(ATTR_STATUS) == decide.PRI:
            raise ocf.OCFError(ocf.ERR_GENERIC, f"not promoting: {node} is still the primary")


def wait_replayed(conn, seconds: float) -> None:
    """Let replay reach what was received before promoting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        behind = conn.execute("select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").fetchone()[0]
        if not behind:
            return
        time.sleep(0.05)


def stopping_here(ctx: Ctx) -> bool:
    """Whether this demote is followed by a stop of this instance: the clone is
    being disabled, or this node shuts down. (With notify=true the pre-demote
    notification says so too; this works without notifications.)"""
    from pha import crm
    try:
        status = crm.crm_mon(ctx.crm)
    except Exception:
        return False
    clone = next((r for r in status.resources if r.clone and r.id.split(":")[0] == ctx.rsc), None)
    me = status.node(ctx.me)
    return bool((clone and clone.target_role == "Stopped") or (me and me.shutdown))


@AGENT.handler("demote")
def demote(res: ocf.Resource) -> int:
    ctx = ctx_of(res)
    from pha.pgsql.instance import PgError
    state = ctx.load()
    if not ctx.pg.is_running():
        # A failed primary: Pacemaker stops (and maybe restarts) it next; starting it
        # as a standby here would only delay the promotion elsewhere.
        state.update(primary=False, held=False, published={}, repl_info=None)
        ctx.save(state)
        res.log.info("demoted a primary that was not running")
        return ocf.SUCCESS
    if state.pop("stop_follows", False) or stopping_here(ctx):
        # This transition stops us too: shut down as the primary, cleanly, so a
        # restart of the whole cluster brings this node back without a new timeline.
        try:
            ctx.pg.stop(int(res.params["stop_escalate"]), immediate=not _quorate(ctx))
        except PgError as err:
            raise ocf.OCFError(ocf.ERR_GENERIC, str(err)) from None
        state.update(primary=False, held=False, published={}, repl_info=None)
        ctx.save(state)
        ctx.unlock()
        res.log.info("demoted by stopping: the same transition stops this node")
        return ocf.SUCCESS
    try:
        ctx.pg.stop(int(res.params["stop_escalate"]), immediate=not _quorate(ctx))
        ctx.pg.write_conf(conf_settings(ctx, ""))
        ctx.pg.set_standby(True)
        state.update(primary=False, held=False, rounds=0, published={}, repl_info=None)
        ctx.save(state)
        ctx.unlock()
        ctx.score(ctx.me, 1)  # no longer the primary's 1000; the new primary rates it
        ctx.publish(state, ctx.me, ATTR_STATUS, decide.HS_ALONE)
        timeout = max(10, int(res.meta("timeout", "120000")) / 1000 - 10)
        ctx.pg.start(timeout)
        ctx.pg.wait_ready(timeout)
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(err)) from None
    res.log.info("demoted: running as a standby of " + str(res.params["master_ip"]))
    return ocf.SUCCESS


# --- notify ------------------------------------------------------------------------------------------
@AGENT.handler("notify")
def notify(res: ocf.Resource) -> int:
    ctx = ctx_of(res)
    n = res.notify
    if n is None or not ctx.pg.is_running():
        return ocf.SUCCESS
    res.log.debug(f"notify {n.type}-{n.operation}: {dict(n.hosts)}")
    if n.is_pre and n.operation == "demote" and ctx.me in n["demote"]:
        state = ctx.load()
        state["stop_follows"] = ctx.me in n["stop"]
        ctx.save(state)
    elif n.is_post and n.operation == "promote" and ctx.me not in n["promote"]:
        reconnect_receiver(ctx)
    return ocf.SUCCESS


def reconnect_receiver(ctx: Ctx) -> None:
    """Make the WAL receiver reconnect now, to the new primary behind master_ip."""
    import signal
    try:
        with ctx.pg.connect() as conn:
            row = conn.execute("select pid from pg_stat_wal_receiver").fetchone()
        if row and row[0]:
            os.kill(int(row[0]), signal.SIGTERM)
    except Exception as err:
        ctx.log.warning(f"could not restart the WAL receiver: {err}")
