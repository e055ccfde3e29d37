"""A small LVS-DR lab inside the UML guest: director, PostgreSQL nodes and a client.

The guest's root network namespace is the director: it holds the bridge br0 (10.79.0.1/24),
the reader VIP and IPVS. node1 (primary), node2, node3 and node4 (standbys) and client are
network namespaces on that bridge, built with pyroute2. PostgreSQL 15 runs in each node's
namespace from data directories on the guest's tmpfs (hostfs cannot hold PGDATA); the
standbys are cold copies of the freshly made primary. Postmasters are children of this
process, so a killed one is reaped at once and restarts cleanly.

Agents run in-process through AGENT.run, inside a namespace when needed: pyroute2's
pushns/popns switch only this thread, and sockets keep the namespace they were made in.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

SUBNET = "10.79.0"
PREFIX = 24
DIRECTOR_IP = f"{SUBNET}.1"
VIP = f"{SUBNET}.200"
CLIENT_IP = f"{SUBNET}.50"
NODES = {"node1": f"{SUBNET}.11", "node2": f"{SUBNET}.12", "node3": f"{SUBNET}.13", "node4": f"{SUBNET}.14"}
PRIMARY = "node1"
STATE = Path("/var/tmp/pha-uml")
PG_BIN = Path(max(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])).parent)  # the newest
BRIDGE = "br0"
PG_CONF = """
listen_addresses = '*'
port = 5432
shared_buffers = 16MB
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
wal_receiver_status_interval = 1s
fsync = off
logging_collector = off
"""


@contextlib.contextmanager
def inside(netns: Optional[str]) -> Iterator[None]:
    """Run the block in network namespace `netns` (None: stay where we are)."""
    if netns is None:
        yield
        return
    from pyroute2 import netns as pyroute2_netns
    pyroute2_netns.pushns(netns)
    try:
        yield
    finally:
        pyroute2_netns.popns()


def run_agent(agent: Any, action: str, env: Mapping[str, str], netns: Optional[str] = None) -> tuple[int, str]:
    """Run an OCF action in-process (in `netns`); return its code and what it logged."""
    err = io.StringIO()
    with inside(netns), contextlib.redirect_stderr(err):
        rc = agent.run([action], env=dict(env))
    return rc, err.getvalue()


class Lab:
    """Bring-up, PostgreSQL control and client access for the guest's LVS lab."""

    def __init__(self) -> None:
        self.postmasters: dict[str, subprocess.Popen] = {}
        self.namespaces: list[str] = []
        self.hosts_mounted = False

    # ---- network
    def up(self) -> None:
        from pyroute2 import IPRoute, netns
        if STATE.exists():
            shutil.rmtree(STATE)
        STATE.mkdir(mode=0o755)
        with IPRoute() as ipr:
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            bridge = ipr.link_lookup(ifname=BRIDGE)[0]
            ipr.addr("add", index=bridge, address=DIRECTOR_IP, prefixlen=PREFIX)
            ipr.addr("add", index=bridge, address=VIP, prefixlen=32)     # the director holds the VIP
            ipr.link("set", index=bridge, state="up")
            for name, address in [*NODES.items(), ("client", CLIENT_IP)]:
                netns.create(name)
                self.namespaces.append(name)
                outer, inner = f"v-{name}", f"p-{name}"
                ipr.link("add", ifname=outer, kind="veth", peer=inner)
                ipr.link("set", index=ipr.link_lookup(ifname=outer)[0], master=bridge, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=inner)[0], net_ns_fd=name)
                with inside(name), IPRoute() as nsr:
                    index = nsr.link_lookup(ifname=inner)[0]
                    nsr.link("set", index=index, ifname="eth0")
                    nsr.addr("add", index=index, address=address, prefixlen=PREFIX)
                    nsr.link("set", index=index, state="up")
                    nsr.link("set", index=nsr.link_lookup(ifname="lo")[0], state="up")
        hosts = STATE / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in NODES.items()))
        subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)   # guest only
        self.hosts_mounted = True

    def down(self) -> None:
        from pyroute2 import IPRoute, netns
        for node in list(self.postmasters):
            self.stop_pg(node)
        if self.hosts_mounted:
            subprocess.run(["umount", "/etc/hosts"], check=False)
        for name in self.namespaces:
            netns.remove(name)
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=BRIDGE):
                ipr.link("del", index=index)

    # ---- PostgreSQL
    def data(self, node: str) -> Path:
        return STATE / node

    def socket_dir(self, node: str) -> Path:
        return STATE / f"sock-{node}"

    def make_clusters(self) -> None:
        """initdb the primary once, then cold-copy it into every standby's data directory."""
        primary = self.data(PRIMARY)
        primary.mkdir(mode=0o700)
        shutil.chown(primary, "postgres", "postgres")
        initdb = subprocess.run([PG_BIN / "initdb", "-D", primary, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                 "--locale=C", "--no-sync", "--no-instructions"],
                                user="postgres", capture_output=True, text=True, cwd=STATE)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        with open(primary / "postgresql.conf", "a") as conf:
            conf.write(PG_CONF)
        with open(primary / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/{PREFIX} trust\nhost replication all {SUBNET}.0/{PREFIX} trust\n")
        for node in NODES:
            socket_dir = self.socket_dir(node)
            socket_dir.mkdir(mode=0o700)
            shutil.chown(socket_dir, "postgres", "postgres")
            if node != PRIMARY:
                subprocess.run(["cp", "-a", str(primary), str(self.data(node))], check=True)
                (self.data(node) / "standby.signal").touch()
                shutil.chown(self.data(node) / "standby.signal", "postgres", "postgres")
            settings = {"cluster_name": node, "unix_socket_directories": str(socket_dir)}
            if node != PRIMARY:
                # node4 plays pha4pgsql's reader outside the cluster: named by its address
                name = NODES[node] if node == "node4" else node
                settings["primary_conninfo"] = (f"host={NODES[PRIMARY]} port=5432 user=postgres "
                                                f"application_name={name}")
            with open(self.data(node) / "postgresql.auto.conf", "a") as auto:
                auto.write("".join(f"{k} = '{v}'\n" for k, v in settings.items()))

    def start_pg(self, node: str, timeout: float = 60) -> None:
        log = open(STATE / f"{node}.log", "a")
        with inside(node):
            self.postmasters[node] = subprocess.Popen([PG_BIN / "postgres", "-D", self.data(node)],
                                                      user="postgres", stdout=log, stderr=subprocess.STDOUT,
                                                      cwd=STATE)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.local(node, "select 1")
                return
            except Exception:
                if self.postmasters[node].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL on {node} did not start:\n{self.log_tail(node)}")
                time.sleep(0.2)

    def log_tail(self, node: str, lines: int = 20) -> str:
        return "\n".join((STATE / f"{node}.log").read_text(errors="replace").splitlines()[-lines:])

    def kill_postmaster(self, node: str) -> None:
        """kill -9 the postmaster (its children notice and exit)."""
        process = self.postmasters.pop(node)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_pg(self, node: str) -> None:
        process = self.postmasters.pop(node, None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)     # immediate shutdown: this is a throw-away lab
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def local(self, node: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Run SQL on `node` over its unix socket (no network namespace involved)."""
        import psycopg
        with psycopg.connect(host=str(self.socket_dir(node)), user="postgres", dbname="postgres",
                             connect_timeout=3, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def wait_streaming(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.local(PRIMARY, "select application_name from pg_stat_replication"
                                       " where state = 'streaming'")
            if set(names) <= {r[0] for r in rows}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"standbys {names} not streaming; pg_stat_replication has {rows}")
            time.sleep(0.2)

    def wait_replayed(self, name: str, timeout: float = 30) -> None:
        """Wait until the primary sees standby `name` replayed everything written so far."""
        target = self.local(PRIMARY, "select pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + timeout
        while not self.local(PRIMARY, "select coalesce(bool_and(replay_lsn >= %s::pg_lsn), false)"
                                      " from pg_stat_replication where application_name = %s", (target, name))[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not replay up to {target}")
            time.sleep(0.2)

    # ---- the client
    def client_connect(self, timeout: int = 3) -> Any:
        """A connection to VIP:5432 made from the client namespace."""
        import psycopg
        with inside("client"):
            return psycopg.connect(host=VIP, port=5432, user="postgres", dbname="postgres",
                                   connect_timeout=timeout, autocommit=True)

    def who_answers(self, count: int) -> list[str]:
        """cluster_name of the server behind each of `count` fresh connections to the VIP."""
        seen = []
        for _ in range(count):
            with self.client_connect() as conn:
                seen.append(conn.execute("select current_setting('cluster_name')").fetchone()[0])
        return seen
