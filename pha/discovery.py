"""Real-server discovery from PostgreSQL itself: get_active_slaves and check_active_slave.

`active_standbys(conninfo)` asks the primary's pg_stat_replication for the standbys that
stream to it now (sync, potential, quorum or async), with their replay lag in bytes and
seconds; the lvsdr agent calls it in-process. `serving(standbys, resolve)` keeps those whose
application_name is a valid name of the address they connect from: get_active_slaves prints
only these, one a line. `is_active_standby(conninfo, host)` connects to one host and asks
whether it is in recovery.

Both commands keep the shape of pha4pgsql's tools:
    get_active_slaves [PSQL] CONNINFO [--json]
    check_active_slave [PSQL] CONNINFO [-h] HOST
The leading psql path of the originals is accepted and ignored (also the one-argument form
'psql "CONNINFO"'). Passwords are refused on the command line: use a passfile (~/.pgpass,
PGPASSFILE, passfile=) or PGPASSWORD in the environment. psycopg is imported lazily.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

import click

if TYPE_CHECKING:
    from pha.lvs.plan import Resolver

DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_STATEMENT_TIMEOUT_MS = 5000
ACTIVE_SYNC_STATES = ("sync", "potential", "quorum", "async")

STANDBYS_SQL = """
select application_name, state, sync_state, host(client_addr),
       pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_receive_lsn()
                            else pg_current_wal_lsn() end, replay_lsn)::bigint,
       extract(epoch from replay_lag)::float8
  from pg_stat_replication
 where state = 'streaming' and sync_state = any(%s)
   and application_name is not null and application_name <> ''
 order by application_name
"""


class DiscoveryError(RuntimeError):
    """PostgreSQL could not be asked, or the request itself is wrong."""


@dataclass(frozen=True)
class Standby:
    """One streaming standby as the primary sees it."""

    name: str                       # application_name
    state: str                      # pg_stat_replication.state
    sync_state: str                 # sync | potential | quorum | async
    client_addr: str | None
    lag_bytes: int | None           # WAL not yet replayed, in bytes
    replay_lag_seconds: float | None


def check_conninfo(conninfo: str) -> dict[str, str]:
    """Parse a libpq connection string; refuse one that carries a password."""
    from pha.values import conninfo_dict, conninfo_secret
    try:
        secret = conninfo_secret(conninfo)
        params = conninfo_dict(conninfo)
    except ValueError as exc:
        raise DiscoveryError(f"the connection string {exc}") from None
    if secret:
        raise DiscoveryError(f"the connection string holds a {secret}; put it in a passfile "
                             "(~/.pgpass, PGPASSFILE or passfile=) or PGPASSWORD instead")
    return params


def connection_params(conninfo: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
                      statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
                      **override: str) -> dict[str, str]:
    """Keyword arguments for psycopg.connect: conninfo's, a connect timeout unless it sets
    one, a statement timeout, and `override` (e.g. host)."""
    params = check_conninfo(conninfo)
    params.update(override)
    params.setdefault("connect_timeout", str(connect_timeout))
    options = params.get("options", "")
    params["options"] = f"{options} -c statement_timeout={statement_timeout_ms}".strip()
    params.setdefault("application_name", "pha-discovery")
    return params


def _connect(params: dict[str, str]) -> Any:
    import psycopg
    try:
        return psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise DiscoveryError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def active_standbys(conninfo: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> list[Standby]:
    """The standbys streaming to the server of `conninfo` (normally the primary)."""
    import psycopg
    with _connect(connection_params(conninfo, connect_timeout)) as conn:
        try:
            rows = conn.execute(STANDBYS_SQL, (list(ACTIVE_SYNC_STATES),)).fetchall()
        except psycopg.Error as exc:
            raise DiscoveryError(_one_line(exc)) from None
    return [Standby(name=r[0], state=r[1], sync_state=r[2], client_addr=r[3],
                    lag_bytes=None if r[4] is None else int(r[4]),
                    replay_lag_seconds=None if r[5] is None else float(r[5])) for r in rows]


def serving(standbys: Sequence[Standby], resolve: Resolver) -> tuple[list[Standby], list[str]]:
    """(the standbys that may serve reads, why each other one may not).

    A standby serves under its application_name only when that is a valid name that is,
    or resolves to, the address it connects from (see pha.lvs.plan.standby_address).
    """
    from pha.lvs.plan import standby_address
    usable, skipped = [], []
    for standby in standbys:
        address, problem = standby_address(standby.name, standby.client_addr, [], resolve)
        if address is None:
            skipped.append(problem)
        else:
            usable.append(standby)
    return usable, skipped


def is_active_standby(conninfo: str, host: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> bool:
    """Whether the server at `host` (other settings from `conninfo`) is in recovery."""
    import psycopg
    with _connect(connection_params(conninfo, connect_timeout, host=host)) as conn:
        try:
            row = conn.execute("select pg_is_in_recovery()").fetchone()
        except psycopg.Error as exc:
            raise DiscoveryError(_one_line(exc)) from None
    return bool(row and row[0])


# ---- command-line shape of the original tools (pure)

def _strip_psql(words: list[str]) -> list[str]:
    """Drop the leading psql path of the original tools' calling convention."""
    if len(words) == 1:
        inner = shlex.split(words[0])
        if len(inner) == 2 and os.path.basename(inner[0]).startswith("psql"):
            return inner[1:]
    if words and os.path.basename(words[0]).startswith("psql") and len(words) > 1:
        return words[1:]
    return words


