"""PID 1 of a lab node.

Started by `Lab.up` as
    nsenter --net=/run/netns/pha-nodeN unshare --mount --uts --ipc --pid --fork --mount-proc \
        python -m pha.lab.nodeinit SPEC.json
it gives the node its own hostname, sysfs, per-node directories (bind mounts
from the lab state), tmpfs /run, /dev/shm and /tmp (not /tmp when pha runs from
there), then starts corosync,
pacemakerd and pha guard (pha.commands.guard), and reaps orphans. SIGTERM stops
the guard, pacemaker, then PostgreSQL, then corosync, and exits; the kernel then kills whatever is left in the node's PID
namespace. Mount propagation is private (unshare's default), so no mount
reaches the host.
"""
from __future__ import annotations

import ctypes
import glob
import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

from pha.lab import config

MS_BIND = 4096
READY_FILE = "ready"
PACEMAKER_STOP_TIMEOUT = 90.0
POSTGRES_STOP_TIMEOUT = 30.0
COROSYNC_STOP_TIMEOUT = 15.0
COROSYNC_START_TIMEOUT = 15.0
GUARD_STOP_TIMEOUT = 5.0
GUARD_LOG = "/var/log/pha/guard.log"

_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [{socket.gethostname()} init] {message}", flush=True)


def mount(source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                     flags, data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def make_dir(path: str, mode: int, owner: str, group: str) -> None:
    os.makedirs(path, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def set_up_filesystem(binds: list[list[str]]) -> None:
    """Node-private view of the filesystem. Never creates anything on the host."""
    mount("sysfs", "/sys", "sysfs")          # /sys/class/net of this node's netns
    for source, target in binds:
        if not os.path.exists(target):
            raise FileNotFoundError(f"bind target {target} does not exist on the host")
        mount(source, target, flags=MS_BIND)
    for target, mode in config.NODE_TMPFS.items():
        if target == "/tmp" and any(p.startswith("/tmp/") for p in code_paths()):
            continue  # pha itself lives there: a fresh tmpfs would hide it from the node
        mount("tmpfs", target, "tmpfs", data=f"mode={mode:o}")
    for path, (mode, owner, group) in config.NODE_RUN_DIRS.items():
        make_dir(path, mode, owner, group)


def code_paths() -> list[str]:
    """Where this interpreter and pha live (nodes run both)."""
    import pha
    return [os.path.realpath(sys.prefix), os.path.realpath(os.path.dirname(pha.__file__))]


def start_stack() -> dict[str, int]:
    """Start corosync, wait until it answers, start pacemakerd; return their PIDs."""
    pids = {}
    with open("/var/log/corosync/corosync.stdout", "ab") as out:
        pids["corosync"] = subprocess.Popen(
            ["corosync", "-f"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True).pid
    deadline = time.monotonic() + COROSYNC_START_TIMEOUT
    while subprocess.run(["corosync-cfgtool", "-s"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"corosync did not answer within {COROSYNC_START_TIMEOUT:.0f}s; "
                               "see /var/log/corosync/corosync.log")
        time.sleep(0.1)
    log(f"corosync pid {pids['corosync']}")
    env = dict(os.environ, PCMK_logfile="/var/log/pacemaker/pacemaker.log", PCMK_logfacility="none")
    with open("/var/log/pacemaker/pacemakerd.stdout", "ab") as out:
        pids["pacemakerd"] = subprocess.Popen(
            ["pacemakerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True).pid
    log(f"pacemakerd pid {pids['pacemakerd']}")
    import pha
    code = os.path.dirname(os.path.dirname(os.path.realpath(pha.__file__)))
    with open(GUARD_LOG, "ab") as out:
        pids["guard"] = subprocess.Popen(
            [sys.executable, "-m", "pha.commands", "guard"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=code), cwd="/", start_new_session=True).pid
    log(f"pha guard pid {pids['guard']}")
    return pids


def reap() -> None:
    """Collect every exited child (we are the PID namespace's init)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop(name: str, pids: list[int], sig: int, timeout: float) -> None:
    """Signal `pids`, reap until they are gone or `timeout` passes."""
    pids = [p for p in pids if alive(p)]
    if not pids:
        return
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            log(f"{name} did not stop within {timeout:.0f}s")
            return
        reap()
        time.sleep(0.1)
    log(f"{name} stopped")


def postmaster_pids() -> list[int]:
    pids = []
    found = glob.glob("/var/lib/postgresql/*/postmaster.pid") + glob.glob("/var/lib/postgresql/*/*/postmaster.pid")
    for pidfile in found:
        try:
            with open(pidfile) as f:
                pids.append(int(f.readline()))
        except (OSError, ValueError):
            continue
    return pids


def shut_down(stack: dict[str, int]) -> None:
    log("SIGTERM: stopping pha guard, pacemaker, postgres, corosync")
    if "guard" in stack:
        stop("pha guard", [stack["guard"]], signal.SIGTERM, GUARD_STOP_TIMEOUT)
    if "pacemakerd" in stack:
        stop("pacemaker", [stack["pacemakerd"]], signal.SIGTERM, PACEMAKER_STOP_TIMEOUT)
    stop("postgres", postmaster_pids(), signal.SIGINT, POSTGRES_STOP_TIMEOUT)
    if "corosync" in stack:
        stop("corosync", [stack["corosync"]], signal.SIGTERM, COROSYNC_STOP_TIMEOUT)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m pha.lab.nodeinit SPEC.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    os.environ.pop("PYTHONPATH", None)    # it only served to find pha.lab; keep it from the cluster stack
    # Signals first: PID 1 of a PID namespace only gets the signals it handles.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, lambda *_: None)
    # The node directory may sit under a path the tmpfs mounts hide: keep a handle on it.
    node_dir = os.open(spec["node_dir"], os.O_RDONLY | os.O_DIRECTORY)
    socket.sethostname(spec["hostname"])
    stack: dict[str, int] = {}
    try:
        set_up_filesystem(spec["binds"])
        if spec.get("stack", True):
            stack = start_stack()
    except (OSError, RuntimeError, KeyError) as exc:
        log(f"node setup failed: {exc}")
        shut_down(stack)
        return 1
    os.close(os.open(READY_FILE, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=node_dir))
    log("ready")
    while True:
        received = os.read(wake_read, 64)
        reap()
        if signal.SIGTERM in received or signal.SIGINT in received:
            shut_down(stack)
            log("exiting")
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
