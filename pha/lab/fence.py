"""The lab's BMCs: one OpenIPMI `ipmi_sim` per node, fenced with the stock `fence_ipmilan`.

Each node's BMC sits in its own network namespace on the lab switch
(`<prefix>bmc-<node>`, address .200+N of the lab subnet), as a server's BMC sits
on the management network: cutting a node off the switch leaves its BMC
reachable, so the majority can fence it. `ipmi_sim` speaks IPMI 2.0 (RMCP+,
cipher suite 3; it has no suite 17) with one admin user whose random password
lives in the lab state (0600) and in each node's root-only password script
(`PASSWORD_SCRIPT`, passed to the fence devices as password_script: the CIB
never holds it).

Power is the BMC's chassis control program: ipmi_sim runs
`python -m pha.lab.fence power STATE NODE get power | set power 0|1 | set reset 1`.
Power off is a power cut: SIGKILL of the node's PID 1 (the kernel kills
everything in the node's PID namespace; its mount namespace, tmpfs /run and
IPC go with it) and removal of its network namespace (the NIC leaves the
switch, with any VIP, IPVS table or sysctl it held). Power on creates the
network namespace again (its switch port as it was: a cut node stays cut) and
boots the node: a fresh PID 1 runs corosync and pacemaker, as `pha lab up` does.
lab.json is updated under a lock, so `Lab` finds the new PID 1.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Optional

from pha import fencing, files
from pha.lab import config
from pha.lab.core import LabError

if TYPE_CHECKING:
    from pha.lab.core import Lab

BMC_OFFSET = 200
BMC_USER = "admin"
PASSWORD_SCRIPT = "/etc/pacemaker/pha-lab-bmc-password"   # node-private: the lab bind-mounts /etc/pacemaker
DEVICE_OPTIONS = (("username", BMC_USER), ("lanplus", "1"), ("cipher", "3"))
IPMI_SIM = "/usr/bin/ipmi_sim"
IPMITOOL = "/usr/bin/ipmitool"
FENCE_AGENT = "/usr/sbin/fence_ipmilan"
BMC_DIR = "bmc"
LOCK_FILE = "power.lock"
READY_FILE = "ready"
START_TIMEOUT = 10.0
BOOT_DELAY = 8.0
KILL_TIMEOUT = 15.0
_SAFE = re.compile(r"[A-Za-z0-9_./+-]+")   # the chassis control command goes through ipmi_sim's shell


class FenceError(LabError):
    """The lab's BMCs cannot do what was asked (and say why)."""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to give the lab BMCs (empty when it can)."""
    return [path for path in (IPMI_SIM, IPMITOOL, FENCE_AGENT) if not os.access(path, os.X_OK)]


# --- names and addresses ------------------------------------------------------------------------
def member(node: str) -> str:
    """The BMC's member name on the lab switch (netns <prefix>bmc-<node>, port sw-bmc-<node>)."""
    return "bmc-" + node


def bmc_ip(node: str) -> str:
    import ipaddress
    base = ipaddress.IPv4Network(config.SUBNET).network_address
    return str(base + BMC_OFFSET + config.node_index(node))


def members(nodes: list[str]) -> dict[str, str]:
    """The BMCs as lab network members: name -> address."""
    return {member(n): bmc_ip(n) for n in nodes}


def fence_values(nodes: list[str]) -> dict[str, object]:
    """config.ini's fencing values for the lab's BMCs (the same form pha.config gives them)."""
    values: dict[str, object] = {"fencing": "fence_ipmilan", "fence_options": DEVICE_OPTIONS,
                                 "fence_password_script": PASSWORD_SCRIPT, "fence_delay": 10}
    for index, node in enumerate(nodes, 1):
        values[f"fence_node{index}"] = (("ip", bmc_ip(node)),)
    return values


