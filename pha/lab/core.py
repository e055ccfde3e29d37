"""The one-machine lab: N cluster nodes and a client, each in its own namespaces.

Layout under the state directory (default /var/tmp/pha-lab):
    lab.json                 what is up: nodes, IPs, PIDs, namespaces
    authkey, corosync.conf, hosts, cib.xml, ocf-shellfuncs, ocf/resource.d/
    <node>/fs/...            per-node directories bind-mounted inside the node
    <node>/init.json, init.log, ready
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pha import crmstatus
from pha.lab import config
from pha.lab.config import LabConfigError
from pha.lab.lifecycle import Lifecycle
from pha.lab.procs import (INFO_FILE, NODE_PATH, LabCommandError, LabError, is_process, missing_prerequisites,
                           start_time, write)

__all__ = ["Lab", "LabCommandError", "LabError", "missing_prerequisites", "start_time"]


class Lab(Lifecycle):
    """A lab under `state_dir`: bring it up, run commands in it, break and mend it, take it down."""

    def __init__(self, state_dir: Path | str | None = None):
        self.state_dir = Path(state_dir or os.environ.get(config.STATE_ENV) or config.DEFAULT_STATE_DIR)
        self.info: dict = {}
        self.timings: dict[str, float] = {}
        self._children: list[subprocess.Popen] = []

    @classmethod
    def load(cls, state_dir: Path | str | None = None) -> "Lab":
        """The lab that is up under `state_dir`."""
        lab = cls(state_dir)
        lab.info = lab._read_info()
        if not lab.info:
            raise LabError(f"no lab under {lab.state_dir} ({INFO_FILE} missing): run `pha lab up`")
        return lab

    # ---- description -------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return list(self.info.get("nodes", {}))

    @property
    def subnet(self) -> str:
        return config.SUBNET

    @property
    def client_ip(self) -> str:
        return config.CLIENT_IP

    @property
    def pg_version(self) -> str:
        """The PostgreSQL major version the lab runs (recorded at `up`)."""
        return self.info.get("pg_version") or config.PG_VERSION

    @property
    def pg_bin(self) -> str:
        """Where the lab's PostgreSQL programs are (initdb, pg_ctl, ...)."""
        return config.pg_bin(self.pg_version)

    def node_ip(self, node: str) -> str:
        self._check_node(node)
        return config.node_ip(node)

    @staticmethod
    def vip(n: int) -> str:
        return config.vip(n)

    def node_path(self, node: str, path: str) -> Path:
        """Where a file of a node's private directories (see config.NODE_DIRS) lives on the host."""
        self._check_node(node)
        if not any(path == d or path.startswith(d + "/") for d in config.NODE_DIRS):
            raise LabConfigError(f"path: {path!r} is not in a node-private directory")
        return self.state_dir / node / "fs" / path.lstrip("/")

    def _check_node(self, node: str) -> None:
        if node not in self.info.get("nodes", {}):
            raise LabConfigError(f"node: {node!r} is not a node of this lab ({', '.join(self.nodes) or 'none'})")

    def _read_info(self) -> dict:
        try:
            return json.loads((self.state_dir / INFO_FILE).read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise LabError(f"{self.state_dir / INFO_FILE}: not valid JSON ({exc})") from None

    def _save_info(self) -> None:
        tmp = self.state_dir / (INFO_FILE + ".tmp")
        write(tmp, json.dumps(self.info, indent=2) + "\n", 0o600)
        tmp.replace(self.state_dir / INFO_FILE)

    # ---- running commands (up and down: pha.lab.lifecycle) -------------------------------------
    def node_command(self, node: str, argv: Sequence[str], user: str | None = None) -> list[str]:
        """The host argv that runs `argv` inside `node` (all its namespaces)."""
        self._check_node(node)
        record = self.info["nodes"][node]
        if not is_process(record.get("pid"), record.get("pid_start")):
            self.info = self._read_info() or self.info    # a fenced node boots with a new init (pha.lab.fence)
            record = self.info["nodes"][node]
        if not is_process(record.get("pid"), record.get("pid_start")):
            raise LabError(f"{node}: its init (PID {record.get('pid')}) is not running")
        # --root: the node's root, which is not "/" when the lab runs in a chroot (tools/rootfs.sh)
        command = ["nsenter", "-t", str(record["pid"]), "--root", "-m", "-u", "-i", "-n", "-p", "--wd=/", "--"]
        if user:
            command += ["runuser", "-u", user, "--"]
        return command + list(argv)

    def client_command(self, argv: Sequence[str]) -> list[str]:
        """The host argv that runs `argv` in the client netns."""
        from pha.lab import network
        return ["nsenter", f"--net={network.netns_path(config.CLIENT_NETNS)}", "--", *argv]

    @staticmethod
    def command_env(env: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for lab commands, plus `env`."""
        base = {"PATH": NODE_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        if "TERM" in os.environ:
            base["TERM"] = os.environ["TERM"]
        return {**base, **(env or {})}

    def exec(self, node: str, argv: Sequence[str], check: bool = True, timeout: float | None = 60,
             input: str | None = None, user: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `argv` in `node`, capture its text output; LabCommandError if check and it fails."""
        return self._run(node, self.node_command(node, argv, user), check, timeout, input, env)

    def client_exec(self, argv: Sequence[str], check: bool = True, timeout: float | None = 60,
                    input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `argv` in the client netns (the only place to reach lab addresses from)."""
        return self._run("client", self.client_command(argv), check, timeout, input, env)

    def python(self, node: str, code: str, **kwargs) -> subprocess.CompletedProcess:
        """Run Python `code` in `node` (or "client") with this interpreter (the venv's)."""
        argv = [sys.executable, "-c", code]
        if node == "client":
            return self.client_exec(argv, **kwargs)
        return self.exec(node, argv, **kwargs)

    def _run(self, where: str, command: list[str], check: bool, timeout: float | None,
             input: str | None, env: dict[str, str] | None) -> subprocess.CompletedProcess:
        proc = subprocess.run(command, capture_output=True, text=True, input=input, timeout=timeout,
                              env=self.command_env(env), cwd="/",
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise LabCommandError(where, proc)
        return proc

    # ---- cluster view ----------------------------------------------------------------------
    def view(self, observer: str, timeout: float = 15) -> crmstatus.ClusterStatus:
        """What `observer`'s pacemaker sees (crm_mon XML)."""
        out = self.exec(observer, ["crm_mon", "--output-as=xml"], timeout=timeout).stdout
        try:
            return crmstatus.parse_crm_mon(out)
        except ValueError as exc:
            raise LabConfigError(str(exc)) from None

    def _observer(self, observer: str | None) -> str:
        if observer is None or (observer == "node2" and observer not in self.nodes):
            return self.nodes[0]
        self._check_node(observer)
        return observer

    def _wait_view(self, want: Callable[[crmstatus.ClusterStatus], bool], what: str, timeout: float,
                   observer: str) -> float:
        t0 = time.monotonic()
        last: object = None
        while True:
            try:
                last = self.view(observer, timeout=max(5.0, min(15.0, timeout)))
                if want(last):
                    return time.monotonic() - t0
            except (LabCommandError, LabConfigError, subprocess.TimeoutExpired) as exc:
                last = exc
            if time.monotonic() - t0 > timeout:
                raise LabError(f"{what} not seen by {observer} within {timeout:.0f}s; last view: {last}")
            time.sleep(0.25)

    def wait_online(self, nodes: Iterable[str] | None = None, timeout: float = 120,
                    observer: str | None = "node2") -> float:
        """Wait until `observer` sees `nodes` (default: all) online with a DC; return the seconds waited."""
        wanted = list(nodes) if nodes is not None else self.nodes
        for node in wanted:
            self._check_node(node)
        return self._wait_view(lambda v: v.summary.dc is not None and set(wanted) <= set(v.online_nodes()),
                               f"{', '.join(wanted)} online", timeout, self._observer(observer))

    def wait_offline(self, nodes: Iterable[str], timeout: float = 60,
                     observer: str | None = "node2") -> float:
        """Wait until `observer` sees none of `nodes` online; return the seconds waited."""
        gone = list(nodes)
        for node in gone:
            self._check_node(node)
        return self._wait_view(lambda v: not set(gone) & set(v.online_nodes()),
                               f"{', '.join(gone)} offline", timeout, self._observer(observer))

    # ---- network faults ----------------------------------------------------------------------
    def cut(self, node: str) -> None:
        """Unplug `node` from the lab switch."""
        from pha.lab import network
        self._check_node(node)
        network.set_port(node, up=False)

    def heal(self, node: str) -> None:
        """Plug `node` back into the lab switch."""
        from pha.lab import network
        self._check_node(node)
        network.set_port(node, up=True)

    # ---- status --------------------------------------------------------------------------------
    def status(self) -> dict:
        """The lab's nodes, PIDs, IPs, switch ports, and each node's view of the cluster."""
        from pha.lab import network

        def node_status(node: str) -> dict:
            record = self.info["nodes"][node]
            running = is_process(record.get("pid"), record.get("pid_start"))
            entry = {"name": node, "ip": record["ip"], "netns": record["netns"], "pid": record.get("pid"),
                     "running": running, "connected": network.port_is_up(node)}
            if running:
                try:
                    view = self.view(node, timeout=10)
                    online = view.online_nodes()
                    entry["pacemaker"] = {"online": online, "dc": view.summary.dc,
                                          "offline": [n.name for n in view.nodes if n.name not in online],
                                          "quorum": view.summary.quorum}
                except (LabCommandError, LabConfigError, subprocess.TimeoutExpired) as exc:
                    entry["pacemaker"] = {"error": str(exc)}
            return entry

        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            nodes = list(pool.map(node_status, self.nodes))
        return {"state_dir": str(self.state_dir), "subnet": config.SUBNET,
                "client": self.info["client"], "blackhole": network.has_blackhole(),
                "pg": self.info.get("pg"), "pg_running": self.info.get("pg_running"),
                "pg_version": self.info.get("pg_version"), "nodes": nodes}
