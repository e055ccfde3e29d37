"""How the LVS director and get_active_slaves turn names into addresses.

A name's addresses are, first, the ring addresses corosync.conf's nodelist gives a
cluster node of that name, then what the system resolver (/etc/hosts, DNS) says.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from typing import Mapping, Sequence

from pha.lvs.plan import Resolver

COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_CONF_LIMIT = 1 << 20
_RING_ADDR = re.compile(r"ring[0-9]+_addr")


def system_resolver(name: str) -> list[str]:
    """IPv4 addresses of a hostname through the system's resolver (/etc/hosts, DNS)."""
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def parse_corosync_nodes(text: str) -> dict[str, list[str]]:
    """{node name: [its literal IPv4 ring addresses]} from corosync.conf's nodelist. Pure."""
    nodes: dict[str, list[str]] = {}
    sections: list[str] = []
    name, addresses = "", []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        in_node = sections == ["nodelist", "node"]
        if line.endswith("{"):
            sections.append(line[:-1].strip())
            name, addresses = "", []
        elif line == "}":
            if in_node and name:
                nodes[name] = addresses
            sections = sections[:-1]
        elif in_node and ":" in line:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "name":
                name = value
            elif _RING_ADDR.fullmatch(key) and _is_ipv4(value):
                addresses.append(value)
    return nodes


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def cluster_nodes(path: str = COROSYNC_CONF) -> dict[str, list[str]]:
    """The cluster's nodes and their ring addresses; {} without a readable corosync.conf."""
    from pha.files import read_nofollow
    try:
        return parse_corosync_nodes(read_nofollow(path, COROSYNC_CONF_LIMIT))
    except OSError:
        return {}


def resolver(nodes: Mapping[str, Sequence[str]]) -> Resolver:
    """A name's addresses: a cluster node's ring addresses first, then the system resolver's."""
    def resolve(name: str) -> list[str]:
        found = list(nodes.get(name, ()))
        try:
            found += [address for address in system_resolver(name) if address not in found]
        except OSError:
            if not found:
                raise
        return found
    return resolve


def local_resolver() -> Resolver:
    """This node's resolver: its cluster's node list, then the system resolver."""
    return resolver(cluster_nodes())
