"""The primary's monitor: the lock, every node's attributes and score, replication
slots and synchronous_standby_names."""
from __future__ import annotations

import os
import time
from typing import Any

from psycopg import sql

from pha import ocf
from pha.pgsql import decide, names
from pha.pgsql.context import Ctx, State
from pha.pgsql.process import PgError

CONF_RETRY = 60.0        # seconds between two attempts to put pha.conf in effect


def monitor_primary(ctx: Ctx, conn: Any, state: State) -> int:
    """RUNNING_PROMOTED, having published what changed. A Pacemaker CLI error
    (pha.crm.CrmError) propagates: the monitor logs it and the next one retries."""
    rows = conn.execute(
        "select application_name, state, sync_state,"
        " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint"
        " from pg_stat_replication where pid <> pg_backend_pid()").fetchall()   # not the monitor's walsender
    standbys = [decide.Standby(r[0], r[1], r[2], int(r[3])) for r in rows]
    state.primary = True
    ctx.guard_primary()      # a primary adopted, or one that outlived a lost /run
    if ctx.lock_held() is False:
        # Someone else may be promoted now: never stay a writable primary without the lease.
        ctx.step_aside()
        ctx.pg.stop(1, immediate=True)
        raise ocf.OCFError(ocf.ERR_GENERIC, "lost the distributed lock: PostgreSQL stopped")
    ensure_conf_in_effect(ctx, conn, state)
    if ctx.since_promotion(state) < decide.SETTLE:
        return ocf.RUNNING_PROMOTED
    # Other nodes write some of these too (start, stop): compare with what the
    # cluster holds now, one crm_mon, and write only the differences.
    cluster = ctx.crm.status()
    if not cluster.summary.quorum:
        # A minority partition writes nothing: its configuration changes could
        # win the CIB merge when the partition heals and undo the majority's.
        return ocf.RUNNING_PROMOTED
    reassert_repl_info(ctx, state)
    views = decide.cluster_views(ctx.nodes, ctx.me, standbys, ctx.sync, int(ctx.params["max_lag"]),
                                 cluster.resource_nodes(ctx.rsc))
    for write in decide.attribute_writes(views, cluster.node_attributes, ctx.score_name):
        if write.name == ctx.score_name:
            ctx.crm.set_promotion_score(write.value, resource=ctx.rsc, node=write.node)
        else:
            ctx.crm.set_node_attr(write.name, write.value, node=write.node, lifetime=write.lifetime)
    if state.baseline is not None:
        ctx.crm.set_node_attr(names.ATTR_BASELINE, state.baseline, node=ctx.me, lifetime="reboot")
        state.baseline = None
        for standby_only in names.STANDBY_ONLY_ATTRS:
            ctx.publish(state, standby_only, None)
    if ctx.params["replication_slot_name"]:
        ensure_slots(ctx, conn)
    if ctx.sync:
        manage_sync(ctx, conn, state, sum(1 for s in standbys if s.state == "streaming"))
    ctx.save(state)
    return ocf.RUNNING_PROMOTED


def ensure_conf_in_effect(ctx: Ctx, conn: Any, state: State) -> None:
    """pha.conf's settings are in effect: a primary the agent did not start (adopted
    by `pha setup`) may read a postgresql.conf without the include, and would never
    take synchronous_standby_names. One cheap query per monitor; when the include is
    missing it is added and PostgreSQL reloaded, at most once a minute."""
    rows = conn.execute("select name, setting, sourcefile from pg_settings"
                        " where name in ('config_file', 'synchronous_standby_names')").fetchall()
    found = {name: (setting, sourcefile) for name, setting, sourcefile in rows}
    sync_setting, source = found.get("synchronous_standby_names", ("", None))
    if source == ctx.pg.conf_path or time.time() - state.conf_checked_at < CONF_RETRY:
        return
    state.conf_checked_at = time.time()
    config_file = found.get("config_file", ("", None))[0]
    if config_file and os.path.abspath(config_file) != os.path.abspath(ctx.pg.config):
        ctx.log.warning(f"PostgreSQL reads {config_file}, not parameter config={ctx.pg.config}: pha.conf "
                        "is not in effect (no synchronous standby); set config to the file it reads")
        return
    try:
        if not os.path.exists(ctx.pg.conf_path):
            ctx.pg.write_conf(ctx.settings(sync_setting or ""))
        ctx.pg.ensure_included()
    except PgError as err:
        ctx.log.warning(f"pha.conf is not in effect and cannot be included: {err}")
        return
    conn.execute("select pg_reload_conf()")
    ctx.log.warning(f"pha.conf was not in effect (PostgreSQL not started by the agent?): included from "
                    f"{ctx.pg.config}, configuration reloaded")


def reassert_repl_info(ctx: Ctx, state: State) -> None:
    """Put back this primary's REPL_INFO if the cluster lost it (a CIB merge
    after a partition can bring back an older configuration)."""
    mine = state.repl_info
    current = ctx.crm.get_property(names.REPL_INFO, set_name=names.PROPERTY_SET)
    if decide.may_reassert_repl_info(mine, current, ctx.res.is_probe):
        ctx.set_repl_info(mine)
        ctx.log.warning(f"REPL_INFO was not {mine}: written again")
    elif mine and current != mine:
        ctx.log.error(f"REPL_INFO is {current}, not this primary's {mine}: left as it is")


def manage_sync(ctx: Ctx, conn: Any, state: State, streaming: int) -> None:
    """Keep one sync standby; go async only when safe, come back when one streams."""
    current = conn.execute("select current_setting('synchronous_standby_names')").fetchone()[0]
    target = decide.sync_target(streaming, current, ctx.primary_sync_names(), lambda: decide.may_fall_back_to_async(
        ctx.quorate(), ctx.lock_held(), ctx.since_promotion(state)))
    if target is None:
        return
    ctx.pg.write_conf(ctx.settings(target))
    conn.execute("select pg_reload_conf()")
    ctx.log.info(f"synchronous_standby_names = '{target}'" + ("" if target else ": no standby, async"))


def ensure_slots(ctx: Ctx, conn: Any) -> None:
    """The physical slot PREFIX_<node> of every other node exists."""
    prefix = ctx.params["replication_slot_name"]
    have = {r[0] for r in conn.execute("select slot_name from pg_replication_slots").fetchall()}
    for node in ctx.nodes:
        slot = f"{prefix}_{node}"
        if node != ctx.me and slot not in have:
            # Composed here: a walsender connection (the monitor's way in) has no bound parameters.
            conn.execute(sql.SQL("select pg_create_physical_replication_slot({})").format(sql.Literal(slot)))
