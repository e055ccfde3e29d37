"""Addresses, links and sysctls through netlink (pyroute2) and /proc/sys.

Import this module lazily from agents: it imports pyroute2, which is heavy
(the agent worker has it pre-loaded).
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
ETH_P_ARP = 0x0806


class NetError(Exception):
    """A network object is missing or a netlink request failed (with the kernel's errno and message)."""


@contextmanager
def _netlink(what: str) -> Iterator[None]:
    """Turn a failed netlink request into NetError("what: ERRNO message")."""
    try:
        yield
    except NetlinkError as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        message = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
        raise NetError(f"{what}: {errno.errorcode.get(code, str(code))} {message}") from None


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    up: bool
    carrier: bool
    mac: str


def get_link(name: str) -> Optional[Link]:
    """The interface called `name`, or None."""
    with _netlink(f"reading interface {name}"), IPRoute() as ipr:
        found = ipr.link("get", ifname=name) if _exists(ipr, name) else []
    if not found:
        return None
    msg = found[0]
    flags = msg["flags"]
    return Link(name=name, index=msg["index"], up=bool(flags & IFF_UP),
                carrier=bool(flags & IFF_LOWER_UP), mac=msg.get("IFLA_ADDRESS") or "")


def _exists(ipr: IPRoute, name: str) -> bool:
    return bool(ipr.link_lookup(ifname=name))


def route_nic(address: str) -> Optional[str]:
    """The interface that holds `address`, else the one the kernel would use
    to reach it, or None."""
    want = ipaddress.ip_address(address)
    with _netlink(f"finding the interface toward {address}"), IPRoute() as ipr:
        for msg in ipr.get_addr(family=socket.AF_INET if want.version == 4 else socket.AF_INET6):
            if ipaddress.ip_address(msg.get("IFA_ADDRESS")) == want:
                return ipr.link("get", index=msg["index"])[0].get("IFLA_IFNAME")
        try:
            routes = ipr.route("get", dst=address)
        except Exception:
            return None
        for route in routes:
            oif = route.get("RTA_OIF")
            if oif and route["type"] == 1:  # RTN_UNICAST: a real path, not blackhole
                return ipr.link("get", index=oif)[0].get("IFLA_IFNAME")
    return None


def covering_prefix(nic: str, address: str) -> Optional[int]:
    """Prefix length of an address already on `nic` whose network holds `address`."""
    ip = ipaddress.ip_address(address)
    for addr, prefixlen, _ in addresses(nic):
        if ip in ipaddress.ip_network(f"{addr}/{prefixlen}", strict=False):
            return prefixlen
    return None


def networks_holding(address: str) -> list[ipaddress.IPv4Network]:
    """The networks (prefix shorter than /32) of this host's IPv4 addresses that hold `address`."""
    want = ipaddress.IPv4Address(address)
    with _netlink("reading IPv4 addresses"), IPRoute() as ipr:
        found = [(m.get("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.get_addr(family=socket.AF_INET)]
    networks = [ipaddress.IPv4Network(f"{a}/{p}", strict=False) for a, p in found if a and p < 32]
    return list(dict.fromkeys(n for n in networks if want in n and not n.is_loopback))


def addresses(nic: str) -> list[tuple[str, int, str]]:
    """(address, prefixlen, label) of every address on `nic`."""
    with _netlink(f"reading the addresses of {nic}"), IPRoute() as ipr:
        index = ipr.link_lookup(ifname=nic)
        if not index:
            raise NetError(f"no interface {nic}")
        return [(m.get("IFA_ADDRESS"), m["prefixlen"], m.get("IFA_LABEL") or "")
                for m in ipr.get_addr(index=index[0])]


def has_address(nic: str, address: str, prefixlen: Optional[int] = None) -> bool:
    """Whether `address` (with `prefixlen`, if given) is on `nic`."""
    want = ipaddress.ip_address(address)
    return any(ipaddress.ip_address(a) == want and (prefixlen is None or p == prefixlen)
               for a, p, _ in addresses(nic))


def add_address(nic: str, address: str, prefixlen: int, label: Optional[str] = None) -> None:
    """Add `address/prefixlen` to `nic` (no-op when present)."""
    if has_address(nic, address, prefixlen):
        return
    ip = ipaddress.ip_address(address)
    extra = {}
    if ip.version == 4:
        extra["broadcast"] = str(ipaddress.ip_network(f"{ip}/{prefixlen}", strict=False)
                                 .broadcast_address) if prefixlen < 31 else None
        if label:
            extra["label"] = label
    extra = {k: v for k, v in extra.items() if v}
    with _netlink(f"adding {ip}/{prefixlen} to {nic}"), IPRoute() as ipr:
        index = ipr.link_lookup(ifname=nic)
        if not index:
            raise NetError(f"no interface {nic}")
        ipr.addr("add", index=index[0], address=str(ip), prefixlen=prefixlen, **extra)


def del_address(nic: str, address: str) -> bool:
    """Remove every `address` from `nic`; True when something was removed."""
    want = ipaddress.ip_address(address)
    removed = False
    with _netlink(f"removing {want} from {nic}"), IPRoute() as ipr:
        index = ipr.link_lookup(ifname=nic)
        if not index:
            return False
        for msg in ipr.get_addr(index=index[0]):
            if ipaddress.ip_address(msg.get("IFA_ADDRESS")) == want:
                ipr.addr("del", index=index[0], address=str(want), prefixlen=msg["prefixlen"])
                removed = True
    return removed


def gratuitous_arp(nic: str, address: str, count: int, interval_ms: int) -> None:
    """Announce `address` on `nic` with `count` gratuitous ARP requests."""
    link = get_link(nic)
    if link is None:
        raise NetError(f"no interface {nic}")
    mac = bytes.fromhex(link.mac.replace(":", ""))
    ip = socket.inet_aton(address)
    broadcast = b"\xff" * 6
    frame = (broadcast + mac + struct.pack("!H", ETH_P_ARP)
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)   # Ethernet, IPv4, request
             + mac + ip + b"\x00" * 6 + ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((nic, ETH_P_ARP))
        for n in range(count):
            if n:
                time.sleep(interval_ms / 1000)
            sock.send(frame)


def sysctl_path(name: str) -> str:
    """/proc/sys path of `name`; write it with slashes when a part holds a dot."""
    return "/proc/sys/" + (name if "/" in name else name.replace(".", "/"))


def sysctl_get(name: str) -> str:
    with open(sysctl_path(name)) as f:
        return f.read().strip()


def sysctl_set(name: str, value: str) -> None:
    fd = os.open(sysctl_path(name), os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)
