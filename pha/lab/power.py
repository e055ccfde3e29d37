"""A lab BMC's power: the chassis control program ipmi_sim runs (`python -m pha.lab.power power
STATE NODE get power | set power 0|1 | set reset 1`) and the boot that follows a power on.

Power off is a power cut: SIGKILL of the node's PID 1 and removal of its network
namespace. Power on creates the namespace again (its switch port as it was) and,
after BOOT_DELAY, boots the node as `pha lab up` does. Every change of lab.json
happens under pha.lab.fence.locked. See pha.lab.fence for the BMCs themselves.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pha.lab import config
from pha.lab.core import Lab
from pha.lab.fence import BMC_DIR, BOOT_DELAY, KILL_TIMEOUT, READY_FILE, FenceError, locked
from pha.lab.procs import start_time


def is_running(lab: "Lab", node: str) -> bool:
    record = lab.info["nodes"][node]
    return bool(record.get("pid")) and start_time(record["pid"]) == record.get("pid_start")


def is_on(lab: "Lab", node: str) -> bool:
    """Powered: running, or booting (see power_on)."""
    return is_running(lab, node) or bool(lab.info["nodes"][node].get("booting"))


def power_off(lab: "Lab", node: str) -> None:
    """Cut node's power: kill its PID 1 (and so its PID namespace), unplug its NIC."""
    from pha.lab import network
    record = lab.info["nodes"][node]
    record["booting"] = False
    if is_running(lab, node):
        os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + KILL_TIMEOUT
    while is_running(lab, node) or start_time(record.get("unshare_pid") or 0) == record.get("unshare_start"):
        if time.monotonic() > deadline:
            raise FenceError(f"{node}: PID {record['pid']} did not die within {KILL_TIMEOUT:.0f}s")
        time.sleep(0.02)
    netns = config.node_netns(node)
    if os.path.exists(network.netns_path(netns)):
        record["port_up"] = network.port_is_up(node)
        _unplug(node)
        network.destroy([netns])
    try:
        os.unlink(lab.state_dir / node / READY_FILE)
    except FileNotFoundError:
        pass


def power_on(lab: "Lab", node: str) -> None:
    """Plug node's NIC back in (its switch port as it was) and have it boot BOOT_DELAY s later.

    A server takes that long at least: by then the fence action that powered it on has
    returned and the cluster knows it fenced the node. A node rejoining before that hears
    of its own fencing and stops (fence-reaction=stop).
    """
    if is_on(lab, node):
        return
    _plug(node, bool(lab.info["nodes"][node].get("port_up", True)))
    lab.info["nodes"][node]["booting"] = True
    subprocess.Popen([sys.executable, "-m", "pha.lab.power", "boot", str(lab.state_dir), node],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     cwd="/", start_new_session=True)


def boot(state_dir: str, node: str) -> int:
    """Boot node after BOOT_DELAY, unless it was powered off (or the lab went down) meanwhile."""
    time.sleep(BOOT_DELAY)
    if not (Path(state_dir) / "lab.json").exists():
        return 0
    with locked(Path(state_dir)):
        lab = Lab.load(state_dir)
        record = lab.info["nodes"][node]
        if not record.get("booting") or is_running(lab, node):
            return 0
        record["booting"] = False
        lab._start_nodes([node])
    return 0


def _unplug(node: str) -> None:
    """Delete node's switch port (and so its eth0, the other end of the veth) at once. The kernel frees
    the namespace itself only when its last socket is gone: a cut node's TCP connections can keep it
    for a minute, and with it a veth a new boot could not be plugged in beside."""
    from pyroute2 import NetNS
    with NetNS(config.SWITCH_NETNS) as switch:
        found = switch.link_lookup(ifname=config.switch_port(node))
        if found:
            switch.link("del", index=found[0])


def _plug(node: str, port_up: bool) -> None:
    """A fresh network namespace for node, wired to the lab switch (as pha.lab.network.build does)."""
    from pyroute2 import NetNS, netns
    from pha.lab import network
    name = config.node_netns(node)
    if not os.path.exists(network.netns_path(name)):
        netns.create(name)
    with NetNS(config.SWITCH_NETNS) as switch:
        bridge = switch.link_lookup(ifname=config.BRIDGE)[0]
        port = config.switch_port(node)
        if switch.link_lookup(ifname=port):
            return                          # wired already
        switch.link("add", ifname=port, kind="veth", peer={"ifname": config.NODE_IFNAME, "net_ns_fd": name})
        switch.link("set", index=switch.link_lookup(ifname=port)[0], master=bridge,
                    state="up" if port_up else "down")
    with NetNS(name) as host:
        host.link("set", index=host.link_lookup(ifname="lo")[0], state="up")
        eth = host.link_lookup(ifname=config.NODE_IFNAME)[0]
        host.addr("add", index=eth, address=config.node_ip(node), prefixlen=config.PREFIXLEN)
        host.link("set", index=eth, state="up")


def chassis_control(state_dir: str, node: str, args: list[str]) -> int:
    """ipmi_sim's chassis control program: `get power`, `set power 0|1`, `set reset 1`.

    Prints `power:1` / `power:0` for get; errors go to stdout (ipmi_sim logs them), exit 1.
    """
    if not args or args[0] not in ("get", "set", "check"):
        print(f"usage: chassis control get PARM... | set PARM VALUE...: got {args}")
        return 1
    op, rest = args[0], args[1:]
    with locked(Path(state_dir)):
        lab = Lab.load(state_dir)
        if node not in lab.nodes:
            print(f"{node} is not a node of the lab under {state_dir}")
            return 1
        if op == "check":
            return 1
        if op == "get":
            answers = {"power": lambda: str(int(is_on(lab, node))), "boot": lambda: "default"}
            unknown = [p for p in rest if p not in answers]
            if unknown:
                print(f"Invalid parameter: {unknown[0]}")
                return 1
            print("\n".join(f"{p}:{answers[p]()}" for p in rest))
            return 0
        for parm, value in zip(rest[0::2], rest[1::2]):
            if parm == "power":
                (power_on if value == "1" else power_off)(lab, node)
            elif parm == "reset" and value == "1":
                power_off(lab, node)
                power_on(lab, node)
        lab._save_info()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[1] not in ("power", "boot"):
        print("usage: python -m pha.lab.power power STATE_DIR NODE get|set ... | boot STATE_DIR NODE")
        return 2
    signal.pthread_sigmask(signal.SIG_SETMASK, [])   # ipmi_sim's blocked signals must not reach the node
    state_dir, node = argv[2], argv[3]
    try:
        if argv[1] == "boot":
            code = boot(state_dir, node)
        else:
            code = chassis_control(state_dir, node, argv[4:])
        outcome = f"exit {code}"
    except Exception as exc:    # ipmi_sim passes our stdout to syslog; the power log keeps it too
        print(f"{node}: power control failed: {type(exc).__name__}: {exc}")
        code, outcome = 1, f"failed: {type(exc).__name__}: {exc}"
    _log(state_dir, node, f"{' '.join(argv[4:]) or argv[1]}: {outcome}")
    return code


def _log(state_dir: str, node: str, line: str) -> None:
    """One line in BMC_DIR/<node>/power.log: what the BMC did, when (the lab tests time fencing by it)."""
    try:
        with open(Path(state_dir) / BMC_DIR / node / "power.log", "a") as log:
            log.write(f"{time.time():.3f} {line}\n")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
