"""Automatic rewind at start (auto_rewind): a forked node rejoins as a standby.

The start action calls `rewind_at_start` when the fork guard found this
node's WAL past the cluster's history and PostgreSQL is stopped. The primary
(behind master_ip) is waited for a little (right after a failover the writer
VIP may still be moving), then pha.pgsql.rewind decides and acts: the
diverged WAL is kept under rewind_keep_dir with its summary, pg_rewind runs,
or (rewind_reclone) the primary is copied afresh. A refusal fails the start
with its cause first (Pacemaker keeps ~128 characters of an exit reason);
Pacemaker retries the start once failure-timeout has passed.
"""
from __future__ import annotations

import time

from pha import ocf
from pha.crm import CrmError
from pha.pgsql import names, rewind
from pha.pgsql.context import Ctx
from pha.pgsql.decide import ReplInfo
from pha.pgsql.process import PgError
from pha.pgsql.forkguard import REPAIR_HINT, forget_fork

SOURCE_WAIT = 30.0       # seconds to wait for master_ip to answer, at most a quarter of the start's time
RESERVE = 30.0           # seconds of the start's time kept for starting PostgreSQL afterwards


def rewind_at_start(ctx: Ctx, info: ReplInfo, why: str, deadline: float) -> None:
    """Rewind (or re-clone) this stopped, forked node from the primary; OCFError when it cannot be."""
    p = ctx.params
    host, port = str(p["master_ip"]), int(p["pgport"])
    wait_for_source(host, port, min(SOURCE_WAIT, max(0.0, deadline - time.monotonic()) / 4))
    ctx.log.warning(f"{why.removeprefix(REPAIR_HINT)}: rewinding from {info.primary} ({host}:{port})")
    try:
        result = rewind.rewind_instance(
            ctx.pg, info, host, port, str(p["repuser"]), str(p["passfile"] or ""),  # type: ignore[arg-type]
            reclone_allowed=bool(p["rewind_reclone"]), keep_root=str(p["rewind_keep_dir"]),
            timeout=max(10.0, deadline - time.monotonic() - RESERVE))
    except (PgError, OSError) as err:       # a failed re-clone (old data untouched), an unwritable keep dir
        raise ocf.OCFError(ocf.ERR_GENERIC, f"repair: {err}; {REPAIR_HINT.rstrip(': ')}") from None
    if result.action == rewind.REFUSE:
        hint = "" if "cls_" in result.reason else f"; {REPAIR_HINT.rstrip(': ')}"
        raise ocf.OCFError(ocf.ERR_GENERIC, f"repair: {result.reason}{hint}")
    if result.action == rewind.NONE:
        ctx.log.info(f"no rewind: {result.reason}")
        return
    forget_fork(ctx)
    record(ctx, result)


def wait_for_source(host: str, port: int, patience: float) -> bool:
    """Whether master_ip:port accepts connections, waiting up to `patience` seconds."""
    until = time.monotonic() + patience
    while not rewind.reachable(host, port, timeout=2.0):
        if time.monotonic() >= until:
            return False
        time.sleep(0.5)
    return True


def rewound_value(result: rewind.Result, now: float) -> str:
    """pgsql-rewound's value: "<UTC time> <bytes kept> <where>"."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    kept = result.kept
    where = kept.directory if kept else result.moved_aside or "-"
    return f"{stamp} {kept.bytes if kept else 0} {where}"


def record(ctx: Ctx, result: rewind.Result) -> None:
    """Say what was rewound, how much and where it is kept: the log and pgsql-rewound."""
    kept = result.kept
    if result.action == rewind.RECLONE:
        ctx.log.warning(f"re-cloned from the primary: {result.reason}; the old data directory is in "
                        f"{result.moved_aside}")
    elif kept:
        ctx.log.warning(f"rewound: {kept.bytes} bytes of WAL ({kept.commits} commit(s) not on the primary) "
                        f"kept in {kept.directory}, summary {kept.summary_path}")
    else:
        ctx.log.warning(f"rewound ({result.reason}); no diverged WAL segment was found to keep")
    try:
        ctx.crm.set_node_attr(names.ATTR_REWOUND, rewound_value(result, time.time()), node=ctx.me,
                              lifetime="forever")
    except CrmError as err:
        ctx.log.warning(f"could not publish {names.ATTR_REWOUND}: {err}")
