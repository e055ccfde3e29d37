"""PostgreSQL's processes: its tools run as the database user, the postmaster
started without a shell, recognised by more than a PID, and ended for sure.

No value from the CIB ever reaches /bin/sh here: every program gets an
argument list. Every wait has a bound, and a tool that overruns it becomes a
PgError with a message, never an uncaught TimeoutExpired.
"""
from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Optional

PID_FILE = "postmaster.pid"
PROC = "/proc"
KILL_WAIT = 5.0            # seconds for SIGKILLed processes to vanish
POLL = 0.1


class PgError(Exception):
    """PostgreSQL did not do what was asked."""


# --- the database user --------------------------------------------------------------
def account(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise PgError(f"no such user: {user}") from None


def user_env(who: pwd.struct_passwd, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A small, fixed environment for PostgreSQL's programs."""
    env = {"PATH": "/usr/bin:/bin", "HOME": who.pw_dir, "LANG": "C", "LC_ALL": "C"}
    env.update(extra or {})
    return env


def run_as(who: pwd.struct_passwd, argv: list[str], timeout: float, cwd: str = "/",
           env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run `argv` as `who` (its own groups, not root's), output captured; PgError
    when it cannot run or overruns `timeout` (it is killed then)."""
    tool = os.path.basename(argv[0])
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout, cwd=cwd, env=env or user_env(who), **_as(who))
    except subprocess.TimeoutExpired:
        raise PgError(f"{tool} did not finish within {timeout:.0f} s (killed)") from None
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        raise PgError(f"{tool} could not run: {err}") from None


def _as(who: pwd.struct_passwd) -> dict:
    if os.geteuid() != 0 or who.pw_uid == 0:
        return {}
    return {"user": who.pw_uid, "group": who.pw_gid,
            "extra_groups": os.getgrouplist(who.pw_name, who.pw_gid)}


@contextmanager
def acting_as(who: pwd.struct_passwd) -> Iterator[None]:
    """Effective ids (and groups) of `who` for a moment: files opened meanwhile are
    opened with its rights, so a symlink it planted leads nowhere it could not go."""
    if os.geteuid() != 0 or who.pw_uid == 0:
        yield
        return
    groups, egid = os.getgroups(), os.getegid()
    os.setgroups(os.getgrouplist(who.pw_name, who.pw_gid))
    os.setegid(who.pw_gid)
    os.seteuid(who.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)
        os.setgroups(groups)


# --- recognising the postmaster -------------------------------------------------------
class PidFile(NamedTuple):
    pid: int
    start_time: int      # seconds since the epoch, as the postmaster wrote it
    status: str          # "starting", "ready", "standby", "stopping" or "" (line 8)


def read_pid_file(pgdata: str) -> Optional[PidFile]:
    """postmaster.pid's fields, or None when it is missing or unreadable."""
    try:
        fd = os.open(os.path.join(pgdata, PID_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            text = os.read(fd, 4096).decode("ascii", "replace")
        finally:
            os.close(fd)
        lines = text.split("\n")
        pid = int(lines[0])
        start = int(lines[2]) if len(lines) > 2 and lines[2].strip().isdigit() else 0
        status = lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None
    return PidFile(pid, start, status) if pid > 0 else None


def _proc_usable(proc: str) -> bool:
    """Whether `proc` shows this process's PID namespace (else PIDs cannot be checked there)."""
    try:
        return os.readlink(os.path.join(proc, "self")) == str(os.getpid())
    except OSError:
        return False


def proc_state(pid: int, proc: str = PROC) -> Optional[str]:
    """The process's state letter (R, S, D, T, Z...), None when there is no such process."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            text = f.read()
        return text[text.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def proc_ppid(pid: int, proc: str = PROC) -> Optional[int]:
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            text = f.read()
        return int(text[text.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def is_postgres_in(pid: int, pgdata: str, proc: str = PROC) -> bool:
    """Whether `pid` is a live PostgreSQL server process working in `pgdata`:
    its program is `postgres` and its current directory is PGDATA."""
    base = os.path.join(proc, str(pid))
    try:
        exe = os.readlink(os.path.join(base, "exe"))
        cwd = os.stat(os.path.join(base, "cwd"))
        data = os.stat(pgdata)
    except OSError:
        return False         # gone, a zombie, or a kernel thread
    program = os.path.basename(exe.removesuffix(" (deleted)"))
    return program == "postgres" and (cwd.st_dev, cwd.st_ino) == (data.st_dev, data.st_ino) \
        and proc_state(pid, proc) not in (None, "Z", "X")


def postmaster_pid(pgdata: str, proc: str = PROC) -> Optional[int]:
    """The PID of the postmaster serving `pgdata`, or None.

    postmaster.pid alone is not trusted: after a crash its PID may belong to
    any other process now. Without a usable /proc, a live PID is believed."""
    found = read_pid_file(pgdata)
    if found is None:
        return None
    if _proc_usable(proc):
        return found.pid if is_postgres_in(found.pid, pgdata, proc) else None
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return found.pid


def server_processes(pgdata: str, postmaster: Optional[int], proc: str = PROC) -> list[int]:
    """Every process of this instance: the postmaster, its children, and any
    postgres process still working in PGDATA (children of a postmaster that died)."""
    found = []
    if not _proc_usable(proc):
        return [postmaster] if postmaster else []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == postmaster or (postmaster and proc_ppid(pid, proc) == postmaster) \
                or is_postgres_in(pid, pgdata, proc):
            if proc_state(pid, proc) not in (None, "Z", "X"):
                found.append(pid)
    return found


# --- starting ----------------------------------------------------------------------
def spawn_postmaster(who: pwd.struct_passwd, argv: list[str], pgdata: str, logfile: Optional[str],
                     env: dict[str, str]) -> subprocess.Popen:
    """Start `argv` (postgres -D ...) as `who`, in its own session (the agent's end
    does not end it), output appended to `logfile` opened with `who`'s rights."""
    log_fd = None
    try:
        if logfile:
            with acting_as(who):
                log_fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOCTTY | os.O_CLOEXEC,
                                 0o600)
        sink = log_fd if log_fd is not None else subprocess.DEVNULL
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, cwd=pgdata, env=env,
                                start_new_session=True, **_as(who))
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        what = f"parameter logfile={logfile}" if log_fd is None and logfile else os.path.basename(argv[0])
        raise PgError(f"cannot start PostgreSQL ({what}): {err}") from None
    finally:
        if log_fd is not None:
            os.close(log_fd)


def wait_started(child: subprocess.Popen, pgdata: str, timeout: float) -> None:
    """Wait until the postmaster `child` says it is ready (or a standby accepting
    connections), as `pg_ctl -w` does; PgError when it exits or overruns `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        if code is not None:
            raise PgError(f"postgres exited at start (exit {code})")
        found = read_pid_file(pgdata)
        if found and found.pid == child.pid and found.status in ("ready", "standby"):
            return
        if time.monotonic() >= deadline:
            raise PgError(f"PostgreSQL did not become ready within {timeout:.0f} s "
                          f"(postmaster {child.pid} is still starting)")
        time.sleep(POLL)


# --- stopping -------------------------------------------------------------------------
SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def signal_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(pid: int) -> None:
    """Collect `pid` if it is our own child (a test, or a start in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def gone(pid: int, proc: str = PROC) -> bool:
    reap(pid)
    if _proc_usable(proc):
        return proc_state(pid, proc) in (None, "Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def wait_gone(pid: int, seconds: float, proc: str = PROC) -> bool:
    """Wait up to `seconds` for `pid` to end; give up early when it is stopped
    (SIGSTOP, a debugger): it cannot act on a shutdown signal then."""
    deadline = time.monotonic() + seconds
    stopped_since = None
    while not gone(pid, proc):
        now = time.monotonic()
        if proc_state(pid, proc) in ("T", "t"):
            stopped_since = stopped_since or now
            if now - stopped_since >= 1.0:
                return False
        else:
            stopped_since = None
        if now >= deadline:
            return False
        time.sleep(POLL)
    return True


def kill_all(pids: list[int], seconds: float = KILL_WAIT, proc: str = PROC) -> list[int]:
    """SIGKILL every pid (it works on stopped processes too); the ones still there after `seconds`."""
    for pid in pids:
        signal_quietly(pid, signal.SIGKILL)
    deadline = time.monotonic() + seconds
    left = [p for p in pids if not gone(p, proc)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL)
        left = [p for p in left if not gone(p, proc)]
    return left
