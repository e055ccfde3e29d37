"""The agent worker: a per-node process with pha's heavy imports already done.

The ocf/ shims hand it actions over a unix socket (see pha.shim). For each
request the worker receives the caller's stdin/stdout/stderr and forks once:
the child runs the action with pyroute2 and psycopg already loaded, writing
straight into Pacemaker's pipes. The worker reports the child's exit code to
the caller. If the caller goes away first (Pacemaker killed it on a timeout),
the worker kills the action.

The worker exits when it has been idle for a while, and as soon as pha's code
on disk changes, so an upgrade never runs old code.
"""
from __future__ import annotations

import ast
import fcntl
import gc
import importlib
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

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
    gc.freeze()  # forked children then leave the preloaded objects' pages shared
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Loop(listener, fingerprint, idle_seconds, lambda: _release(listener, path, lock)).run()


def _release(listener: socket.socket, path: str, lock: int) -> None:
    """Stop listening and free the socket path and the lock for a successor."""
    if listener.fileno() < 0:
        return
    listener.close()
    if os.path.exists(path):
        os.unlink(path)
    os.close(lock)


class Loop:
    """Accepts requests, forks their actions, reports exit codes."""

    def __init__(self, listener: socket.socket, fingerprint: int, idle_seconds: int,
                 release: "Callable[[], None]") -> None:
        self.listener = listener
        self.release = release
        self.fingerprint = fingerprint
        self.idle_seconds = idle_seconds
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)
        self.by_pidfd: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, caller)
        self.by_conn: dict[int, int] = {}                          # caller fd -> pidfd
        self.last_used = time.monotonic()

    def run(self) -> None:
        """Serve until idle or stale; actions under way always finish first."""
        try:
            while self.listener.fileno() >= 0 or self.by_pidfd:
                events = self.poller.poll(5000)
                if not events and not self.by_pidfd:
                    if time.monotonic() - self.last_used > self.idle_seconds:
                        return
                for fd, _ in events:
                    if fd in self.by_pidfd:
                        self.finished(fd)
                    elif fd in self.by_conn:
                        self.abandoned(fd)
                    elif self.listener.fileno() == fd:
                        self.accept()
        finally:
            self.release()

    def accept(self) -> None:
        """Start one request, or step aside when pha's code changed."""
        conn, _ = self.listener.accept()
        self.last_used = time.monotonic()
        if code_fingerprint() != self.fingerprint:
            # Free the socket and the lock first, then say so: the shim runs
            # the action in-process and spawns a fresh worker, which gets them.
            self.poller.unregister(self.listener)
            self.release()
            try:
                conn.sendall(b"stale\n")
            finally:
                conn.close()
            return
        try:
            if _peer_uid(conn) != os.getuid():
                raise PermissionError("caller is not the worker's user")
            conn.settimeout(5)
            request, fds = _receive(conn)
        except (OSError, ValueError, SyntaxError):
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            conn.close()
            _run_action(request, fds)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.by_pidfd[pidfd] = (pid, conn)
        self.by_conn[conn.fileno()] = pidfd
        self.poller.register(pidfd, select.POLLIN)
        self.poller.register(conn, select.POLLIN | select.POLLHUP)

    def finished(self, pidfd: int) -> None:
        pid, conn = self._forget(pidfd)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        try:
            conn.sendall(b"%d\n" % rc)
        except OSError:
            pass
        conn.close()

    def abandoned(self, conn_fd: int) -> None:
        """The caller hung up before its action ended: end the action too."""
        pid, conn = self._forget(self.by_conn[conn_fd])
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        conn.close()

    def _forget(self, pidfd: int) -> tuple[int, socket.socket]:
        pid, conn = self.by_pidfd.pop(pidfd)
        del self.by_conn[conn.fileno()]
        self.poller.unregister(pidfd)
        self.poller.unregister(conn)
        os.close(pidfd)
        return pid, conn


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


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: a Python literal line (see pha.shim) and three descriptors."""
    data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
    fds = list(fds)
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(MAX_REQUEST)
            if not chunk or len(data) > MAX_REQUEST:
                raise ValueError("truncated request")
            data += chunk
        request = ast.literal_eval(data.decode())
        if len(fds) != 3 or not isinstance(request, dict):
            raise ValueError("malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _run_action(request: dict, fds: list[int]) -> None:
    """In the forked child: become the caller's process and run the action."""
    rc = 1
    try:
        gc.disable()  # a short-lived child: collection would only unshare pages
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
