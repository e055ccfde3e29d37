"""The lab network, built with pyroute2: a bridge in its own netns, one veth per member.

Host namespace: only a blackhole route for the lab subnet, so that nothing the
host sends to a lab address can follow the default route out of the machine.
"""
from __future__ import annotations

import os

from pha.lab import config

NETNS_DIR = "/run/netns"
RTN_BLACKHOLE = 6
IFF_UP = 1


def existing_lab_netns() -> list[str]:
    """Lab namespaces (pha-*) present on this machine."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(config.NETNS_PREFIX))


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def build(members: dict[str, str]) -> None:
    """Create the switch and one netns per member (name -> IPv4 address), all wired to the bridge.

    A member's netns is `pha-<name>`, its interface `eth0` with address/24,
    and the only route it gets is the connected lab subnet.
    """
    from pyroute2 import NetNS, netns

    netns.create(config.SWITCH_NETNS)
    with NetNS(config.SWITCH_NETNS) as switch:
        switch.link("set", index=switch.link_lookup(ifname="lo")[0], state="up")
        switch.link("add", ifname=config.BRIDGE, kind="bridge")
        bridge = switch.link_lookup(ifname=config.BRIDGE)[0]
        switch.link("set", index=bridge, state="up")
        for name in members:
            member_ns = config.NETNS_PREFIX + name
            netns.create(member_ns)
            port = config.switch_port(name)
            switch.link("add", ifname=port, kind="veth",
                        peer={"ifname": config.NODE_IFNAME, "net_ns_fd": member_ns})
            switch.link("set", index=switch.link_lookup(ifname=port)[0], master=bridge, state="up")
    for name, address in members.items():
        with NetNS(config.NETNS_PREFIX + name) as member:
            member.link("set", index=member.link_lookup(ifname="lo")[0], state="up")
            eth = member.link_lookup(ifname=config.NODE_IFNAME)[0]
            member.addr("add", index=eth, address=address, prefixlen=config.PREFIXLEN)
            member.link("set", index=eth, state="up")


def destroy(names: list[str]) -> None:
    """Delete the given lab namespaces (veths and bridge go with them); missing ones are skipped."""
    from pyroute2 import netns

    for name in names:
        if os.path.exists(netns_path(name)):
            netns.remove(name)


def set_port(member: str, up: bool) -> None:
    """Set a member's switch-side veth up or down (heal / cut)."""
    from pyroute2 import NetNS

    port = config.switch_port(member)
    with NetNS(config.SWITCH_NETNS) as switch:
        found = switch.link_lookup(ifname=port)
        if not found:
            raise config.LabConfigError(f"node: {member!r} has no switch port {port!r} in {config.SWITCH_NETNS}")
        switch.link("set", index=found[0], state="up" if up else "down")


def port_is_up(member: str) -> bool:
    from pyroute2 import NetNS

    with NetNS(config.SWITCH_NETNS) as switch:
        found = switch.link_lookup(ifname=config.switch_port(member))
        return bool(found) and bool(switch.get_links(found[0])[0]["flags"] & IFF_UP)


def host_routes_for_subnet() -> list[dict]:
    """Routes of the host namespace whose destination is exactly the lab subnet."""
    from pyroute2 import IPRoute

    base, prefixlen = config.SUBNET.split("/")
    with IPRoute() as ipr:
        return [{"type": route["type"], "table": route.get_attr("RTA_TABLE")}
                for route in ipr.route("dump")
                if route.get_attr("RTA_DST") == base and route["dst_len"] == int(prefixlen)]




def add_blackhole() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.route("add", dst=config.SUBNET, type="blackhole")


def remove_blackhole() -> None:
    from pyroute2 import IPRoute

    if any(r["type"] == RTN_BLACKHOLE for r in host_routes_for_subnet()):
        with IPRoute() as ipr:
            ipr.route("del", dst=config.SUBNET, type="blackhole")


def has_blackhole() -> bool:
    return any(r["type"] == RTN_BLACKHOLE for r in host_routes_for_subnet())