def config_defaults(values: dict[str, object]) -> None:
    """A lab config (lab=yes) without fencing: the lab's BMCs, or none when the lab that is up
    under $PHA_LAB_STATE was brought up with --no-fencing."""
    state = Path(os.environ.get(config.STATE_ENV) or config.DEFAULT_STATE_DIR)
    try:
        info = json.loads((state / "lab.json").read_text())
    except (OSError, ValueError):
        info = None
    if info is not None and not info.get("fencing"):
        values["fencing"] = fencing.NONE
        return
    numbers = sorted(int(k[4:]) for k in values if re.fullmatch(r"node[1-9][0-9]{0,2}", k))
    nodes = [str(values[f"node{n}"]) for n in numbers]
    lab_nodes = [n for n in nodes if _is_lab_node(n)]
    defaults = fence_values(lab_nodes)
    for name in ("fencing", "fence_options", "fence_password_script"):
        if not values.get(name):
            values[name] = defaults[name]
    for index, node in enumerate(nodes, 1):
        if f"fence_node{index}" not in values and _is_lab_node(node):
            values[f"fence_node{index}"] = (("ip", bmc_ip(node)),)


def _is_lab_node(name: str) -> bool:
    try:
        config.node_index(name)
    except config.LabConfigError:
        return False
    return True


def devices(nodes: list[str]) -> list[fencing.Device]:
    """The lab's fence devices: fence_ipmilan against each node's BMC."""
    return fencing.devices_for(fence_values(nodes), nodes)


# --- bringing the BMCs up and down ----------------------------------------------------------------
def _render_lan_conf(node: str, password: str, state_dir: Path) -> str:
    control = [sys.executable, "-m", "pha.lab.fence", "power", str(state_dir), node]
    bad = [word for word in control if not _SAFE.fullmatch(word)]
    if bad:
        raise FenceError(f"cannot give {node} a BMC: {bad[0]!r} is not a plain path (ipmi_sim runs "
                         "its chassis control through a shell)")
    auths = "".join(f"    allowed_auths_{p} md5\n" for p in ("callback", "user", "operator", "admin"))
    return (f'name "pha-bmc-{node}"\n'
            "set_working_mc 0x20\n"
            "  startlan 1\n"
            f"    addr {bmc_ip(node)} 623\n"
            "    priv_limit admin\n"
            f"{auths}"
            f"    guid {secrets.token_hex(16)}\n"
            "  endlan\n"
            f'  chassis_control "{" ".join(control)}"\n'
            f'  user 2 true "{BMC_USER}" "{password}" admin 10 md5\n')


SIM_EMU = ("mc_setbmc 0x20\n"
           "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n"
           "mc_enable 0x20\n")


