"""Pure decisions of the LVS director: no I/O here (name resolution is passed in).

- the parameters' own grammars (weight_of_realservers, the deprecated ipvsadm options);
- which names may become real servers, and at which address: a name is checked before
  it is resolved, and a standby the primary reports becomes a real server only at the
  address it really connects from (its pg_stat_replication.client_addr);
- lag draining with hysteresis;
- the real servers to program, handed to pha.ipvs.plan for the netlink changes.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from pha.ipvs import MAX_WEIGHT, RealServer
from pha.values import parse_int, shown

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
DEFAULT_PERSISTENT_TIMEOUT = 300           # ipvsadm's default for a bare -p
MAX_PERSISTENT_TIMEOUT = 31536000
HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)

Resolver = Callable[[str], Sequence[str]]          # name -> its IPv4 addresses (OSError if none)
Networks = Sequence[ipaddress.IPv4Network]


# ---------------------------------------------------------------------- names and addresses

def ipv4_problem(value: str) -> Optional[str]:
    """Why `value` cannot be a service or real-server address, or None."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "is not an IPv4 address"
    if ip.version != 4:
        return "is not an IPv4 address"
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local \
            or ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "is not a unicast host address"
    return None


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a real server's name (syntax only, nothing resolved), or None."""
    if not name:
        return "is empty"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return ipv4_problem(name)
    if not HOSTNAME.fullmatch(name) or name.replace(".", "").isdigit():
        return "is neither an IPv4 address nor a valid hostname"
    return None


def _literal(name: str) -> Optional[str]:
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        return None


def _addresses(name: str, resolver: Resolver) -> tuple[list[str], str]:
    """(IPv4 addresses of a valid name, "") or ([], why not)."""
    literal = _literal(name)
    if literal is not None:
        return [literal], ""
    try:
        found = list(resolver(name))
    except (OSError, UnicodeError) as exc:
        return [], f"{name} does not resolve ({exc})"
    if not found:
        return [], f"{name} does not resolve to an IPv4 address"
    return found, ""


def resolve_real_server(name: str, networks: Networks, resolver: Resolver) -> tuple[Optional[str], str]:
    """(address, "") for a usable real server named `name`, else (None, why not).

    The name is checked before anything resolves it; a hostname stands for its first address.
    """
    problem = name_problem(name)
    if problem:
        return None, f"{shown(name)} {problem}"
    found, problem = _addresses(name, resolver)
    if not found:
        return None, problem
    address = found[0]
    problem = ipv4_problem(address)
    if problem:
        return None, f"{name} resolves to {address}, which {problem}"
    return _inside(name, address, networks)


def standby_address(name: str, client_addr: Optional[str], networks: Networks,
                    resolver: Resolver) -> tuple[Optional[str], str]:
    """(address, "") where a standby the primary reports may serve reads, else (None, why not).

    Its application_name must be a valid name that is, or resolves to, the address it
    connects from (client_addr); that address is the real server. A standby on a unix
    socket or on loopback never becomes a real server by itself: the name alone would
    decide, and any local process can pick any application_name.
    """
    problem = name_problem(name)
    if problem:
        return None, f"standby {shown(name)} {problem}"
    if client_addr is None:
        return None, f"standby {name} connects over a unix socket: not a real server"
    try:
        ip = ipaddress.ip_address(client_addr)
    except ValueError:
        return None, f"standby {name} connects from {shown(client_addr)}, which is not an address"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None, f"standby {name} connects from {ip} (loopback): not a real server"
    address = str(ip)
    problem = ipv4_problem(address)
    if problem:
        return None, f"standby {name} connects from {address}, which {problem}"
    found, problem = _addresses(name, resolver)
    if address not in found:
        said = problem or f"{name} is {', '.join(found)}"
        return None, f"standby {name} connects from {address}, but {said}: not a real server"
    return _inside(name, address, networks)


def _inside(name: str, address: str, networks: Networks) -> tuple[Optional[str], str]:
    if networks and not any(ipaddress.IPv4Address(address) in net for net in networks):
        return None, f"{name} ({address}) is outside allowed_networks"
    return address, ""


@dataclass(frozen=True)
class Candidate:
    """A healthy real server by name, with its replay lag in bytes when known.

    `from_primary`: the primary reported it in pg_stat_replication, connecting from
    `client_addr` (None: a unix socket).
    """

    name: str
    lag_bytes: Optional[int] = None
    from_primary: bool = False
    client_addr: Optional[str] = None


def admitted(candidates: Iterable[Candidate], networks: Networks,
             resolver: Resolver) -> tuple[list[tuple[Candidate, str]], list[str]]:
    """([(candidate, address)] of the usable candidates, [why each other one is skipped])."""
    usable: list[tuple[Candidate, str]] = []
    skipped: list[str] = []
    for candidate in candidates:
        if candidate.from_primary:
            address, problem = standby_address(candidate.name, candidate.client_addr, networks, resolver)
        else:
            address, problem = resolve_real_server(candidate.name, networks, resolver)
        if address is None:
            skipped.append(problem)
        else:
            usable.append((candidate, address))
    return usable, skipped


def parse_lag(text: Optional[str]) -> Optional[int]:
    """A lag attribute in bytes ("1024"), None when absent or not a count of bytes."""
    if not text:
        return None
    try:
        lag = parse_int(text)
    except ValueError:
        return None
    return lag if lag >= 0 else None


