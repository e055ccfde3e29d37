"""The agent worker: a per-node process with pha's imports already done.

The ocf/ shims hand it actions over a unix socket (see pha.shim). For each
connection the worker checks the caller is its own user and forks at once;
the child reads the request (argv, environment and the caller's
stdin/stdout/stderr) within REQUEST_SECONDS of the accept, closes every
descriptor it inherited, and runs the action with everything the agents
import already loaded, writing straight into Pacemaker's pipes. The worker
itself never reads a request, so a slow or malformed one costs only its own
child. It reports the child's exit code to the caller, and kills the action
if the caller goes away first (Pacemaker killed it on a timeout).

Its actions never outlive it: it kills them when it exits, and each has
PR_SET_PDEATHSIG set, so even a SIGKILLed worker takes them along (the shim
then reports OCF_ERR_GENERIC: the action's fate is unknown, it never runs
twice). A child that ran nothing (a request it could not read) says so, and
the shim runs the action in-process.

The worker exits when it has been idle for a while, and as soon as any pha
module it has loaded changes on disk, so an upgrade never runs old code
(pha.preload: what it loads at start, and the check for changes).
"""
from __future__ import annotations

import fcntl
import gc
import importlib
import os
import re
import select
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from typing import Callable, NamedTuple, NoReturn, Optional

from pha.files import UnsafePath
from pha.preload import FileId, loaded_sources, preload, sources_changed
from pha.shim import BUSY, REQUEST_MAGIC, STALE, UNREAD

IDLE_SECONDS = 600
MAX_REQUEST = 1 << 20
REQUEST_SECONDS = 5   # the whole request must arrive within this, from the accept
MAX_ACTIONS = 64      # actions at once; past that, callers run theirs in-process
NOT_RUN = 255         # a child's exit code: it read no valid request and ran nothing
AGENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}", re.ASCII)
PR_SET_PDEATHSIG = 1
MAX_FD = os.sysconf("SC_OPEN_MAX")

_set_pdeathsig: Optional[Callable[..., int]] = None  # prctl(PR_SET_PDEATHSIG, ...), see serve


