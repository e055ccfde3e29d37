"""vagrant/lab.sh driven from Python: the lab's settings, `lab.sh` runs, commands in its nodes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "vagrant" / "lab.sh"
LAB_NAME = os.environ.get("PHA_VAGRANT_TEST_NAME", "phatest")
LAB_DIR = Path(os.environ.get("PHA_VAGRANT_TEST_DIR", f"/var/tmp/pha-vagrant-{LAB_NAME}"))
NETNS = f"vagrant-{LAB_NAME}"
NET = os.environ.get("PHA_VAGRANT_TEST_NET", "192.168.57")
NODES = 3
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VagrantLab:
    """One run of vagrant/lab.sh, and commands inside its nodes (lxc-attach)."""

    def __init__(self) -> None:
        self.env = {**os.environ, "PHA_LAB_DIR": str(LAB_DIR), "PHA_LAB_NAME": LAB_NAME,
                    "PHA_NET": NET, "PHA_NODES": str(NODES), "PHA_PYTHON": sys.executable}
        self.timings: dict[str, float] = {}
        self.log = LAB_DIR.parent / f"pha-vagrant-{LAB_NAME}.log"

    def lab(self, *args: str, timeout: float = 300) -> None:
        """vagrant/lab.sh ARGS, output appended to the log; raises on failure with its tail.

        It runs in a process group of its own, killed whole on a timeout or an interrupt: a
        Vagrant left running would hold the machines' locks and block the destroy."""
        with open(self.log, "a") as log:
            log.write(f"\n$ lab.sh {' '.join(args)}\n")
            log.flush()
            proc = subprocess.Popen([str(LAB_SH), *args], env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = proc.wait(timeout=timeout)
            except BaseException:
                _kill_group(proc)
                raise
        if returncode != 0:
            tail = self.log.read_text(errors="replace").splitlines()[-40:]
            raise AssertionError(f"lab.sh {' '.join(args)} exited {returncode}:\n" + "\n".join(tail))

    def node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return [str(LAB_SH), "in-netns", "lxc-attach", "--name", f"{LAB_NAME}-{node}", "--clear-env",
                "--set-var", f"PATH={NODE_PATH}", "--set-var", "LC_ALL=C.UTF-8", "--", *argv]

    def run(self, node: str, *argv: str, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
        """A command in a node, as root."""
        done = subprocess.run(self.node_argv(node, argv), env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{node}: {' '.join(argv)} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def popen(self, node: str, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(self.node_argv(node, argv), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(self, what: str, check, timeout: float, every: float = 2.0):
        """check() until it returns something true; AssertionError naming `what` after timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not reached within {timeout:g} s")
            time.sleep(every)

    def netns_pids(self) -> set[int]:
        """The processes in the lab's network namespace (the nodes' and their monitors)."""
        done = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True)
        return {int(pid) for pid in done.stdout.split()} if done.returncode == 0 else set()

    def leftovers(self) -> list[str]:
        """What of this lab is still on the machine: containers, the namespace, its processes."""
        found = []
        lxc_dir = Path("/var/lib/lxc")
        if lxc_dir.is_dir():
            found += [f"container {p.name}" for p in lxc_dir.iterdir() if p.name.startswith(f"{LAB_NAME}-")]
        if Path(f"/run/netns/{NETNS}").exists():
            found.append(f"network namespace {NETNS}")
        ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        found += [f"process {line.strip()}" for line in ps.splitlines()
                  if f"{LAB_NAME}-node" in line and "lxc" in line]
        return found


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group `proc` leads, SIGKILL to what is left after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