# ---------------------------------------------------------------------- parameters

def parse_weights(text: str, default_weight: int) -> dict[str, int]:
    """weight_of_realservers "node1,2 node2,1 10.0.0.4" -> {name: weight}; no weight = default."""
    weights: dict[str, int] = {}
    for item in text.split():
        name, sep, weight_text = item.partition(",")
        problem = name_problem(name)
        if problem:
            raise ValueError(f"{shown(name)!r} {problem}")
        if name in weights:
            raise ValueError(f"{name!r} is listed twice")
        if sep and weight_text:
            weights[name] = _bounded(weight_text, 0, MAX_WEIGHT,
                                     f"weight {shown(weight_text)!r} of {name} is not an integer 0-{MAX_WEIGHT}")
        elif sep:
            raise ValueError(f"{shown(item)!r} has a comma but no weight")
        else:
            weights[name] = default_weight
    return weights


def _bounded(text: str, low: int, high: int, message: str) -> int:
    try:
        value = parse_int(text)
    except ValueError:
        raise ValueError(message) from None
    if text.strip()[0] in "+-" or not low <= value <= high:
        raise ValueError(message)
    return value


def parse_service_options(text: str) -> dict[str, object]:
    """The deprecated virtual_service_options ("-s rr -p 300") as scheduler / persistent_timeout.

    Understands ipvsadm's -s/--scheduler NAME and -p/--persistent [SECONDS] (300 when
    omitted), also written -sNAME, -pSECONDS, --scheduler=NAME, --persistent=SECONDS.
    """
    try:
        raw = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words: {exc}") from None
    words: list[str] = []
    for word in raw:
        if word.startswith("--") and "=" in word:
            words += word.split("=", 1)
        elif re.fullmatch(r"-[sp].+", word):
            words += [word[:2], word[2:]]
        else:
            words.append(word)
    found: dict[str, object] = {}
    index = 0
    while index < len(words):
        option = words[index]
        index += 1
        if option in ("-s", "--scheduler"):
            if index >= len(words):
                raise ValueError(f"{option} needs a scheduler name")
            scheduler = words[index]
            index += 1
            if scheduler not in SCHEDULERS:
                raise ValueError(f"scheduler {shown(scheduler)!r} is not one of {', '.join(SCHEDULERS)}")
            found["scheduler"] = scheduler
        elif option in ("-p", "--persistent"):
            timeout = str(DEFAULT_PERSISTENT_TIMEOUT)
            if index < len(words) and not words[index].startswith("-"):
                timeout = words[index]
                index += 1
            found["persistent_timeout"] = _bounded(
                timeout, 1, MAX_PERSISTENT_TIMEOUT,
                f"persistence timeout {shown(timeout)!r} is not 1-{MAX_PERSISTENT_TIMEOUT} seconds")
        else:
            raise ValueError(f"option {shown(option)!r} is not supported (only -s SCHEDULER and -p [TIMEOUT])")
    return found


# ---------------------------------------------------------------------- lag and weights

def lag_step(drained: dict[str, int], lags: dict[str, Optional[int]], max_lag: int,
             resume_checks: int) -> dict[str, int]:
    """Next drain state: name -> monitors in a row with lag <= max_lag/2 while drained.

    A standby is drained when its lag exceeds max_lag, and restored once its lag has stayed
    at or under half of max_lag for `resume_checks` monitors (hysteresis). Standbys no
    longer among the candidates are forgotten; an unknown lag keeps the current state.
    """
    following: dict[str, int] = {}
    for name, lag in lags.items():
        if name in drained:
            if lag is None:
                following[name] = drained[name]
            elif lag <= max_lag // 2:
                if drained[name] + 1 < resume_checks:
                    following[name] = drained[name] + 1
            else:
                following[name] = 0
        elif lag is not None and lag > max_lag:
            following[name] = 0
    return following


def weights_by_address(weights: dict[str, int], resolver: Resolver) -> dict[str, int]:
    """weight_of_realservers by address, for real servers known under another name."""
    found: dict[str, int] = {}
    for name, weight in weights.items():
        address, _ = resolve_real_server(name, [], resolver)
        if address is not None:
            found.setdefault(address, weight)
    return found


def desired_real_servers(healthy: list[tuple[Candidate, str]], weights: dict[str, int],
                         weights_by_address: dict[str, int], default_weight: int, port: int,
                         drained: Iterable[str], current: Iterable[RealServer],
                         inhibit_on_failure: bool) -> list[RealServer]:
    """The real servers to program: one per address, lag-drained ones at weight 0, and with
    inhibit_on_failure every other current one at weight 0 instead of deleted."""
    drained = set(drained)
    wanted: dict[str, RealServer] = {}
    for candidate, address in healthy:
        if address in wanted:
            continue
        weight = weights.get(candidate.name, weights_by_address.get(address, default_weight))
        if candidate.name in drained:
            weight = 0
        wanted[address] = RealServer(address, port, weight)
    if inhibit_on_failure:
        for rs in current:
            if rs.address not in wanted and rs.port == port:
                wanted[rs.address] = RealServer(rs.address, port, 0)
    return list(wanted.values())