def parse_get_args(args: Sequence[str]) -> str:
    """CONNINFO from `[PSQL] CONNINFO`."""
    words = _strip_psql(list(args))
    if len(words) != 1:
        raise DiscoveryError("usage: get_active_slaves [PSQL] CONNINFO [--json]")
    return words[0]


def parse_check_args(args: Sequence[str]) -> tuple[str, str]:
    """(CONNINFO, HOST) from `[PSQL] CONNINFO [-h] HOST`."""
    words = [w for w in args if w not in ("-h", "--host")]
    words = _strip_psql(words[:-1]) + words[-1:] if words else words
    if len(words) != 2 or not words[1]:
        raise DiscoveryError("usage: check_active_slave [PSQL] CONNINFO [-h] HOST")
    return words[0], words[1]


def _fail(prog: str, exc: BaseException) -> NoReturn:
    click.echo(f"{prog}: {exc}", err=True)
    sys.exit(1)


RAW_ARGS = {"ignore_unknown_options": True, "allow_interspersed_args": True,
            "help_option_names": ["--help"]}


@click.command("get-active-slaves", context_settings=RAW_ARGS)
@click.option("--json", "as_json", is_flag=True, help="Print names, states and lag as JSON.")
@click.option("--connect-timeout", type=click.IntRange(1, 600), default=DEFAULT_CONNECT_TIMEOUT,
              show_default=True, help="Seconds to wait for the connection (unless CONNINFO sets one).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def get_active_slaves_cmd(ctx: click.Context, as_json: bool, connect_timeout: int,
                          args: tuple[str, ...]) -> None:
    """Print the application_names of the standbys streaming to the primary, one a line.

    \b
    usage: get_active_slaves [PSQL] CONNINFO [--json]
    CONNINFO points at the primary, e.g. "host=10.0.0.1 user=replication dbname=postgres".
    A standby is printed only when its name is a valid hostname or IPv4 address that is,
    or resolves to, the address it connects from (never over a unix socket or loopback);
    the others are named on stderr.
    PSQL, the psql path of pha4pgsql's tool, is accepted and ignored. No password in
    CONNINFO: use ~/.pgpass, PGPASSFILE or PGPASSWORD.
    """
    from pha.lvs.hosts import local_resolver
    prog = ctx.find_root().info_name or "get_active_slaves"
    try:
        standbys = active_standbys(parse_get_args(args), connect_timeout)
    except DiscoveryError as exc:
        _fail(prog, exc)
    usable, skipped = serving(standbys, local_resolver())
    for problem in skipped:
        click.echo(f"{prog}: skipped {problem}", err=True)
    if as_json:
        click.echo(json.dumps([asdict(s) for s in usable]))
    else:
        for standby in usable:
            click.echo(standby.name)


@click.command("check-active-slave", context_settings=RAW_ARGS)
@click.option("--connect-timeout", type=click.IntRange(1, 600), default=DEFAULT_CONNECT_TIMEOUT,
              show_default=True, help="Seconds to wait for the connection (unless CONNINFO sets one).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def check_active_slave_cmd(ctx: click.Context, connect_timeout: int, args: tuple[str, ...]) -> None:
    """Print t if HOST is a standby (in recovery), f if not; exit 1 if it cannot be asked.

    \b
    usage: check_active_slave [PSQL] CONNINFO [-h] HOST
    CONNINFO gives everything but the host, e.g. "port=5432 user=replication dbname=postgres".
    """
    prog = ctx.find_root().info_name or "check_active_slave"
    try:
        conninfo, host = parse_check_args(args)
        standby = is_active_standby(conninfo, host, connect_timeout)
    except DiscoveryError as exc:
        _fail(prog, exc)
    click.echo("t" if standby else "f")
