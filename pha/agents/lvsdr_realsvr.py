"""ocf:pha:lvsdr-realsvr: make this node an LVS direct-routing real server for the reader VIP.

start sets arp_ignore=1 and arp_announce=2 on lo and all (so the node never answers ARP
for the VIP), then adds the VIP as a /32 on lo with a label, through netlink; lo is never
taken down. stop removes the VIP and puts back the sysctl values start changed, which it
remembered in a 0600 state file. monitor checks both the address and the sysctls.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Optional

from pha import __version__, ocf
from pha.files import private_dir, read_nofollow, write_json
from pha.values import check_lo_label

STATE_DIR = "/run/pha"
ARP_SETTINGS = {"arp_ignore": "1", "arp_announce": "2"}
DEVICES = ("lo", "all")
STATE_PREFIX = "lvsdr-realsvr."


def sysctl_names() -> dict[str, str]:
    """Every sysctl start sets, with its value."""
    return {f"net.ipv4.conf.{dev}.{key}": value for dev in DEVICES for key, value in ARP_SETTINGS.items()}


def arp_problem(values: dict[str, str]) -> Optional[str]:
    """Why these sysctl values would let the node answer ARP for the VIP, or None. Pure."""
    for dev in DEVICES:
        ignore = values.get(f"net.ipv4.conf.{dev}.arp_ignore", "")
        announce = values.get(f"net.ipv4.conf.{dev}.arp_announce", "")
        if not ignore.isdigit() or int(ignore) < 1:
            return f"net.ipv4.conf.{dev}.arp_ignore is {ignore or 'unreadable'}, not 1"
        if announce != "2":
            return f"net.ipv4.conf.{dev}.arp_announce is {announce or 'unreadable'}, not 2"
    return None


def to_restore(saved: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """Sysctls to put back: those still holding the value start set (not changed since). Pure."""
    ours = sysctl_names()
    return {name: value for name, value in saved.items()
            if name in ours and current.get(name) == ours[name] and value != ours[name]}


def _check_vip(value: ocf.Value) -> Optional[str]:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        return "is not an IPv4 address"
    if ip.version != 4 or ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        return "is not a unicast IPv4 address"
    return None


def _check_label(value: ocf.Value) -> None:
    check_lo_label(str(value))          # a ValueError names the problem


AGENT = ocf.Agent(
    name="lvsdr-realsvr",
    version=__version__,
    shortdesc="LVS direct-routing real server (VIP on lo, ARP sysctls)",
    longdesc=__doc__.split("\n\n", 1)[1].strip(),
    params=[
        ocf.Param("vip", "string", required=True, unique_group="vip", check=_check_vip,
                  shortdesc="Virtual IP of the virtual service",
                  longdesc="The reader VIP the director balances; added to lo as a /32."),
        ocf.Param("nic_lo", "string", default="lo:0", check=_check_label,
                  shortdesc="Label of the VIP on lo",
                  longdesc="Address label, e.g. lo:0 as in pha4pgsql; plain lo means no label."),
    ],
    actions=[
        ocf.Action("start", timeout=20),
        ocf.Action("stop", timeout=20),
        ocf.Action("monitor", timeout=20, interval=10, depth=0),
        ocf.Action("meta-data", timeout=5),
        ocf.Action("validate-all", timeout=20),
    ],
)


def state_dir(res: ocf.Resource) -> str:
    return res.env.get("PHA_STATE_DIR", STATE_DIR)


def state_path(res: ocf.Resource) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", res.instance)
    return os.path.join(state_dir(res), f"{STATE_PREFIX}{safe}.json")


def _read_sysctls() -> dict[str, str]:
    from pha import net
    values = {}
    for name in sysctl_names():
        try:
            values[name] = net.sysctl_get(name)
        except OSError:
            values[name] = ""
    return values


def _write_sysctl(name: str, value: str) -> None:
    from pha import net
    try:
        net.sysctl_set(name, value)
    except OSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, f"cannot set {name}={value}: {exc.strerror or exc}") from None


def _save_originals(res: ocf.Resource, values: dict[str, str]) -> None:
    """Remember the values found before start changed them (once: a second start keeps them)."""
    path = state_path(res)
    if os.path.lexists(path):
        return
    private_dir(os.path.dirname(path))
    write_json(path, {"vip": res.params["vip"], "sysctls": values})


def _load_originals(res: ocf.Resource) -> dict[str, str]:
    try:
        saved = json.loads(read_nofollow(state_path(res))).get("sysctls", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}


def _other_instances(res: ocf.Resource) -> list[str]:
    """State files of other lvsdr-realsvr instances on this node (they still need the sysctls)."""
    mine = os.path.basename(state_path(res))
    try:
        names = os.listdir(state_dir(res))
    except OSError:
        return []
    return [n for n in names if n.startswith(STATE_PREFIX) and n.endswith(".json") and n != mine]


def _label(res: ocf.Resource) -> Optional[str]:
    label = str(res.params["nic_lo"])
    return label if label != "lo" else None


@AGENT.handler("start")
def start(res: ocf.Resource) -> int:
    from pha import net
    vip = str(res.params["vip"])
    current = _read_sysctls()
    _save_originals(res, current)
    for name, value in sysctl_names().items():       # before the VIP: never answer ARP for it
        if current[name] != value:
            _write_sysctl(name, value)
    try:
        net.add_address("lo", vip, 32, _label(res))
    except net.NetError as exc:     # names the request, the errno and the kernel's message
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None
    res.log.info(f"{vip}/32 on lo ({res.params['nic_lo']}), arp_ignore=1 arp_announce=2 on lo and all")
    return ocf.SUCCESS


@AGENT.handler("stop")
def stop(res: ocf.Resource) -> int:
    from pha import net
    vip = str(res.params["vip"])
    try:
        if net.del_address("lo", vip):
            res.log.info(f"{vip} removed from lo")
    except net.NetError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None
    saved = _load_originals(res)
    others = _other_instances(res)
    if others:
        res.log.info(f"ARP sysctls left as they are: other real-server instances here ({', '.join(others)})")
    else:
        for name, value in to_restore(saved, _read_sysctls()).items():
            _write_sysctl(name, value)
            res.log.info(f"{name} restored to {value}")
    try:
        os.unlink(state_path(res))
    except FileNotFoundError:
        pass
    return ocf.SUCCESS


@AGENT.handler("monitor")
def monitor(res: ocf.Resource) -> int:
    from pha import net
    vip = str(res.params["vip"])
    try:
        held = any(address == vip and prefix == 32 for address, prefix, _ in net.addresses("lo"))
    except net.NetError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None
    if not held:
        return ocf.NOT_RUNNING
    problem = arp_problem(_read_sysctls())
    if problem:
        raise ocf.OCFError(ocf.ERR_GENERIC, f"{vip} is on lo but {problem}: this node may answer ARP for it")
    return ocf.SUCCESS
