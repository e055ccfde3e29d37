"""`pha distlock`: a lease in a PostgreSQL table, the pgsql agent's standard lock.

For 2-node clusters, where quorum cannot tell which side may write, the
primary must hold a lease on a third machine's PostgreSQL. `lock` takes or
renews the lease for HOLDER and exits 0, or exits 1 while another holder's
lease is unexpired; `unlock` gives it up; `status` prints the holder.

    pha distlock --conninfo "host=lockhost dbname=pha user=pha passfile=/etc/pha/lock.pass" \\
        --name pgsql --holder node1 --ttl 10 lock

Use it as the agent's `distlock_lock_cmd` / `distlock_unlock_cmd`. The
conninfo carries no password: use a passfile (or PGPASSFILE).
"""
from __future__ import annotations

import os
import sys

import click

from pha.values import check_no_secret, mask

TABLE = "pha_distlock"
CREATE = f"""create table if not exists {TABLE} (
    name text primary key,
    holder text not null,
    expires timestamptz not null)"""
# Take the lease when it is free, expired, or ours already; in one statement.
TAKE = f"""insert into {TABLE} as l (name, holder, expires)
    values (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl)s))
    on conflict (name) do update set holder = excluded.holder, expires = excluded.expires
    where l.holder = excluded.holder or l.expires < now()
    returning holder"""
RELEASE = f"delete from {TABLE} where name = %(name)s and holder = %(holder)s"
SHOW = f"select holder, expires > now(), expires from {TABLE} where name = %(name)s"


class LockError(Exception):
    """The lock server could not be asked."""


def _connect(conninfo: str, timeout: int):
    import psycopg
    try:
        check_no_secret(conninfo)
    except ValueError as err:
        raise LockError(f"--conninfo {err}") from None
    try:
        return psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True)
    except psycopg.Error as err:
        raise LockError(f"cannot reach the lock server: {mask(str(err))}".strip()) from None


def take(conninfo: str, name: str, holder: str, ttl: int, timeout: int = 3) -> bool:
    """Take or renew the lease; False when another holder has it."""
    with _connect(conninfo, timeout) as conn:
        conn.execute(CREATE)
        return conn.execute(TAKE, {"name": name, "holder": holder, "ttl": ttl}).fetchone() is not None


def release(conninfo: str, name: str, holder: str, timeout: int = 3) -> None:
    with _connect(conninfo, timeout) as conn:
        conn.execute(CREATE)
        conn.execute(RELEASE, {"name": name, "holder": holder})


def show(conninfo: str, name: str, timeout: int = 3) -> tuple[str, bool, str] | None:
    """(holder, valid, expiry) of the lease, or None."""
    with _connect(conninfo, timeout) as conn:
        conn.execute(CREATE)
        row = conn.execute(SHOW, {"name": name}).fetchone()
    return None if row is None else (row[0], bool(row[1]), str(row[2]))


@click.command("distlock")
@click.option("--conninfo", required=True, help="libpq conninfo of the lock server (no password).")
@click.option("--name", default="pgsql", show_default=True, help="Lock name (one per cluster).")
@click.option("--holder", default=lambda: os.uname().nodename, help="Who holds it (default: this node).")
@click.option("--ttl", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Lease seconds; renew well within it (the agent renews every monitor).")
@click.option("--timeout", type=click.IntRange(1, 60), default=3, show_default=True,
              help="Connect timeout, seconds.")
@click.argument("action", type=click.Choice(["lock", "unlock", "status"]))
def distlock(conninfo: str, name: str, holder: str, ttl: int, timeout: int, action: str) -> None:
    """Take (lock), give up (unlock) or show (status) a lease held in PostgreSQL."""
    try:
        if action == "lock":
            if not take(conninfo, name, holder, ttl, timeout):
                current = show(conninfo, name, timeout)
                click.echo(f"lock {name} is held by {current[0] if current else '?'}", err=True)
                sys.exit(1)
        elif action == "unlock":
            release(conninfo, name, holder, timeout)
        else:
            current = show(conninfo, name, timeout)
            if current is None:
                click.echo(f"{name}: free")
            else:
                click.echo(f"{name}: {current[0]} until {current[2]}" + ("" if current[1] else " (expired)"))
    except LockError as err:
        click.echo(f"pha distlock: {err}", err=True)
        sys.exit(2)


def run_inline(args: list[str]) -> int:
    """`pha distlock ARGS` in this process, for the agent's monitor: its exit code."""
    try:
        code = distlock.main(args=args, prog_name="pha distlock", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) or exc.code is None else 1
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    return code if isinstance(code, int) else 0
