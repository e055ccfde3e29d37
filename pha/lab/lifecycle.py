"""The lab's bring-up and take-down (`Lab.up`, `Lab.down`): state files, node namespaces,
corosync + pacemaker in each node, the client and the switch, BMCs when it fences."""
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
from typing import Callable

from pha import crm, fencing
from pha.lab import config
from pha.lab.config import LabConfigError
from pha.lab.procs import (DOWN_TIMEOUT, NODE_PATH, READY_TIMEOUT, STATE_FORMAT, LabError, copy_tree_with_owners,
                           is_process, kill, make_dir, missing_prerequisites, start_time, tail, wait_gone, write)


def fencing_option() -> str:
    """The fencing option's name this machine's Pacemaker knows (the lab nodes run it): asked, not
    derived from its version."""
    return fencing.detect_names(lambda argv: crm.run_command(argv, 30.0)).enabled


class Lifecycle:
    """Lab's up and down (a base of pha.lab.core.Lab)."""

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
            "fencing_option": fencing_option(),
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
                option = self.info["fencing_option"]
                self.exec(names[0], ["crm_attribute", "--type", "crm_config", "--name",
                                     option, "--update", "false"])
                step(f"{option}=false")
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
        write(sd / "authkey", os.urandom(256), 0o400)
        write(sd / "corosync.conf", config.render_corosync_conf(names, token_ms, two_node=two_node), 0o644)
        write(sd / "hosts", config.render_hosts(names), 0o644)
        write(sd / "cib.xml", config.render_seed_cib(fencing=self.info["fencing_option"]), 0o600)
        write(sd / "ocf-shellfuncs", config.patch_ocf_shellfuncs(Path(config.OCF_SHELLFUNCS).read_text()), 0o644)
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
                copy_tree_with_owners(Path(path), target)
            else:
                make_dir(target, mode, owner, group)
            os.makedirs(path, mode=0o700, exist_ok=True)    # the mount point (pha's own on a fresh host)
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
        write(node_dir / "init.json", json.dumps(spec, indent=2) + "\n", 0o600)

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
            record["unshare_pid"], record["unshare_start"] = proc.pid, start_time(proc.pid)
            self._save_info()
        for name in names:
            record = self.info["nodes"][name]
            record["pid"] = self._init_child(name, record["unshare_pid"])
            record["pid_start"] = start_time(record["pid"])
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
                       + tail(self.state_dir / node / "init.log"))

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                record = self.info["nodes"][name]
                if (self.state_dir / name / "ready").exists():
                    waiting.remove(name)
                elif not is_process(record["pid"], record["pid_start"]):
                    raise LabError(f"{name}: its init exited during setup; {self.state_dir / name / 'init.log'}:\n"
                                   + tail(self.state_dir / name / "init.log"))
            if waiting and time.monotonic() > deadline:
                raise LabError(f"nodes not ready after {READY_TIMEOUT:.0f}s: {', '.join(waiting)}")
            time.sleep(0.05)

    # ---- down --------------------------------------------------------------------------------
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
        bmc.stop(self)   # first: no power-on races the teardown
        info = self._read_info() or self.info        # on disk: the BMCs (pha.lab.fence) update it
        records = info.get("nodes", {}).values()
        inits = {r["pid"]: r["pid_start"] for r in records if r.get("pid")}
        kill(inits, signal.SIGTERM)
        left = wait_gone(inits, timeout)
        if left:      # SIGKILL of a PID namespace's init kills the whole namespace
            kill(left, signal.SIGKILL)
            wait_gone(left, 10)
        for proc in self._children:
            proc.wait(timeout=10)
        self._children = []
        wait_gone({r["unshare_pid"]: r["unshare_start"] for r in records
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
            start = start_time(int(entry))
            if (st.st_dev, st.st_ino) in inodes and start is not None:
                found[int(entry)] = start
        if found:
            kill(found, signal.SIGTERM)
            kill(wait_gone(found, 5), signal.SIGKILL)
            wait_gone(found, 5)