def start(lab: "Lab") -> dict[str, str]:
    """Start every node's BMC, give the nodes the password script, wait until each BMC answers.

    Returns node -> BMC address. The BMC network members must exist (Lab.up builds them).
    """
    from pha.lab import network
    missing = missing_prerequisites()
    if missing:
        raise FenceError("the lab's fencing needs " + ", ".join(missing)
                         + " (apt-get install openipmi ipmitool fence-agents), or use --no-fencing")
    root = lab.state_dir / BMC_DIR
    root.mkdir(mode=0o700)
    password = secrets.token_hex(8)          # IPMI 1.5 passwords are at most 16 bytes
    files.write_atomic(root / "password", password + "\n", 0o600)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", config.INSTANCE_ENV: str(config.INSTANCE),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    bmcs: dict[str, dict] = {}
    for node in lab.nodes:
        script = lab.node_path(node, PASSWORD_SCRIPT)
        files.write_atomic(script, f"#!/bin/sh\necho {password}\n", 0o700)
        home = root / node
        (home / "state").mkdir(parents=True, mode=0o700)
        files.write_atomic(home / "lan.conf", _render_lan_conf(node, password, lab.state_dir), 0o600)
        files.write_atomic(home / "sim.emu", SIM_EMU, 0o600)
        with open(home / "ipmi_sim.log", "ab") as log:
            proc = subprocess.Popen(
                ["nsenter", f"--net={network.netns_path(config.NETNS_PREFIX + member(node))}", "--",
                 IPMI_SIM, "-n", "-c", str(home / "lan.conf"), "-f", str(home / "sim.emu"),
                 "-s", str(home / "state")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/",
                start_new_session=True)
        bmcs[node] = {"ip": bmc_ip(node), "pid": proc.pid, "pid_start": _start_time(proc.pid)}
    with locked(lab.state_dir):
        lab.info["fencing"] = {"bmcs": bmcs, "user": BMC_USER, "password_script": PASSWORD_SCRIPT}
        lab._save_info()
    deadline = time.monotonic() + START_TIMEOUT
    for node in lab.nodes:
        while power_status(lab, node) is None:
            if time.monotonic() > deadline:
                raise FenceError(f"{node}'s BMC ({bmc_ip(node)}) does not answer; "
                                 f"{root / node / 'ipmi_sim.log'}")
            time.sleep(0.1)
    return {node: bmc_ip(node) for node in lab.nodes}


def enable(lab: "Lab") -> str:
    """Create a fence_ipmilan device per node against its BMC and turn fencing on, in one CIB push;
    say what was done."""
    from pha import cluster, crm

    def run(argv, timeout: float) -> crm.CommandResult:
        try:
            done = lab.exec(lab.nodes[0], list(argv), check=False, timeout=timeout, env={"LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"timed out after {timeout:g}s") from None
        return crm.CommandResult(done.returncode, done.stdout, done.stderr)

    option = fencing.detect_names(lambda argv: run(argv, 30)).enabled
    commands = fencing.device_commands(devices(lab.nodes))
    cluster.apply([*commands, ["pcs", "property", "set", f"{option}=true"]], run)
    return f"{option}=true, fence_ipmilan against {len(lab.nodes)} BMCs"


def power_status(lab: "Lab", node: str) -> Optional[bool]:
    """What node's BMC says over IPMI (from the client namespace): on, off, or None if it does not answer."""
    done = lab.client_exec([IPMITOOL, "-I", "lanplus", "-C", "3", "-H", bmc_ip(node), "-U", BMC_USER,
                            "-f", str(lab.state_dir / BMC_DIR / "password"), "-N", "1", "-R", "1",
                            "chassis", "power", "status"], check=False, timeout=15)
    words = done.stdout.split()
    return None if done.returncode != 0 or not words else words[-1] == "on"


def stop(state_dir: Path, info: Mapping) -> None:
    """Stop the BMCs (before the nodes go down: no power-on may race the teardown)."""
    bmcs = (info.get("fencing") or {}).get("bmcs", {})
    if not bmcs:
        return
    processes = {b["pid"]: b["pid_start"] for b in bmcs.values() if b.get("pid")}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start_time in processes.items():
            if _start_time(pid) == start_time:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while any(_start_time(p) == s for p, s in processes.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
    if (state_dir / "lab.json").exists():
        from pha.lab.core import Lab
        with locked(state_dir):     # a power operation under way finishes first; no boot follows
            lab = Lab.load(state_dir)
            for record in lab.info["nodes"].values():
                record["booting"] = False
            lab._save_info()


# --- power ----------------------------------------------------------------------------------------
@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One power operation (or lab.json update by this module) at a time."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _start_time(pid: int) -> Optional[int]:
    from pha.lab.core import _start_time as start_time
    return start_time(pid)


def is_running(lab: "Lab", node: str) -> bool:
    record = lab.info["nodes"][node]
    return bool(record.get("pid")) and _start_time(record["pid"]) == record.get("pid_start")


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
    while is_running(lab, node) or _start_time(record.get("unshare_pid") or 0) == record.get("unshare_start"):
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
    subprocess.Popen([sys.executable, "-m", "pha.lab.fence", "boot", str(lab.state_dir), node],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     cwd="/", start_new_session=True)


def boot(state_dir: str, node: str) -> int:
    """Boot node after BOOT_DELAY, unless it was powered off (or the lab went down) meanwhile."""
    from pha.lab.core import Lab
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
    from pha.lab.core import Lab
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
        print("usage: python -m pha.lab.fence power STATE_DIR NODE get|set ... | boot STATE_DIR NODE")
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
