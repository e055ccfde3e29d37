"""ocf:pha:vip: a virtual IP address managed through netlink (IPaddr2, in Python).

start adds the address and announces it with gratuitous ARP; monitor checks
the address and the link; stop removes it. pyroute2 is imported only inside
the actions (the agent worker has it pre-loaded).
"""
from __future__ import annotations

import ipaddress
import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from pha import __version__, ocf
from pha.values import check_ifname

IFNAMSIZ = 16


def _nic(value: ocf.Value) -> None:
    check_ifname(str(value))            # a ValueError names the problem


def _label(value: ocf.Value) -> Optional[str]:
    check_ifname(str(value))
    return None if len(str(value)) < IFNAMSIZ - 1 else "must be at most 14 characters"


def _address(value: ocf.Value) -> Optional[str]:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "is not an IPv4 or IPv6 address"
    return None


AGENT = ocf.Agent(
    name="vip",
    version=__version__,
    shortdesc="Virtual IP address (netlink)",
    longdesc=("Manages a virtual IP address on a network interface through netlink, "
              "as a faster IPaddr2: start adds the address and sends gratuitous ARP, "
              "monitor checks that the address is present and the link is up, stop removes it."),
    params=[
        ocf.Param("ip", "string", required=True, unique=True, check=_address,
                  shortdesc="Virtual IP address",
                  longdesc="The IPv4 or IPv6 address to manage, e.g. 192.168.1.100."),
        ocf.Param("cidr_netmask", "integer",
                  check=lambda v: None if 1 <= int(v) <= 128 else "must be a prefix length (1-32, or 1-128 for IPv6)",
                  shortdesc="Prefix length",
                  longdesc=("Prefix length of the address, e.g. 24. When omitted, the prefix of an "
                            "address already on the interface that covers ip, else 32 (128 for IPv6).")),
        ocf.Param("nic", "string", check=_nic,
                  shortdesc="Network interface",
                  longdesc=("Interface to add the address to (1-15 of A-Z a-z 0-9 _ . -). When omitted, "
                            "the interface of the kernel's route to ip.")),
        ocf.Param("label", "string",
                  check=_label,
                  shortdesc="Address label suffix",
                  longdesc="IPv4 only: the address gets the label NIC:LABEL (15 characters at most)."),
        ocf.Param("arp_count", "integer", default=5,
                  check=lambda v: None if 0 <= int(v) <= 100 else "must be 0-100",
                  shortdesc="Gratuitous ARPs to send on start",
                  longdesc="How many gratuitous ARP requests start sends (IPv4 only); 0 sends none."),
        ocf.Param("arp_interval", "integer", default=200,
                  check=lambda v: None if 10 <= int(v) <= 10000 else "must be 10-10000 ms",
                  shortdesc="Milliseconds between gratuitous ARPs",
                  longdesc="Interval between two gratuitous ARP requests, in milliseconds."),
    ],
    actions=[
        ocf.Action("start", timeout=20),
        ocf.Action("stop", timeout=20),
        ocf.Action("monitor", timeout=20, interval=10, depth=0),
        ocf.Action("meta-data", timeout=5),
        ocf.Action("validate-all", timeout=20),
    ],
)


class Target:
    """Where the address goes: interface, prefix length and label."""

    def __init__(self, res: ocf.Resource) -> None:
        from pha import net
        self.ip = str(ipaddress.ip_address(res.params["ip"]))
        self.version = ipaddress.ip_address(self.ip).version
        nic = res.params["nic"] or net.route_nic(self.ip)
        if not nic:
            raise ocf.OCFError(ocf.ERR_CONFIGURED,
                               f"parameter nic is not set and no route leads to ip={self.ip}")
        if net.get_link(str(nic)) is None:
            raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter nic={nic}: no such interface")
        self.nic = str(nic)
        prefix = res.params["cidr_netmask"]
        if prefix is None:
            prefix = net.covering_prefix(self.nic, self.ip) or (32 if self.version == 4 else 128)
        if self.version == 4 and int(prefix) > 32:
            raise ocf.OCFError(ocf.ERR_CONFIGURED,
                               f"parameter cidr_netmask={prefix} is longer than 32 for IPv4 {self.ip}")
        self.prefixlen = int(prefix)
        self.label = f"{self.nic}:{res.params['label']}" if res.params["label"] else None
        if self.label and (self.version != 4 or len(self.label) >= IFNAMSIZ):
            raise ocf.OCFError(ocf.ERR_CONFIGURED,
                               f"parameter label: {self.label} needs IPv4 and at most 15 characters")


def target_of(res: ocf.Resource) -> Target:
    """The resource's Target, resolved once per invocation."""
    with _netlink_failure():
        return res.cached("target", lambda: Target(res))


@contextmanager
def _netlink_failure() -> Iterator[None]:
    """A failed netlink request ends the action with OCF_ERR_GENERIC and the kernel's reason."""
    from pha import net
    try:
        yield
    except net.NetError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


@AGENT.validator
def validate(res: ocf.Resource) -> None:
    target_of(res)


@AGENT.handler("start")
def start(res: ocf.Resource) -> int:
    from pha import net
    target = target_of(res)
    with _netlink_failure():
        net.add_address(target.nic, target.ip, target.prefixlen, target.label)
    if target.version == 4 and res.params["arp_count"]:
        _announce(res, target)
    res.log.info(f"{target.ip}/{target.prefixlen} added to {target.nic}")
    return ocf.SUCCESS


def _announce(res: ocf.Resource, target: Target) -> None:
    """First gratuitous ARP now, the rest from a detached child (start returns at once)."""
    from pha import net
    count, interval = int(res.params["arp_count"]), int(res.params["arp_interval"])
    try:
        net.gratuitous_arp(target.nic, target.ip, 1, interval)
    except (net.NetError, OSError) as exc:
        res.log.warning(f"no gratuitous ARP for {target.ip} on {target.nic}: {exc}")
        return
    if count < 2 or os.fork():
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        time.sleep(interval / 1000)       # arp_interval after the first one, too
        net.gratuitous_arp(target.nic, target.ip, count - 1, interval)
    finally:
        os._exit(0)


@AGENT.handler("stop")
def stop(res: ocf.Resource) -> int:
    from pha import net
    ip = str(res.params["ip"])
    nic = res.params["nic"]
    nics = [str(nic)] if nic else [link for link in _links()]
    with _netlink_failure():
        for name in nics:
            if net.get_link(name) is not None and net.del_address(name, ip):
                res.log.info(f"{ip} removed from {name}")
    return ocf.SUCCESS


def _links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


@AGENT.handler("monitor")
def monitor(res: ocf.Resource) -> int:
    from pha import net
    target = target_of(res)
    with _netlink_failure():
        if not net.has_address(target.nic, target.ip):
            return ocf.NOT_RUNNING
        link = net.get_link(target.nic)
    if link is None or not (link.up and link.carrier):
        raise ocf.OCFError(ocf.ERR_GENERIC, f"{target.ip} is on {target.nic}, but its link is down")
    return ocf.SUCCESS
