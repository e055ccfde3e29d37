"""`pha haproxy-cfg CONFIG`: a haproxy.cfg for VIP-less access through HAProxy.

The listeners are checked against `pha health` on every node:
- read-write (5000): `OPTIONS /primary`, so only the primary gets traffic;
- read-only (5001): `OPTIONS /replica` (with `?lag=` when a maximum lag is
  set), balanced `roundrobin` or `leastconn` over the streaming standbys;
- stats (7000): HAProxy's statistics page.
Every server has `on-marked-down shutdown-sessions`, so clients of a server
marked down (an old primary) are cut at once, and tunable inter/fall/rise.

CONFIG is pha's config.ini (pha4pgsql's shell-style KEY=value lines; `#`
comments and `[section]` lines are ignored). Keys read here:

| key | default | meaning |
|---|---|---|
| node1..nodeN | (at least one) | PostgreSQL nodes: server names, and addresses unless mapped |
| othernodes, readnodes | | readers outside the cluster: read-only listener only |
| pgsql_pgport | 5432 | PostgreSQL port |
| health_port | 8008 | `pha health` port on every node |
| haproxy_addresses | | "NAME=ADDRESS ..." where a node name is not what HAProxy should resolve |
| haproxy_bind | * | address the listeners bind to |
| haproxy_rw_port, haproxy_ro_port, haproxy_stats_port | 5000, 5001, 7000 | listener ports (stats 0: none) |
| haproxy_balance | roundrobin | read-only balancing: roundrobin or leastconn |
| haproxy_max_lag | | read-only servers must be within this lag (bytes, or 10MB ...) |
| haproxy_inter, haproxy_fall, haproxy_rise | 2s, 3, 2 | check interval, failures to mark down, successes to mark up |
| haproxy_check_timeout | haproxy_inter | time a check may take |
| haproxy_maxconn | 1000 | global connection limit |

No secret of the config (passwords) ever reaches the output. HAProxy 2.6
checks every server as it starts and marks one that fails that first check
down at once (measured), so a restarted HAProxy does not send writers to a
standby; a standby would refuse their writes anyway.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path
from typing import NamedTuple, Optional

import click

from pha.files import write_atomic
from pha.values import parse_int, parse_size, shown

BALANCES = ("roundrobin", "leastconn")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_DURATION = re.compile(r"([0-9]{1,7})(ms|s|m)?")
_NODE_KEY = re.compile(r"node(\d{1,3})")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HAPROXY_KEYS = ("haproxy_addresses", "haproxy_bind", "haproxy_rw_port", "haproxy_ro_port",
                "haproxy_stats_port", "haproxy_balance", "haproxy_max_lag", "haproxy_inter",
                "haproxy_fall", "haproxy_rise", "haproxy_check_timeout", "haproxy_maxconn")


class ConfigError(ValueError):
    """A config value that cannot make a haproxy.cfg; the message names file, line, key and value."""


class Server(NamedTuple):
    name: str
    address: str
    read_only: bool = False     # a reader outside the cluster: never in the read-write listener


class HAProxyConfig(NamedTuple):
    """Everything the haproxy.cfg is rendered from (already validated)."""

    servers: tuple[Server, ...]
    pg_port: int = 5432
    health_port: int = 8008
    bind: str = "*"
    rw_port: int = 5000
    ro_port: int = 5001
    stats_port: int = 7000
    balance: str = "roundrobin"
    max_lag_bytes: Optional[int] = None
    inter_ms: int = 2000
    fall: int = 3
    rise: int = 2
    check_timeout_ms: Optional[int] = None
    maxconn: int = 1000
    source: str = ""


# --- reading config.ini --------------------------------------------------------------
class Entry(NamedTuple):
    value: str
    line: int


def parse_config(text: str, path: str) -> dict[str, Entry]:
    """KEY=value lines (values unquoted as the shell would); a later key wins."""
    entries: dict[str, Entry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or (line.startswith("[") and line.endswith("]")):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not _KEY.fullmatch(key):
            raise ConfigError(f"{path}:{number}: expected KEY=value, found {raw.strip()!r}")
        try:
            words = shlex.split(value, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {key}: cannot parse {value.strip()!r} ({exc})") from None
        entries[key] = Entry(" ".join(words), number)
    return entries


def _where(path: str, entries: dict[str, Entry], key: str) -> str:
    entry = entries.get(key)
    return f"{path}:{entry.line}: {key}" if entry else f"{path}: {key}"


def _bad(path: str, entries: dict[str, Entry], key: str, problem: str) -> ConfigError:
    value = entries[key].value if key in entries else ""
    return ConfigError(f"{_where(path, entries, key)}: {shown(value)!r} {problem}")


def _int(path: str, entries: dict[str, Entry], key: str, default: int, low: int, high: int) -> int:
    if key not in entries or entries[key].value == "":
        return default
    try:
        value = parse_int(entries[key].value)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad(path, entries, key, f"is not an integer between {low} and {high}")
    return value


def _duration_ms(path: str, entries: dict[str, Entry], key: str, default: Optional[int]) -> Optional[int]:
    if key not in entries or entries[key].value == "":
        return default
    match = _DURATION.fullmatch(entries[key].value)
    if match is None or int(match.group(1)) == 0:
        raise _bad(path, entries, key, "is not a duration (examples: 500ms, 2s, 1m)")
    factor = {None: 1, "ms": 1, "s": 1000, "m": 60_000}[match.group(2)]
    return int(match.group(1)) * factor


def _address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOST.fullmatch(text))


def config_from_entries(entries: dict[str, Entry], path: str) -> HAProxyConfig:
    """Validate the keys this command reads; errors name the file, line, key and value."""
    unknown = sorted(k for k in entries if k.startswith("haproxy_") and k not in HAPROXY_KEYS)
    if unknown:
        raise ConfigError(f"{_where(path, entries, unknown[0])}: unknown key "
                          f"(known: {', '.join(HAPROXY_KEYS)})")
    cluster = [(int(m.group(1)), key) for key in entries if (m := _NODE_KEY.fullmatch(key))]
    names: list[tuple[str, str, bool]] = [(entries[key].value, key, False) for _, key in sorted(cluster)]
    for key in ("othernodes", "readnodes"):
        names += [(name, key, True) for name in entries.get(key, Entry("", 0)).value.split()]
    if not any(not read_only for _, _, read_only in names):
        raise ConfigError(f"{path}: no node1..nodeN key: haproxy.cfg needs the PostgreSQL nodes")
    addresses: dict[str, str] = {}
    for item in entries.get("haproxy_addresses", Entry("", 0)).value.split():
        name, equals, address = item.partition("=")
        if not equals or not _address(address):
            raise ConfigError(f"{_where(path, entries, 'haproxy_addresses')}: {item!r} is not NAME=ADDRESS")
        addresses[name] = address
    servers, seen = [], set()
    for name, key, read_only in names:
        if not _NAME.fullmatch(name):
            raise _bad(path, entries, key, "is not a node name (letters, digits, '.', '_', '-')")
        if name in seen:
            raise _bad(path, entries, key, f"names node {name!r} twice")
        seen.add(name)
        address = addresses.pop(name, name)
        if not _address(address):
            raise _bad(path, entries, key, "is not a host name or an IP address")
        servers.append(Server(name, address, read_only))
    if addresses:
        raise ConfigError(f"{_where(path, entries, 'haproxy_addresses')}: {sorted(addresses)[0]!r} "
                          "is not a configured node")
    bind = entries.get("haproxy_bind", Entry("*", 0)).value or "*"
    if bind != "*" and not _address(bind):
        raise _bad(path, entries, "haproxy_bind", "is not '*', a host name or an IP address")
    balance = entries.get("haproxy_balance", Entry("roundrobin", 0)).value or "roundrobin"
    if balance not in BALANCES:
        raise _bad(path, entries, "haproxy_balance", f"is not one of {', '.join(BALANCES)}")
    max_lag = None
    if entries.get("haproxy_max_lag", Entry("", 0)).value:
        try:
            max_lag = parse_size(entries["haproxy_max_lag"].value)
        except ValueError:
            raise _bad(path, entries, "haproxy_max_lag", "is not a byte count (examples: 1048576, 10MB)") from None
    config = HAProxyConfig(
        servers=tuple(servers),
        pg_port=_int(path, entries, "pgsql_pgport", 5432, 1, 65535),
        health_port=_int(path, entries, "health_port", 8008, 1, 65535),
        bind=bind,
        rw_port=_int(path, entries, "haproxy_rw_port", 5000, 1, 65535),
        ro_port=_int(path, entries, "haproxy_ro_port", 5001, 1, 65535),
        stats_port=_int(path, entries, "haproxy_stats_port", 7000, 0, 65535),
        balance=balance, max_lag_bytes=max_lag,
        inter_ms=_duration_ms(path, entries, "haproxy_inter", 2000) or 2000,
        fall=_int(path, entries, "haproxy_fall", 3, 1, 100),
        rise=_int(path, entries, "haproxy_rise", 2, 1, 100),
        check_timeout_ms=_duration_ms(path, entries, "haproxy_check_timeout", None),
        maxconn=_int(path, entries, "haproxy_maxconn", 1000, 1, 1_000_000),
        source=path)
    ports = [("haproxy_rw_port", config.rw_port), ("haproxy_ro_port", config.ro_port)]
    if config.stats_port:
        ports.append(("haproxy_stats_port", config.stats_port))
    for index, (key, port) in enumerate(ports):
        for other, other_port in ports[:index]:
            if port == other_port:
                raise _bad(path, entries, key, f"is already {other}")
    return config


def read_config(path: str) -> HAProxyConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return config_from_entries(parse_config(text, path), path)


# --- rendering ------------------------------------------------------------------------
def _listen(name: str, bind: str, port: int, check: str, servers: list[Server],
            config: HAProxyConfig, balance: Optional[str] = None) -> list[str]:
    lines = [f"listen {name}", f"    bind {bind}:{port}"]
    if balance:
        lines.append(f"    balance {balance}")
    lines += [f"    option httpchk OPTIONS {check}", "    http-check expect status 200"]
    lines += [f"    server {s.name} {s.address}:{config.pg_port} check port {config.health_port}"
              for s in servers]
    return lines + [""]


def render(config: HAProxyConfig) -> str:
    """The haproxy.cfg text."""
    check_timeout = config.check_timeout_ms or config.inter_ms
    replica = "/replica" + (f"?lag={config.max_lag_bytes}" if config.max_lag_bytes is not None else "")
    lines = [f"# Generated by `pha haproxy-cfg {config.source}`; regenerate rather than edit.",
             f"# Every PostgreSQL node runs `pha health` on port {config.health_port}.",
             "global",
             "    log /dev/log local0",
             "    chroot /var/lib/haproxy",
             "    user haproxy",
             "    group haproxy",
             f"    maxconn {config.maxconn}",
             "",
             "defaults",
             "    log global",
             "    mode tcp",
             "    retries 2",
             "    timeout connect 4s",
             "    timeout client 30m",
             "    timeout server 30m",
             f"    timeout check {check_timeout}ms",
             f"    default-server inter {config.inter_ms}ms fall {config.fall} rise {config.rise} "
             "on-marked-down shutdown-sessions",
             ""]
    if config.stats_port:
        lines += ["listen stats", "    mode http", f"    bind {config.bind}:{config.stats_port}",
                  "    stats enable", "    stats uri /", "    stats refresh 5s", ""]
    writers = [s for s in config.servers if not s.read_only]
    lines += _listen("pgsql-read-write", config.bind, config.rw_port, "/primary", writers, config)
    lines += _listen("pgsql-read-only", config.bind, config.ro_port, replica, list(config.servers),
                     config, balance=config.balance)
    return "\n".join(lines)


@click.command("haproxy-cfg")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write haproxy.cfg here instead of printing it.")
def gencfg_haproxy(config: str, output: Optional[str]) -> None:
    """Render a haproxy.cfg (read-write 5000, read-only 5001, stats 7000) from CONFIG.

    The checks use `pha health` on every node: /primary for read-write,
    /replica (with the maximum lag) for read-only.
    """
    try:
        text = render(read_config(config))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomic(output, text, mode=0o644)      # it holds no secret; HAProxy reads it
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}", err=True)