# --- the socket's directory ---------------------------------------------------------
def check_socket_dir(folder: str) -> None:
    """Create `folder` (mode 0700) when missing; refuse one that another user
    controls: it, or any directory above it, not ours or root's, or writable by
    others (above it: unless sticky). An existing directory is never chmod'ed."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{folder} is not a directory (a symlink?)")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UnsafePath(f"{folder} is not a directory of uid {os.geteuid()} that only it can write")
    current = os.path.realpath(folder)
    while True:
        st = os.stat(current)
        trusted_owner = st.st_uid in (0, os.geteuid())
        open_to_others = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if not trusted_owner or open_to_others:
            raise UnsafePath(f"{current} (above the worker socket) is controlled by another user")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


# --- the worker process ---------------------------------------------------------------
def serve(path: str, idle_seconds: int = IDLE_SECONDS) -> None:
    """Run the worker on `path` until idle or stale. At most one per path."""
    try:
        check_socket_dir(os.path.dirname(path) or ".")
    except UnsafePath as err:
        _syslog(f"not starting: {err}")
        return
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return  # another worker owns this socket
    preload()
    sources = loaded_sources()
    _bind_prctl()
    os.environb.clear()  # each child sets its caller's: nothing to clear there
    gc.freeze()  # forked children then leave the preloaded objects' pages shared
    if os.path.lexists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # the socket is 0600 from its creation on
    try:
        listener.bind(path)
    finally:
        os.umask(umask)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Loop(listener, sources, idle_seconds, lambda: _release(listener, path, lock)).run()


def _release(listener: socket.socket, path: str, lock: int) -> None:
    """Stop listening and free the socket path and the lock for a successor."""
    if listener.fileno() < 0:
        return
    listener.close()
    if os.path.lexists(path):
        os.unlink(path)
    os.close(lock)


def _syslog(message: str) -> None:
    import syslog
    syslog.openlog("pha-worker", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_ERR, message)


class Loop:
    """Accepts callers, forks their actions, reports exit codes."""

    def __init__(self, listener: socket.socket, sources: dict[str, FileId], idle_seconds: int,
                 release: Callable[[], None]) -> None:
        self.listener = listener
        self.release = release
        self.sources = sources
        self.idle_seconds = idle_seconds
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)
        self.actions: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, caller)
        self.by_conn: dict[int, int] = {}                         # caller fd -> pidfd
        self.last_used = time.monotonic()

    def run(self) -> None:
        """Serve until idle or stale (actions under way finish first); on any
        other way out (SIGTERM, a bug) the actions under way are killed."""
        try:
            while self.listener.fileno() >= 0 or self.actions:
                events = self.poller.poll(5000)
                if not events and not self.actions:
                    if time.monotonic() - self.last_used > self.idle_seconds:
                        return
                listener = self.listener.fileno()
                # Ends first, the accept last: a descriptor an end closed is not
                # reused by a new caller while this batch of events still names it.
                for fd in sorted((fd for fd, _ in events), key=lambda fd: fd == listener):
                    try:
                        self.dispatch(fd, listener)
                    except Exception:  # MemoryError, RecursionError, a bug: this event only
                        traceback.print_exc()
        finally:
            self.kill_actions()
            self.release()

    def dispatch(self, fd: int, listener: int) -> None:
        if fd in self.actions:
            self.finished(fd)
        elif fd in self.by_conn:
            self.abandoned(fd)
        elif fd == listener == self.listener.fileno():
            self.accept()

    def accept(self) -> None:
        """Take one caller: fork the child that reads and runs its request."""
        try:
            conn, _ = self.listener.accept()
        except OSError:  # out of descriptors, say: let the actions under way end some
            time.sleep(0.05)
            return
        self.last_used = time.monotonic()
        try:
            pid = self.fork(conn, self.last_used + REQUEST_SECONDS)
        except Exception:
            _reply(conn, BUSY)  # nothing ran: the caller runs it in-process
            raise
        if pid is None:
            return
        try:
            self.watch(pid, conn)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            conn.close()  # its fate is unknown to the caller: it reports a failure
            raise

    def fork(self, conn: socket.socket, deadline: float) -> Optional[int]:
        """The child's pid, or None after replying (stale code, a stranger, busy)."""
        if sources_changed(self.sources):
            # Free the socket and the lock first, then say so: the shim runs
            # the action in-process and spawns a fresh worker, which gets them.
            self.poller.unregister(self.listener)
            self.release()
            _reply(conn, STALE)
            return None
        if _peer_uid(conn) != os.getuid():
            conn.close()
            return None
        if len(self.actions) >= MAX_ACTIONS:
            _reply(conn, BUSY)
            return None
        conn.setblocking(False)  # the worker only ever writes a few bytes to it
        worker_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(conn, deadline, worker_pid)
        return pid

    def watch(self, pid: int, conn: socket.socket) -> None:
        """Wait for the child's end and for the caller's hang-up."""
        pidfd = os.pidfd_open(pid)
        try:
            self.poller.register(pidfd, select.POLLIN)
            # Only the caller's hang-up, not the request data its child still reads.
            self.poller.register(conn, select.POLLRDHUP)
            self.actions[pidfd] = (pid, conn)
            self.by_conn[conn.fileno()] = pidfd
        except BaseException:
            self.actions.pop(pidfd, None)
            for fd in (pidfd, conn.fileno()):
                try:
                    self.poller.unregister(fd)
                except KeyError:
                    pass
            os.close(pidfd)
            raise

    def finished(self, pidfd: int) -> None:
        pid, conn = self._forget(pidfd)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        _reply(conn, UNREAD if rc == NOT_RUN else b"%d\n" % rc)

    def abandoned(self, conn_fd: int) -> None:
        """The caller hung up before its action ended: end the action too."""
        pid, conn = self._forget(self.by_conn[conn_fd])
        os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still this child's
        os.waitpid(pid, 0)
        conn.close()

    def kill_actions(self) -> None:
        """Kill every action under way; their callers report a failure."""
        for pidfd in list(self.actions):
            pid, conn = self._forget(pidfd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            conn.close()

    def _forget(self, pidfd: int) -> tuple[int, socket.socket]:
        pid, conn = self.actions.pop(pidfd)
        del self.by_conn[conn.fileno()]
        self.poller.unregister(pidfd)
        self.poller.unregister(conn)
        os.close(pidfd)
        return pid, conn


def _reply(conn: socket.socket, message: bytes) -> None:
    try:
        conn.sendall(message)
    except OSError:
        pass
    conn.close()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


# --- the forked child -------------------------------------------------------------------
def _child(conn: socket.socket, deadline: float, worker_pid: int) -> NoReturn:
    """Read the request, become the caller's process, run the action; never returns.

    Until the action starts the exit code is NOT_RUN: the caller may run it
    itself. From then on it is the action's code, or 1 when it crashed."""
    started, rc = False, 1
    try:
        gc.disable()  # a short-lived child: collection would only unshare pages
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with(worker_pid)
        request, fds = _receive(conn, deadline)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        # The listener, the lock, other callers' connections, pidfds: none is the action's.
        os.closerange(3, MAX_FD)
        os.environb.clear()  # os.environ follows
        os.environb.update(request.env)
        os.chdir(request.cwd)
        os.umask(request.umask)
        sys.argv = [request.agent, *request.argv]
        started = True
        rc = _run_action(request, fds)
    except SystemExit as stop:
        rc = stop.code if isinstance(stop.code, int) else 1
    except BaseException as err:
        if started:  # the agent could not even be imported: say so, as its run() would
            rc = _internal_error(err, request.agent)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if not started:
                os._exit(NOT_RUN)
            os._exit(rc if isinstance(rc, int) and 0 <= rc < NOT_RUN else 1)


def _run_action(request: Request, fds: list[int]) -> int:
    """Run the request's agent action in this process: its OCF code."""
    module = importlib.import_module("pha.agents." + request.agent.replace("-", "_"))
    return module.AGENT.run(request.argv)


def _internal_error(err: BaseException, agent: str) -> int:
    """OCF_ERR_GENERIC with an exit reason and the traceback in the log."""
    try:
        from pha import ocf, ocflog
        return ocf.internal_error(err, ocflog.Log(agent, os.environ))
    except BaseException:
        traceback.print_exc()
        return 1


def _die_with(worker_pid: int) -> None:
    """SIGKILL this child when the worker dies, however it dies."""
    if _set_pdeathsig is not None:
        _set_pdeathsig(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != worker_pid:
        raise ChildProcessError("the worker is gone")


def _bind_prctl() -> None:
    """Bind prctl once in the worker, and call it once (leaving the worker's own
    parent-death signal at none): a child's call then costs no setup."""
    global _set_pdeathsig
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
    _set_pdeathsig = prctl


def _receive(conn: socket.socket, deadline: float) -> tuple[Request, list[int]]:
    """One request (see pha.shim.encode_request) and three descriptors, all of
    it before `deadline` (time.monotonic())."""
    data, fds, size = b"", [], -1
    try:
        while size < 0 or len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request not received in time")
            conn.settimeout(remaining)
            chunk, more, flags, _ = socket.recv_fds(conn, 1 << 16, 3)
            fds.extend(more)
            data += chunk
            if not chunk or len(data) > MAX_REQUEST + 16 or flags & socket.MSG_CTRUNC or len(fds) > 3:
                raise ValueError("truncated or oversized request")
            if size < 0 and b"\n" in data:
                header, _, data = data.partition(b"\n")
                size = int(header) if header.isdigit() and len(header) < 9 else MAX_REQUEST + 1
                if size > MAX_REQUEST:
                    raise ValueError("oversized request")
        if len(data) != size or len(fds) != 3:
            raise ValueError("malformed request")
        return decode_request(data), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


class Request(NamedTuple):
    agent: str
    argv: list[str]
    cwd: bytes
    umask: int
    env: dict[bytes, bytes]


def decode_request(payload: bytes) -> Request:
    """The fields of pha.shim.encode_request; ValueError when anything is off."""
    fields = payload.split(b"\0")
    if len(fields) < 5 or fields[0] != REQUEST_MAGIC or not fields[3].isdigit() or not fields[4].isdigit():
        raise ValueError("malformed request")
    agent, argc = fields[1].decode("ascii"), int(fields[4])
    if not AGENT_NAME.fullmatch(agent) or len(fields) < 5 + argc:
        raise ValueError("malformed request")
    env = {}
    for item in fields[5 + argc:]:
        key, equals, value = item.partition(b"=")
        if not key or not equals:
            raise ValueError("malformed request")
        env[key] = value
    return Request(agent, [os.fsdecode(arg) for arg in fields[5:5 + argc]], fields[2],
                   int(fields[3]) & 0o777, env)
