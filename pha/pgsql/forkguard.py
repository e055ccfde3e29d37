"""The fork guard: a node whose WAL forked off the cluster's history (REPL_INFO)
is refused, and the verdict is remembered until REPL_INFO changes or a repair."""
from __future__ import annotations

import os
from typing import Callable, Optional

from pha import files, ocf
from pha.pgsql import decide
from pha.pgsql.context import Ctx


def guard(ctx: Ctx, info: Optional[decide.ReplInfo], timeline: int, lsn: int) -> None:
    """Refuse (OCFError) a node whose WAL forked off the cluster's history; with
    auto_rewind the reason says a restart rewinds it (the start does)."""
    why = fork_verdict(ctx, info, timeline, lsn)
    if why and ctx.params["auto_rewind"]:
        why = why.removeprefix(REPAIR_HINT) + ": its start rewinds it"
    if why:
        raise ocf.OCFError(ocf.ERR_GENERIC, why)


REPAIR_HINT = "repair with cls_repair_by_pg_rewind: "


def fork_verdict(ctx: Ctx, info: Optional[decide.ReplInfo], timeline: int, lsn: int) -> Optional[str]:
    """Why this running node's WAL (received or written up to timeline/lsn) forked off the
    cluster's history (naming the repair), or None."""
    return _verdict(ctx, info, lambda history: decide.forked(timeline, lsn, info, history))


def stopped_fork_verdict(ctx: Ctx, info: Optional[decide.ReplInfo], wal: decide.StoppedWal) -> Optional[str]:
    """Why this stopped node's WAL forked off the cluster's history (naming the repair), or None."""
    return _verdict(ctx, info, lambda history: decide.stopped_forked(wal, info, history))


def _verdict(ctx: Ctx, info: Optional[decide.ReplInfo],
             judge: Callable[[Optional[dict[int, int]]], Optional[str]]) -> Optional[str]:
    """judge(the cluster's history) with memory: a verdict is remembered (next to the
    agent's state) until REPL_INFO changes or the node is repaired, so a restart
    cannot slip past it."""
    remembered = _remembered_fork(ctx)
    if remembered and info and remembered[0] == info.render() and ctx.pg.wal_timeline() < info.timeline:
        return remembered[1]
    history_text = ctx.pg.history(info.timeline) if info else None
    why = judge(decide.parse_history(history_text) if history_text else None)
    if not why or not info:
        return None
    # First, as Pacemaker keeps only ~128 characters of an exit reason.
    why = REPAIR_HINT + why
    files.private_dir(os.path.dirname(ctx.fork_marker))
    files.write_atomic(ctx.fork_marker, info.render() + "\n" + why)
    return why


def forget_fork(ctx: Ctx) -> None:
    """The node was repaired: its remembered verdict goes."""
    try:
        os.unlink(ctx.fork_marker)
    except FileNotFoundError:
        pass


def _remembered_fork(ctx: Ctx) -> Optional[tuple[str, str]]:
    """(REPL_INFO, reason) of the last refusal, if any."""
    try:
        remembered, sep, why = files.read_nofollow(ctx.fork_marker).partition("\n")
    except FileNotFoundError:
        return None
    except OSError as err:
        ctx.log.warning(f"cannot read {ctx.fork_marker}: {err}")
        return None
    return (remembered, why) if sep else None
