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
# Actions that need no heavy library run in-process: the worker saves nothing there.
LOCAL_ACTIONS = frozenset({"", "meta-data", "metadata", "usage", "help"})


def socket_path() -> str:
    """The worker socket of this node. Its name carries the network namespace,
    so a worker never runs an action in another namespace's network."""
    netns = os.stat("/proc/self/ns/net").st_ino
    return os.environ.get(SOCKET_ENV) or f"{SOCKET_DIR}/agentd-{netns}.sock"


def worker_enabled() -> bool:
    return os.environ.get("PHA_WORKER", "1") != "0"


def main(agent: str) -> None:
    """Run `agent`'s action from sys.argv through the worker, or in-process."""
    argv = sys.argv[1:]
    action = argv[0] if argv else ""
    if action not in LOCAL_ACTIONS and worker_enabled():
        rc = call_worker(agent, argv)
        if rc is not None:
            os._exit(rc)
        spawn_worker()
    run_in_process(agent, argv)


def run_in_process(agent: str, argv: list[str]) -> None:
    import importlib
    module = importlib.import_module("pha.agents." + agent.replace("-", "_"))
    sys.exit(module.AGENT.run(argv))


def call_worker(agent: str, argv: list[str]) -> "int | None":
    """Have the worker run the action; None when no worker could take it."""
    import json
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path())
        request = {"agent": agent, "argv": argv, "env": dict(os.environ),
                   "cwd": os.getcwd(), "umask": _umask()}
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return None
            reply += chunk
    except OSError:
        return None
    finally:
        sock.close()
    answer = json.loads(reply)
    return answer.get("rc")


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
