"""The one-machine lab: N cluster nodes and a client, each in its own namespaces.

Layout under the state directory (default /var/tmp/pha-lab):
    lab.json                 what is up: nodes, IPs, PIDs, namespaces
    authkey, corosync.conf, hosts, cib.xml, ocf-shellfuncs, ocf/resource.d/
    <node>/fs/...            per-node directories bind-mounted inside the node
    <node>/init.json, init.log, ready
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pha.lab import config
from pha import crm, crmstatus
from pha.lab.config import LabConfigError

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


def pacemaker_version() -> tuple[int, ...]:
    """The version of this machine's Pacemaker (the lab nodes run it); (0,) if it does not say."""
    try:
        out = subprocess.run(["pacemakerd", "--version"], capture_output=True, text=True, timeout=30,
                             env={"PATH": NODE_PATH, "LC_ALL": "C"}).stdout
    except OSError:
        return (0,)
    return crm.parse_version(out) or (0,)


def _start_time(pid: int) -> int | None:
    """The kernel start time of `pid` (identifies it against PID reuse); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _is_process(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and _start_time(pid) == start


def _wait_gone(processes: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait until the (pid -> start time) processes are gone; return those still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: s for p, s in processes.items() if _is_process(p, s)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _kill(processes: dict[int, int], sig: int) -> None:
    for pid, start in processes.items():
        if _is_process(pid, start):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _copy_tree_with_owners(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
    for path in [target, *target.rglob("*")]:
        st = os.lstat(source / path.relative_to(target))
        os.lchown(path, st.st_uid, st.st_gid)


def _make_dir(path: Path, mode: int, owner: str, group: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def _write(path: Path, text: str | bytes, mode: int, owner: str = "root", group: str = "root") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} missing)"


class Lab:
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
        _write(tmp, json.dumps(self.info, indent=2) + "\n", 0o600)
        tmp.replace(self.state_dir / INFO_FILE)

    # ---- up ------------------------------------------------------------------------------
    def up(self, nodes: int = 3, token_ms: int = config.DEFAULT_TOKEN_MS, pg: bool = True,
           pg_running: bool = False, force: bool = False, two_node: bool = False,
           progress: Callable[[str], None] | None = None,
           pg_version: str | None = None, fence: bool = False) -> dict[str, float]:
        """Bring the lab up; return the timings (seconds) of its steps.

        `fence`: every node gets a BMC (ipmi_sim) and the cluster a fence_ipmilan device per
        node, with fencing on (pha.lab.fence).

        `two_node` (with nodes=2) sets corosync's two_node: each side of a cut keeps quorum.
        `pg_version`: the PostgreSQL major version (default: PHA_LAB_PG, else the newest installed).

        On failure everything started so far is torn down again.
        """
        names = config.node_names(nodes)
        config.render_corosync_conf(names, token_ms, two_node=two_node)   # a bad token or two_node: refused now
        if pg_running and not pg:
            raise LabConfigError("--pg-running needs PostgreSQL (drop --no-pg)")
        version = config.check_pg_version(pg_version) if pg_version else config.PG_VERSION
        from pha.lab import fence as bmc
        missing = missing_prerequisites(version if pg else None) + (bmc.missing_prerequisites() if fence else [])
        if missing:
            raise LabError("cannot bring the lab up, missing: " + ", ".join(missing))
        self._refuse_or_clean(force)
        t0 = time.monotonic()
        self.timings = {}

        def step(name: str) -> None:
            self.timings[name] = round(time.monotonic() - t0, 2)
            if progress:
                progress(f"{self.timings[name]:6.2f}s {name}")

        self.state_dir.mkdir(parents=True, mode=0o700)
        os.chmod(self.state_dir, 0o700)
        self.info = {
            "format": STATE_FORMAT, "subnet": config.SUBNET, "token_ms": token_ms, "two_node": two_node,
            "pg": pg, "pg_running": pg_running, "pg_version": version if pg else None,
            "fencing_option": crm.fencing_option(pacemaker_version()),
            "client": {"netns": config.CLIENT_NETNS, "ip": config.CLIENT_IP},
            "netns": [config.SWITCH_NETNS, config.CLIENT_NETNS, *map(config.node_netns, names),
                      *(config.NETNS_PREFIX + m for m in (bmc.members(names) if fence else {}))],
            "blackhole": False,
            "nodes": {n: {"ip": config.node_ip(n), "netns": config.node_netns(n)} for n in names},
        }
        self._save_info()
        try:
            self._write_shared_files(names, token_ms, two_node)
            from pha.lab import network
            network.add_blackhole()
            self.info["blackhole"] = True
            self._save_info()
            network.build({**{n: config.node_ip(n) for n in names}, "client": config.CLIENT_IP,
                           **(bmc.members(names) if fence else {})})
            step("network ready")
            for name in names:
                self._prepare_node(name)
            step("node files ready")
            self._start_nodes(names)
            self._wait_ready(names)
            step("node inits ready")
            with ThreadPoolExecutor(max_workers=1) as pool:
                pg_setup = None
                if pg:
                    from pha.lab import postgres
                    pg_setup = pool.submit(postgres.set_up, self, pg_running)
                self.wait_online(names, timeout=120, observer=names[0])
                step(f"{len(names)} nodes online")
                fencing = self.info["fencing_option"]
                self.exec(names[0], ["crm_attribute", "--type", "crm_config", "--name",
                                     fencing, "--update", "false"])
                step(f"{fencing}=false")
                if fence:
                    bmc.start(self)
                    step(f"fencing on: {bmc.enable(self)}")
                if pg_setup is not None:
                    pg_setup.result()
                    step("postgresql " + ("streaming" if pg_running else "ready (stopped)"))
        except BaseException:
            if progress:
                progress("bring-up failed; tearing down what was started")
            self.down()
            raise
        self.info["timings"] = self.timings
        self._save_info()
        return self.timings

    def _refuse_or_clean(self, force: bool) -> None:
        from pha.lab import network
        leftovers = []
        if self.state_dir.exists():
            leftovers.append(f"state directory {self.state_dir}")
        leftovers += [f"netns {n}" for n in network.existing_lab_netns()]
        if network.host_routes_for_subnet():
            leftovers.append(f"a host route for {config.SUBNET}")
        if not leftovers:
            return
        if not force:
            raise LabError("a lab seems to be up already (" + ", ".join(leftovers)
                           + f"): run `pha lab down --state {self.state_dir}` first, or `up --force`")
        self.down(force=True)

    def _write_shared_files(self, names: list[str], token_ms: int, two_node: bool) -> None:
        sd = self.state_dir
        _write(sd / "authkey", os.urandom(256), 0o400)
        _write(sd / "corosync.conf", config.render_corosync_conf(names, token_ms, two_node=two_node), 0o644)
        _write(sd / "hosts", config.render_hosts(names), 0o644)
        _write(sd / "cib.xml", config.render_seed_cib(fencing=self.info["fencing_option"]), 0o600)
        _write(sd / "ocf-shellfuncs", config.patch_ocf_shellfuncs(Path(config.OCF_SHELLFUNCS).read_text()), 0o644)
        ocf_root = sd / "ocf"
        ocf_root.mkdir(mode=0o755)
        shutil.copytree(config.OCF_RESOURCE_D, ocf_root / "resource.d", symlinks=True)
        from pha.install import install
        install(ocf_root)

    def _prepare_node(self, node: str) -> None:
        node_dir = self.state_dir / node
        fs = node_dir / "fs"
        binds = []
        for path, (mode, owner, group) in config.NODE_DIRS.items():
            target = fs / path.lstrip("/")
            if mode == "copy":
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_tree_with_owners(Path(path), target)
            else:
                _make_dir(target, mode, owner, group)
            binds.append([str(target), path])
        etc = fs / "etc"
        shutil.copy2(self.state_dir / "corosync.conf", etc / "corosync/corosync.conf")
        shutil.copy2(self.state_dir / "authkey", etc / "corosync/authkey")
        cib = fs / "var/lib/pacemaker/cib/cib.xml"
        shutil.copy2(self.state_dir / "cib.xml", cib)
        os.chown(cib, pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid)
        binds += [[str(self.state_dir / "hosts"), "/etc/hosts"],
                  [str(self.state_dir / "ocf/resource.d"), config.OCF_RESOURCE_D],
                  [str(self.state_dir / "ocf-shellfuncs"), config.OCF_SHELLFUNCS]]
        spec = {"hostname": node, "node_dir": str(node_dir), "binds": binds, "stack": True}
        _write(node_dir / "init.json", json.dumps(spec, indent=2) + "\n", 0o600)

    def _start_nodes(self, names: list[str]) -> None:
        from pha.lab import network
        import pha
        env = {"PATH": NODE_PATH, "LANG": "C.UTF-8", "HOME": "/root",
               "PYTHONPATH": str(Path(pha.__file__).resolve().parent.parent)}
        for name in names:
            node_dir = self.state_dir / name
            with open(node_dir / "init.log", "ab") as log:
                proc = subprocess.Popen(
                    ["nsenter", f"--net={network.netns_path(config.node_netns(name))}", "--",
                     "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
                     "--propagation", "private",
                     sys.executable, "-m", "pha.lab.nodeinit", str(node_dir / "init.json")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, cwd="/", start_new_session=True)
            self._children.append(proc)
            record = self.info["nodes"][name]
            record["unshare_pid"], record["unshare_start"] = proc.pid, _start_time(proc.pid)
            self._save_info()
        for name in names:
            record = self.info["nodes"][name]
            record["pid"] = self._init_child(name, record["unshare_pid"])
            record["pid_start"] = _start_time(record["pid"])
        self._save_info()

    def _init_child(self, node: str, unshare_pid: int) -> int:
        """The host PID of the node's PID 1 (the child unshare forks)."""
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                break
            if pids:
                return int(pids[0])
            time.sleep(0.02)
        raise LabError(f"{node}: its init did not start; {self.state_dir / node / 'init.log'}:\n"
                       + _tail(self.state_dir / node / "init.log"))

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                record = self.info["nodes"][name]
                if (self.state_dir / name / "ready").exists():
                    waiting.remove(name)
                elif not _is_process(record["pid"], record["pid_start"]):
                    raise LabError(f"{name}: its init exited during setup; {self.state_dir / name / 'init.log'}:\n"
                                   + _tail(self.state_dir / name / "init.log"))
            if waiting and time.monotonic() > deadline:
                raise LabError(f"nodes not ready after {READY_TIMEOUT:.0f}s: {', '.join(waiting)}")
            time.sleep(0.05)

    # ---- running commands ------------------------------------------------------------------
    def node_command(self, node: str, argv: Sequence[str], user: str | None = None) -> list[str]:
        """The host argv that runs `argv` inside `node` (all its namespaces)."""
        self._check_node(node)
        record = self.info["nodes"][node]
        if not _is_process(record.get("pid"), record.get("pid_start")):
            self.info = self._read_info() or self.info    # a fenced node boots with a new init (pha.lab.fence)
            record = self.info["nodes"][node]
        if not _is_process(record.get("pid"), record.get("pid_start")):
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
            running = _is_process(record.get("pid"), record.get("pid_start"))
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

    # ---- down ----------------------------------------------------------------------------------
    def down(self, force: bool = False, timeout: float = DOWN_TIMEOUT) -> float:
        """Stop every lab process, delete the namespaces, the blackhole route and the state.

        Only the lab's own processes are signalled: the node inits recorded in
        lab.json (checked against PID reuse) and processes inside the lab's
        network namespaces. With `force`, also remove leftover pha-* namespaces
        and the subnet's blackhole route when no state records them.
        """
        from pha.lab import network
        t0 = time.monotonic()
        from pha.lab import fence as bmc
        bmc.stop(self.state_dir, self._read_info() or self.info)   # first: no power-on races the teardown
        info = self._read_info() or self.info        # on disk: the BMCs (pha.lab.fence) update it
        records = info.get("nodes", {}).values()
        inits = {r["pid"]: r["pid_start"] for r in records if r.get("pid")}
        _kill(inits, signal.SIGTERM)
        left = _wait_gone(inits, timeout)
        if left:      # SIGKILL of a PID namespace's init kills the whole namespace
            _kill(left, signal.SIGKILL)
            _wait_gone(left, 10)
        for proc in self._children:
            proc.wait(timeout=10)
        self._children = []
        _wait_gone({r["unshare_pid"]: r["unshare_start"] for r in records
                    if r.get("unshare_pid") and r.get("unshare_start")}, 10)
        names = set(info.get("netns", []))
        if force:
            names |= set(network.existing_lab_netns())
        self._kill_netns_processes(sorted(names))
        network.destroy(sorted(names))
        if info.get("blackhole") or force:
            network.remove_blackhole()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.info = {}
        return time.monotonic() - t0

    @staticmethod
    def _kill_netns_processes(names: list[str]) -> None:
        """TERM (then KILL) processes still running inside the lab's network namespaces."""
        from pha.lab import network
        inodes = set()
        for name in names:
            try:
                st = os.stat(network.netns_path(name))
                inodes.add((st.st_dev, st.st_ino))
            except FileNotFoundError:
                continue
        spared = {os.getpid(), os.getppid()}
        found: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in spared:
                continue
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
            start = _start_time(int(entry))
            if (st.st_dev, st.st_ino) in inodes and start is not None:
                found[int(entry)] = start
        if found:
            _kill(found, signal.SIGTERM)
            _kill(_wait_gone(found, 5), signal.SIGKILL)
            _wait_gone(found, 5)
