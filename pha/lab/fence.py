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
`python -m pha.lab.power power STATE NODE get power | set power 0|1 | set reset 1`.
Power off is a power cut: SIGKILL of the node's PID 1 (the kernel kills
everything in the node's PID namespace; its mount namespace, tmpfs /run and
IPC go with it) and removal of its network namespace (the NIC leaves the
switch, with any VIP, IPVS table or sysctl it held). Power on creates the
network namespace again (its switch port as it was: a cut node stays cut) and
boots the node: a fresh PID 1 runs corosync and pacemaker, as `pha lab up` does.
lab.json is updated under a lock, so `Lab` finds the new PID 1. The power side
(the chassis control program and the boot) is pha.lab.power.
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
from typing import TYPE_CHECKING, Iterator, Optional

from pha import fencekeys, fencing, files
from pha.lab import config
from pha.lab.procs import LabError, start_time

if TYPE_CHECKING:
    from pha.lab.core import Lab

BMC_OFFSET = 200
BMC_USER = "admin"
PASSWORD_SCRIPT = "/etc/pacemaker/pha-lab-bmc-password"   # node-private: the lab bind-mounts /etc/pacemaker
# power_wait=0: this BMC has switched the power when it answers (power off returns once the
# node's PID 1 is dead), so fence_ipmilan's default wait of 2 s after OFF and after ON only adds
# 4 s to a reboot (measured: 5.7 s with it, 1.5 s without). Real BMCs keep the default unless
# they, too, report the new power state at once.
DEVICE_OPTIONS = (("username", BMC_USER), ("lanplus", "1"), ("cipher", "3"), ("power_wait", "0"))
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
        values["fencing"] = fencekeys.NONE
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
    control = [sys.executable, "-m", "pha.lab.power", "power", str(state_dir), node]
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
        bmcs[node] = {"ip": bmc_ip(node), "pid": proc.pid, "pid_start": start_time(proc.pid)}
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


def stop(lab: "Lab") -> None:
    """Stop the BMCs (before the nodes go down: no power-on may race the teardown)."""
    info = lab._read_info() or lab.info
    bmcs = (info.get("fencing") or {}).get("bmcs", {})
    if not bmcs:
        return
    processes = {b["pid"]: b["pid_start"] for b in bmcs.values() if b.get("pid")}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in processes.items():
            if start_time(pid) == started:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while any(start_time(p) == s for p, s in processes.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
    if (lab.state_dir / "lab.json").exists():
        with locked(lab.state_dir):     # a power operation under way finishes first; no boot follows
            current = type(lab).load(lab.state_dir)
            for record in current.info["nodes"].values():
                record["booting"] = False
            current._save_info()


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
