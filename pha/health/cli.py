"""`pha health`: run the health service in the foreground (see pha.health)."""
from __future__ import annotations

import ipaddress
import logging
from typing import Optional

import click

DEFAULT_DSN = "host=/run/postgresql port=5432 dbname=postgres"


def check_dsn(dsn: str) -> str:
    """The libpq connection string, refused if it is malformed or holds a password."""
    from pha.values import conninfo_secret, shown
    try:
        secret = conninfo_secret(dsn)
    except ValueError as exc:
        raise click.BadParameter(f"{shown(dsn)!r} {exc}", param_hint="--dsn") from None
    if secret:
        raise click.BadParameter("must not hold a password: put it in a passfile "
                                 "(passfile=PATH in --dsn, or PGPASSFILE)", param_hint="--dsn")
    return dsn


def parse_networks(values: tuple[str, ...], option: str = "--allow") -> tuple:
    """Networks from --allow / --details-allow values (whitespace also separates them, as in
    PHA_HEALTH_ALLOW="10.0.0.0/24 10.0.1.5")."""
    networks = []
    for value in " ".join(values).split():
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a network (examples: 10.0.0.0/8, 192.0.2.7, "
                                     "2001:db8::/32)", param_hint=option) from None
    return tuple(networks)


def _positive(ctx: click.Context, param: click.Parameter, value: Optional[float]) -> Optional[float]:
    if value is not None and value <= 0:
        raise click.BadParameter(f"{value!r} must be greater than 0")
    return value


PORT = click.IntRange(1, 65535)


@click.command("health")
@click.option("--listen", multiple=True, default=("0.0.0.0",), show_default=True,
              envvar="PHA_HEALTH_LISTEN", metavar="ADDRESS",
              help="Address to listen on (repeatable; '::' for IPv6).")
@click.option("--port", type=PORT, default=8008, show_default=True, envvar="PHA_HEALTH_PORT",
              help="HTTP port.")
@click.option("--text-port", type=PORT, default=None, envvar="PHA_HEALTH_TEXT_PORT",
              help="Also answer 'production' or 'standby' on this TCP port (tcp-check expect string).")
@click.option("--dsn", default=DEFAULT_DSN, show_default=True, envvar="PHA_HEALTH_DSN",
              help="libpq connection string of the local PostgreSQL (no password: use a passfile). "
                   "The role needs pg_monitor.")
@click.option("--interval", type=float, default=1.0, show_default=True, callback=_positive,
              envvar="PHA_HEALTH_INTERVAL", help="Seconds an answer is cached: at most one query per interval.")
@click.option("--timeout", type=float, default=2.0, show_default=True, callback=_positive,
              envvar="PHA_HEALTH_TIMEOUT",
              help="Seconds PostgreSQL (and Pacemaker) get to answer; slower counts as down.")
@click.option("--allow", multiple=True, envvar="PHA_HEALTH_ALLOW", metavar="NETWORK",
              help="Only answer clients from this network (repeatable; default: everyone).")
@click.option("--details-allow", multiple=True, envvar="PHA_HEALTH_DETAILS_ALLOW", metavar="NETWORK",
              help="Show the details (standby names and addresses, LSNs, lag) to clients from this "
                   "network (repeatable; default: loopback only). Others get the status code with "
                   "the role only, all HAProxy needs.")
@click.option("--max-connections", type=click.IntRange(1, 65536), default=256, show_default=True,
              envvar="PHA_HEALTH_MAX_CONNECTIONS", help="Open connections at most.")
@click.option("--request-timeout", type=float, default=2.0, show_default=True, callback=_positive,
              envvar="PHA_HEALTH_REQUEST_TIMEOUT", help="Seconds a client has to send its request.")
@click.option("--max-request-bytes", type=click.IntRange(256, 65536), default=4096, show_default=True,
              envvar="PHA_HEALTH_MAX_REQUEST_BYTES", help="Largest request head accepted.")
@click.option("--pacemaker/--no-pacemaker", default=True, show_default=True, envvar="PHA_HEALTH_PACEMAKER",
              help="Read pha's node attributes (pgsql-status, pgsql-data-status) from Pacemaker.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, envvar="PHA_HEALTH_LOG_LEVEL")
def health(listen: tuple[str, ...], port: int, text_port: Optional[int], dsn: str, interval: float,
           timeout: float, allow: tuple[str, ...], details_allow: tuple[str, ...], max_connections: int,
           request_timeout: float,
           max_request_bytes: int, pacemaker: bool, log_level: str) -> None:
    """Serve HTTP health checks for HAProxy from this node's PostgreSQL and pha state.

    Endpoints (GET, HEAD, OPTIONS): /primary /master /read-write, /replica /standby
    (?lag=10MB), /read-only, /sync, /async, /health, /liveness, and / (pgsqlchk:
    200 primary, 206 standby, 503 otherwise).
    """
    import asyncio
    from pha.health.probe import PostgresProbe, StateCache, cib_write_warning, pacemaker_reader
    from pha.health.server import LOOPBACK, HealthService, Settings

    if text_port is not None and text_port == port:
        raise click.BadParameter(f"{text_port} is already the HTTP port", param_hint="--text-port")
    settings = Settings(listen=tuple(listen), port=port, text_port=text_port,
                        max_connections=max_connections, request_timeout=request_timeout,
                        max_request_bytes=max_request_bytes, allow=parse_networks(allow),
                        details=parse_networks(details_allow, "--details-allow") or LOOPBACK)
    dsn = check_dsn(dsn)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    warning = cib_write_warning(timeout) if pacemaker else None
    if warning:
        logging.getLogger("pha.health").warning("%s", warning)

    async def main() -> None:
        cache = StateCache(PostgresProbe(dsn, timeout), interval, timeout,
                           attributes=pacemaker_reader(timeout) if pacemaker else None)
        await HealthService(settings, cache).serve_forever()

    try:
        asyncio.run(main())
    except OSError as exc:     # cannot listen: port taken, address not local
        raise click.ClickException(f"cannot listen: {exc}") from None
