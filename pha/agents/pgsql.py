"""ocf:pha:pgsql: PostgreSQL 12+ as a promotable clone with streaming replication.

One primary and N hot standbys. The primary's monitor reads
pg_stat_replication, publishes every standby's state and promotion score,
chooses the synchronous standby (synchronous_standby_names in pha.conf,
reloaded, never restarted) and falls back to async only while it holds
quorum. Standbys publish their WAL position; with no primary they elect the
most advanced one. Every promotion records REPL_INFO (primary|timeline|
switch-LSN) and a node whose history forked off it refuses to start.

This module is the declaration (parameters, actions) and the action
table; the agent lives in pha.pgsql (see docs/architecture.md): every rule
in pha.pgsql.decide, the per-node context in pha.pgsql.context, one module
per concern for the actions. Those are imported by the handlers only, so
meta-data pays for none of them (nor for pha.crm or psycopg).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pha import __version__, ocf
from pha.pgsql.names import ATTR_STATUS  # noqa: F401  (re-exported: the cluster builder's reader rule)

if TYPE_CHECKING:
    from pha.pgsql.context import Ctx


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
        P("pgctl", default="", shortdesc="pg_ctl path (empty: PGDATA's version's)",
          longdesc="Empty (the default): the agent runs the programs of PGDATA's major version (its PG_VERSION "
                   "file), where the distribution installs them (/usr/lib/postgresql/N/bin, /usr/pgsql-N/bin), "
                   "else pg_config's or PATH's when they are that version. Set it only to run other programs: "
                   "postgres, pg_controldata, pg_rewind... are then taken from pg_ctl's directory (pg_ctl "
                   "itself is not run)."),
        P("psql", deprecated=True, shortdesc="Unused (psql path)",
          longdesc="Accepted for pha4pgsql configurations and ignored: the agent speaks SQL itself."),
        P("pgdata", required=True, shortdesc="Data directory",
          longdesc="PGDATA: owned by pgdba, mode 0700 or 0750. Required: the agent guesses no version "
                   "(Debian's is /var/lib/postgresql/N/main, the PGDG RPMs' /var/lib/pgsql/N/data)."),
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
        P("ctl_opt", default="", deprecated=True, shortdesc="Unused (extra pg_ctl options)",
          longdesc="Accepted for pha4pgsql configurations: pg_ctl is no longer run (the agent starts postgres "
                   "itself, without a shell), so these options are only checked to split into words. "
                   "Put server options in start_opt."),
        P("logfile", default="/dev/null", shortdesc="Server log file",
          longdesc="Where the postmaster's stdout and stderr go: opened for appending with pgdba's "
                   "rights, by the agent (no pg_ctl, no shell). A failed start quotes its last lines."),
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
          shortdesc="Seconds of fast shutdown before immediate",
          longdesc="stop asks for a fast shutdown, after this many seconds for an immediate one, and a few "
                   "seconds later kills (SIGKILL) the postmaster and every server process left: a stop "
                   "returns only once none is left."),
        P("wal_timeout", "integer", default=5, check=_positive,
          shortdesc="Seconds before a silent replication peer counts as gone",
          longdesc="wal_sender_timeout and wal_receiver_timeout: how soon the primary notices a "
                   "standby it cannot reach (then the sync fallback can act) and a standby its primary."),
        P("auto_rewind", "boolean", default=True, shortdesc="Rewind a forked node at start",
          longdesc=("A node whose timeline forked off the cluster's history (an old primary that wrote WAL "
                    "the new primary never received) is rewound from the primary by its start (pg_rewind), "
                    "then starts as a standby. The WAL undone is kept first under rewind_keep_dir with a "
                    "summary of its commits (in sync mode none was acknowledged; in async mode some may "
                    "have been). The node attribute pgsql-rewound says when, how many bytes and where. "
                    "false: the start refuses and names cls_repair_by_pg_rewind.")),
        P("rewind_keep_dir", default="/var/lib/pha/rewind", shortdesc="Where rewound WAL is kept",
          longdesc="Root's directory (mode 0700, outside PGDATA, on persistent storage): one subdirectory "
                   "per rewind, with the diverged WAL segments (up to 1 GiB) and summary.txt."),
        P("rewind_reclone", "boolean", default=False, shortdesc="Re-clone when a rewind cannot help",
          longdesc="When pg_rewind cannot repair the node (no wal_log_hints nor checksums, pg_rewind "
                   "failed), copy the primary afresh with pg_basebackup; the old data directory is moved "
                   "aside (PGDATA.pha-old-<time>), never deleted. The start timeout must cover the copy."),
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


# --- the action table -------------------------------------------------------------------
def ctx_of(res: ocf.Resource) -> "Ctx":
    """The action's context, wired by pha.pgsql.context.build (unit tests replace it)."""
    from pha.pgsql import context
    return res.cached("ctx", lambda: context.build(res))


@AGENT.validator
def validate(res: ocf.Resource) -> None:
    from pha.pgsql import checks
    checks.validate(res)


@AGENT.handler("start")
def start(res: ocf.Resource) -> int:
    from pha.pgsql import startstop
    return startstop.start(ctx_of(res))


@AGENT.handler("stop")
def stop(res: ocf.Resource) -> int:
    from pha.pgsql import startstop
    return startstop.stop(ctx_of(res))


@AGENT.handler("monitor")
def monitor(res: ocf.Resource) -> int:
    from pha.pgsql import monitor as monitoring
    return monitoring.monitor(ctx_of(res))


@AGENT.handler("promote")
def promote(res: ocf.Resource) -> int:
    from pha.pgsql import promotion
    return promotion.promote(ctx_of(res))


@AGENT.handler("demote")
def demote(res: ocf.Resource) -> int:
    from pha.pgsql import promotion
    return promotion.demote(ctx_of(res))


@AGENT.handler("notify")
def notify(res: ocf.Resource) -> int:
    from pha.pgsql import promotion
    return promotion.notify(ctx_of(res))
