"""The client side of every ocf/ shim.

Pacemaker forks an agent every few seconds on every node. Importing pyroute2
or psycopg costs 150-250 ms of CPU each, so a shim does not import them: it
hands the action (argv, environment and its stdin/stdout/stderr descriptors)
to the node's pre-warmed agent worker (`pha.worker`) over a unix socket, and
exits with the action's code. When no worker answers, the shim runs the
action in-process, as a plain agent would, and starts a worker for next time.

Only the standard library is imported here, and only what is needed.
"""
from __future__ import annotations

import os
import sys

SOCKET_ENV = "PHA_WORKER_SOCKET"
SOCKET_DIR = "/run/pha"
# Actions that are cheaper in-process than a round trip to the worker.
LOCAL_ACTIONS = frozenset({"usage", "help"})
# The worker's replies meaning that nothing ran (see pha.worker): run it in-process.
STALE, BUSY, UNREAD = b"stale\n", b"busy\n", b"unread\n"
NOT_TAKEN = frozenset({STALE, BUSY, UNREAD})
REQUEST_MAGIC = b"pha-request-1"


def socket_path() -> str:
    """The worker socket of this node. Its name carries the network namespace,
    so a worker never runs an action in another namespace's network."""
    netns = os.stat("/proc/self/ns/net").st_ino
    return os.environ.get(SOCKET_ENV) or f"{SOCKET_DIR}/agentd-{netns}.sock"


def worker_enabled() -> bool:
    """The worker serves root (Pacemaker); other users run in-process."""
    return os.environ.get("PHA_WORKER", "1") != "0" and os.geteuid() == 0


def main(agent: str) -> None:
    """Run `agent`'s action from sys.argv through the worker, or in-process."""
    argv = sys.argv[1:]
    if argv and argv[0] not in LOCAL_ACTIONS and worker_enabled():
        rc = call_worker(agent, argv)
        if rc is not None:
            os._exit(rc)
        spawn_worker()
    run_in_process(agent, argv)


def run_in_process(agent: str, argv: list[str]) -> None:
    import importlib
    try:
        module = importlib.import_module("pha.agents." + agent.replace("-", "_"))
    except Exception as err:  # a broken install: fail the action with the reason
        from pha import ocf, ocflog
        sys.exit(ocf.internal_error(err, ocflog.Log(agent, os.environ)))
    sys.exit(module.AGENT.run(argv))


def call_worker(agent: str, argv: list[str]) -> "int | None":
    """Have the worker run the action: its exit code, or None when no worker
    took it (then the caller runs it in-process)."""
    import _socket  # socket.py would import enum and selectors: 3x the cost
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path())
        if _peer_uid(sock) != os.geteuid():
            raise PermissionError("the worker socket is served by another user")
        request = encode_request(agent, argv)
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(request):
            sock.sendall(request[sent:])
    except OSError:
        sock.close()
        return None  # nothing was handed over
    try:
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    except OSError:
        reply = b""
    finally:
        sock.close()
    if reply in NOT_TAKEN:
        return None  # the worker ran nothing: stepped aside, busy, or could not read us
    if not reply.strip().isdigit():
        # The action was handed over and its fate is unknown: never run it twice.
        sys.stderr.write("ocf-exit-reason:the pha agent worker ended during the action\n")
        return 1
    return int(reply)


def encode_request(agent: str, argv: list[str]) -> bytes:
    """The request for the worker: its length in ASCII digits and a newline,
    then NUL-separated fields (none can hold a NUL): REQUEST_MAGIC, agent,
    cwd, umask, len(argv), argv..., then the environment as KEY=VALUE...
    Plain bytes: the worker splits them, nothing is evaluated."""
    payload = b"\0".join([REQUEST_MAGIC, agent.encode(), os.getcwdb(), b"%d" % _umask(),
                          b"%d" % len(argv), *map(os.fsencode, argv),
                          *(key + b"=" + value for key, value in os.environb.items())])
    return b"%d\n" % len(payload) + payload


def _peer_uid(sock: "object") -> int:
    import _socket
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # type: ignore[attr-defined]
    return int.from_bytes(creds[4:8], sys.byteorder)


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def spawn_worker() -> None:
    """Start a detached worker; it holds a lock, so at most one runs per node."""
    code = ("import sys; sys.path[:0] = %r; from pha.worker import serve; serve(%r)"
            % ([p for p in sys.path if p], socket_path()))
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 65536)
        os.chdir("/")
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", code])
    finally:
        os._exit(0)
