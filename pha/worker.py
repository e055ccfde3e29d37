"""The agent worker: a per-node process with pha's heavy imports already done.

The ocf/ shims hand it actions over a unix socket (see pha.shim). For each
request it forks a supervisor, which receives the caller's stdin/stdout/stderr
and forks the action itself, so the action writes straight into Pacemaker's
pipes and the forked child starts with pyroute2 and psycopg already loaded.
If the caller goes away (Pacemaker killed it on a timeout), the supervisor
kills the action.

The worker exits when it has been idle for a while, and as soon as pha's code
on disk changes, so an upgrade never runs old code.
"""
from __future__ import annotations

import fcntl
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback

PRELOAD = ("pyroute2", "psycopg")
IDLE_SECONDS = 600
MAX_REQUEST = 1 << 20


def code_fingerprint() -> int:
    """Newest modification time of pha's modules: changes on upgrade."""
    import pha
    root = os.path.dirname(pha.__file__)
    newest = 0
    for folder in (root, os.path.join(root, "agents")):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
    return newest


def serve(path: str, idle_seconds: int = IDLE_SECONDS) -> None:
    """Run the worker on `path` until idle or stale. At most one per path."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another worker owns this socket
    fingerprint = code_fingerprint()
    _preload()
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    children: set[int] = set()
    last_used = time.monotonic()
    try:
        while True:
            _reap(children)
            ready, _, _ = select.select([listener], [], [], 5.0)
            if not ready:
                if not children and time.monotonic() - last_used > idle_seconds:
                    return
                continue
            conn, _ = listener.accept()
            last_used = time.monotonic()
            if code_fingerprint() != fingerprint:
                # Step aside first, then hang up: the shim falls back to
                # in-process and spawns a fresh worker, which must get the lock.
                _release(listener, path, lock)
                conn.close()
                return
            pid = os.fork()
            if pid == 0:
                listener.close()
                os._exit(_supervise(conn))
            conn.close()
            children.add(pid)
    finally:
        _release(listener, path, lock)


def _release(listener: socket.socket, path: str, lock: int) -> None:
    if listener.fileno() < 0:
        return
    listener.close()
    if os.path.exists(path):
        os.unlink(path)
    os.close(lock)


def _preload() -> None:
    import pha.agents
    for name in PRELOAD:
        importlib.import_module(name)
    folder = os.path.dirname(pha.agents.__file__)
    for entry in sorted(os.listdir(folder)):
        if entry.endswith(".py") and entry != "__init__.py":
            try:
                importlib.import_module("pha.agents." + entry[:-3])
            except Exception:
                pass  # the request for it fails alone, with the traceback in its stderr


def _reap(children: set[int]) -> None:
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _supervise(conn: socket.socket) -> int:
    """Receive one request, run it in a child, report its exit code."""
    try:
        if _peer_uid(conn) != os.getuid():
            return 1
        request, fds = _receive(conn)
        if len(fds) != 3:
            return 1
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run_action(request, fds)
        for fd in fds:
            os.close(fd)
        rc = _wait_or_abandon(pid, conn)
        if rc is not None:
            conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
        return 0
    except Exception:
        return 1


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
    while not data.endswith(b"\n"):
        chunk = conn.recv(MAX_REQUEST)
        if not chunk or len(data) > MAX_REQUEST:
            raise ValueError("truncated request")
        data += chunk
    return json.loads(data), list(fds)


def _wait_or_abandon(pid: int, conn: socket.socket) -> "int | None":
    """The child's exit code, or None after killing it because the caller left."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(conn, select.POLLIN | select.POLLHUP)
    while True:
        for fd, _ in poller.poll():
            if fd == pidfd:
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None


def _run_action(request: dict, fds: list[int]) -> None:
    """In the forked child: become the caller's process and run the action."""
    rc = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        agent = request["agent"]
        argv = request["argv"]
        sys.argv = [agent, *argv]
        module = importlib.import_module("pha.agents." + agent.replace("-", "_"))
        rc = module.AGENT.run(argv)
    except SystemExit as stop:
        rc = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
