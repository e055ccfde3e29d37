"""The lab itself: nodes online, isolation from the host, faults, PostgreSQL, clean teardown.

One bring-up for the whole module (with --pg-running); the last test takes it down.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pha.lab import config

pytestmark = pytest.mark.lab
NET = config.SUBNET.rsplit(".", 1)[0]   # "10.78.0" for lab instance 0


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"pg_running": True}


def pha_lab(lab, *args: str) -> subprocess.CompletedProcess:
    pha = Path(sys.executable).parent / "pha"      # the console script next to this interpreter
    return subprocess.run([str(pha), "lab", "--state", str(lab.state_dir), *args],
                          capture_output=True, text=True, timeout=60)


def test_nodes_online_seen_by_every_node(lab):
    assert lab.nodes == ["node1", "node2", "node3"]
    for node in lab.nodes:
        view = lab.view(node)
        assert sorted(view.online_nodes()) == lab.nodes and len(view.nodes) == len(lab.nodes)
        assert view.summary.quorum and view.summary.dc in lab.nodes
        assert lab.exec(node, ["hostname"]).stdout.strip() == node


def test_fencing_is_off(lab):
    from pha import crm, fencing
    # detected, never from the version: stonith-enabled, fencing-enabled since 3.0.2
    name = fencing.detect_names(lambda argv: crm.run_command(argv, 30)).enabled
    assert lab.info["fencing_option"] == name
    out = lab.exec("node1", ["crm_attribute", "--type", "crm_config", "--name", name,
                             "--query", "--quiet"]).stdout
    assert out.strip() == "false"
    assert not lab.view("node1").summary.fencing_enabled


def test_addresses(lab):
    assert [lab.node_ip(n) for n in lab.nodes] == [f"{NET}.11", f"{NET}.12", f"{NET}.13"]
    assert (lab.client_ip, lab.subnet, lab.vip(0), lab.vip(99)) == (
        f"{NET}.50", f"{NET}.0/24", f"{NET}.100", f"{NET}.199")


def test_host_holds_only_a_blackhole_route_for_the_lab(lab):
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    from pha.lab import network

    assert network.host_routes_for_subnet() == [{"type": network.RTN_BLACKHOLE, "table": 254}]
    with IPRoute() as ipr:
        for address in [*map(lab.node_ip, lab.nodes), lab.client_ip, lab.vip(0)]:
            with pytest.raises(NetlinkError) as unroutable:
                ipr.route("get", dst=address)
            assert unroutable.value.code == errno.EINVAL, address   # the kernel's answer for a blackhole


def test_lab_namespaces_have_no_route_out(lab):
    code = ("import json; from pyroute2 import IPRoute\n"
            "with IPRoute() as i:\n"
            "    print(json.dumps(sorted((r.get_attr('RTA_DST') or 'default', r['dst_len'])"
            " for r in i.route('dump', family=2, table=254))))")
    for where in [*lab.nodes, "client"]:
        assert json.loads(lab.python(where, code).stdout) == [[f"{NET}.0", 24]], where


def test_streaming_replication_from_the_client(lab):
    code = """
import json, psycopg
rows = {}
with psycopg.connect(host="NET.11", user="postgres", dbname="postgres", connect_timeout=5) as c:
    rows["primary"] = c.execute("select application_name, client_addr::text, state"
                                " from pg_stat_replication order by 1").fetchall()
for ip in ("NET.12", "NET.13"):
    with psycopg.connect(host=ip, user="postgres", dbname="postgres", connect_timeout=5) as c:
        rows[ip] = c.execute("select pg_is_in_recovery(), current_setting('cluster_name')").fetchone()
