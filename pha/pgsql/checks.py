"""The pgsql agent's refusals of a bad configuration: parameters (validate,
before every action but stop) and a postgresql.auto.conf that would override pha.conf."""
from __future__ import annotations

import ipaddress
import os
import pwd
import shlex

from pha import ocf
from pha.pgsql.context import Ctx


def validate(res: ocf.Resource) -> None:
    from pha.pgsql import binaries, context
    from pha.pgsql.process import PgError
    p = res.params
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
    if st.st_uid != account.pw_uid or st.st_mode & 0o027:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgdata={pgdata}: must be owned by "
                           f"{p['pgdba']} with mode 0700 or 0750")
    try:
        version = binaries.pg_version(pgdata)
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_INSTALLED, str(err)) from None
    if version < 12:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgdata={pgdata}: PostgreSQL {version}; pha needs 12+")
    pg = res.cached("instance", lambda: context.instance_of(res))
    try:
        pg.bindir      # the programs of PGDATA's version, or pgctl's directory (found once, kept)
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_INSTALLED, str(err) if "pgctl" in str(err)
                           else f"parameter pgctl={p['pgctl']}: {err}") from None
    try:
        pg.check_options()
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, str(err)) from None
    if not os.path.isabs(str(p["rewind_keep_dir"])):
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"parameter rewind_keep_dir={p['rewind_keep_dir']}: must be an absolute path")
    nodes = str(p["node_list"]).split()
    if res.node_name not in nodes:
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"parameter node_list={p['node_list']} does not hold this node ({res.node_name})")
    try:
        ipaddress.ip_address(str(p["master_ip"]))
    except ValueError:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter master_ip={p['master_ip']} is not an address") from None
    if p["enable_distlock"] and not p["distlock_lock_cmd"]:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, "parameter distlock_lock_cmd is required with enable_distlock")
    for name in ("distlock_lock_cmd", "distlock_unlock_cmd"):
        try:
            shlex.split(str(p[name]))  # how the agent runs it: an argument list, no shell
        except ValueError as err:
            raise ocf.bad_param(name, p[name], f"cannot be split into words ({err})") from None
    passfile = p["passfile"]
    if passfile and (not os.path.exists(str(passfile)) or os.stat(str(passfile)).st_mode & 0o077):
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"parameter passfile={passfile}: missing, or readable by group/others")


def check_auto_conf(ctx: Ctx) -> None:
    """A primary_conninfo in postgresql.auto.conf overrides pha.conf: refuse it."""
    stale = ctx.pg.auto_conf_settings().get("primary_conninfo")
    if stale:
        raise ocf.OCFError(ocf.ERR_CONFIGURED,
                           f"{ctx.pg.pgdata}/postgresql.auto.conf sets primary_conninfo={stale} "
                           "(pg_basebackup -R?), which overrides pha's; run ALTER SYSTEM RESET "
                           "primary_conninfo or remove that line")
