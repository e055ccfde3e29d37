"""The lab's plumbing: its errors, prerequisites, processes (pid + start time) and root's files."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from pha.lab import config

STATE_FORMAT = 1
INFO_FILE = "lab.json"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUIRED_COMMANDS = ("corosync", "corosync-cfgtool", "pacemakerd", "crm_mon", "crm_attribute",
                     "nsenter", "unshare", "runuser")
READY_TIMEOUT = 30.0
DOWN_TIMEOUT = 150.0


class LabError(RuntimeError):
    """The lab cannot do what was asked (and says why)."""


class LabCommandError(subprocess.CalledProcessError):
    """A command run in a lab node or the client failed."""

    def __init__(self, where: str, proc: subprocess.CompletedProcess):
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)
        self.where = where

    def __str__(self) -> str:
        detail = (self.stderr or self.stdout or "").strip()[-2000:]
        return f"{self.where}: {subprocess.list2cmdline(self.cmd)} exited {self.returncode}: {detail}"


def missing_prerequisites(pg_version: str | None = None) -> list[str]:
    """What this machine lacks to run a lab with PostgreSQL `pg_version` (None: without), empty when it can."""
    missing = [] if os.geteuid() == 0 else ["root privileges"]
    missing += [cmd for cmd in REQUIRED_COMMANDS if shutil.which(cmd, path=NODE_PATH) is None]
    if pg_version == "":
        missing.append(f"PostgreSQL (no {config.PG_LIB}/N/bin with {', '.join(config.PG_TOOLS)})")
    elif pg_version is not None:
        bindir = config.pg_bin(pg_version)
        lacking = [f"{bindir}/{cmd}" for cmd in config.PG_TOOLS if not os.access(f"{bindir}/{cmd}", os.X_OK)]
        if lacking:
            lacking[-1] += f" (PostgreSQL installed: {', '.join(config.pg_versions()) or 'none'})"
        missing += lacking
    for path in (config.OCF_RESOURCE_D, config.OCF_SHELLFUNCS):
        if not os.path.exists(path):
            missing.append(path)
    return missing


def start_time(pid: int) -> int | None:
    """The kernel start time of `pid` (identifies it against PID reuse); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def is_process(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and start_time(pid) == start


def wait_gone(processes: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait until the (pid -> start time) processes are gone; return those still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: s for p, s in processes.items() if is_process(p, s)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill(processes: dict[int, int], sig: int) -> None:
    for pid, start in processes.items():
        if is_process(pid, start):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def copy_tree_with_owners(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
    for path in [target, *target.rglob("*")]:
        st = os.lstat(source / path.relative_to(target))
        os.lchown(path, st.st_uid, st.st_gid)


def make_dir(path: Path, mode: int, owner: str, group: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def write(path: Path, text: str | bytes, mode: int, owner: str = "root", group: str = "root") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} missing)"