print(json.dumps(rows))
""".replace("NET", NET)
    rows = json.loads(lab.python("client", code).stdout)
    assert rows["primary"] == [["node2", f"{NET}.12/32", "streaming"], ["node3", f"{NET}.13/32", "streaming"]]
    assert rows[f"{NET}.12"] == [True, "node2"] and rows[f"{NET}.13"] == [True, "node3"]


def test_exec_runs_in_the_node_and_passes_the_exit_code(lab):
    from pha.lab import LabCommandError

    assert lab.exec("node2", ["id", "-un"], user="postgres").stdout.strip() == "postgres"
    assert lab.exec("node2", ["cat"], input="hello").stdout == "hello"
    assert lab.exec("node2", ["sh", "-c", "echo $X"], env={"X": "1"}).stdout == "1\n"
    with pytest.raises(LabCommandError, match="node3.*exited 3"):
        lab.exec("node3", ["sh", "-c", "echo boom >&2; exit 3"])
    assert pha_lab(lab, "exec", "node1", "sh", "-c", "exit 5").returncode == 5
    assert pha_lab(lab, "exec", "client", "cat", "/proc/net/dev").returncode == 0
    unknown = pha_lab(lab, "exec", "node9", "true")
    assert unknown.returncode == 1 and "node9" in unknown.stderr


def test_status_json(lab):
    proc = pha_lab(lab, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["blackhole"] is True
    assert [(n["name"], n["ip"], n["running"], n["connected"]) for n in report["nodes"]] == [
        (n, lab.node_ip(n), True, True) for n in lab.nodes]
    assert all(sorted(n["pacemaker"]["online"]) == lab.nodes for n in report["nodes"])
    assert all(n["pacemaker"]["offline"] == [] for n in report["nodes"])
    assert report["pg_version"] == lab.pg_version


def test_status_text(lab):
    proc = pha_lab(lab, "status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(f"blackhole route present, PostgreSQL {lab.pg_version}")
    for node, line in zip(lab.nodes, lines[1:]):
        assert line.split()[0] == node and "running" in line
        assert "online: node1 node2 node3" in line and "offline: -" in line and "quorate" in line


def test_postgresql_is_the_chosen_version(lab):
    """The newest PostgreSQL installed (or PHA_LAB_PG), in a data directory that names no version."""
    from pha.lab import config
    assert lab.pg_version == (os.environ.get(config.PG_ENV) or config.pg_versions()[-1])
    for node in lab.nodes:
        assert lab.node_path(node, config.PGDATA + "/PG_VERSION").read_text().strip() == lab.pg_version


def test_cut_then_heal(lab, record_property):
    t0 = time.monotonic()
    lab.cut("node3")
    try:
        offline = lab.wait_offline(["node3"], timeout=60, observer="node1")
        isolated = lab.view("node3")
        assert isolated.online_nodes() == ["node3"] and not isolated.summary.quorum
        assert "node3" not in lab.view("node2").online_nodes()
    finally:
        lab.heal("node3")
    t1 = time.monotonic()
    online = lab.wait_online(timeout=60, observer="node1")
    record_property("cut_to_offline_s", round(offline, 1))
    record_property("heal_to_online_s", round(online, 1))
    print(f"cut -> offline {offline:.1f}s, heal -> online {online:.1f}s (total {time.monotonic() - t0:.1f}s)")
    assert time.monotonic() - t1 < 60


def test_up_refuses_while_a_lab_is_up(lab):
    from pha.lab import Lab, LabError

    with pytest.raises(LabError, match="already"):
        Lab(lab.state_dir).up(nodes=3)


def _namespace_ids(kind: str, pids: list[int]) -> set[tuple[int, int]]:
    ids = set()
    for pid in pids:
        st = os.stat(f"/proc/{pid}/ns/{kind}")
        ids.add((st.st_dev, st.st_ino))
    return ids


def _processes_in(pid_namespaces: set, net_namespaces: set) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid_ns, net_ns = (os.stat(f"/proc/{entry}/ns/{kind}") for kind in ("pid", "net"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (pid_ns.st_dev, pid_ns.st_ino) in pid_namespaces or (net_ns.st_dev, net_ns.st_ino) in net_namespaces:
            found.append(int(entry))
    return found


def test_down_leaves_nothing_behind(lab, record_property):
    """Last test of the module: it takes the lab down."""
    from pha.lab import network

    inits = [lab.info["nodes"][n]["pid"] for n in lab.nodes]
    pid_namespaces = _namespace_ids("pid", inits)
    net_namespaces = {(st.st_dev, st.st_ino) for st in
                      (os.stat(network.netns_path(n)) for n in network.existing_lab_netns())}
    assert len(pid_namespaces) == 3 and len(net_namespaces) == 5
    assert len(_processes_in(pid_namespaces, set())) > 3 * 8   # corosync, pacemaker daemons, postgres

    seconds = lab.down()
    record_property("down_s", round(seconds, 1))
    print(f"down in {seconds:.1f}s")

    assert _processes_in(pid_namespaces, net_namespaces) == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in inits)
    assert network.existing_lab_netns() == []
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = mountinfo.read()
    assert str(lab.state_dir) not in mounts and f"/run/netns/{config.NETNS_PREFIX}" not in mounts
    assert not lab.state_dir.exists()
    assert network.host_routes_for_subnet() == []
    assert not network.has_blackhole()
