"""ocf:pha:vip as a real Pacemaker resource in the namespace lab."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pha import crm, crmstatus

pytestmark = pytest.mark.lab
AGENT = "/usr/lib/ocf/resource.d/pha/vip"


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"pg": False}


def status(lab, observer: str = "node1") -> crmstatus.ClusterStatus:
    return crmstatus.parse_crm_mon(lab.exec(observer, list(crm.CRM_MON_ARGV), timeout=20).stdout)


def wait_for(what: str, check, timeout: float = 60, step: float = 0.2):
    """Poll check() until it returns something truthy; return (value, seconds)."""
    t0 = time.monotonic()
    while True:
        try:
            value = check()
        except Exception as err:  # a node busy re-forming its partition: try again
            value, last = None, err
        if value:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last error: {locals().get('last')})")
        time.sleep(step)


def holders(lab, address: str) -> list[str]:
    """Nodes that really have `address` on an interface (asked of the kernel)."""
    code = f"from pha import net; print(net.route_nic({address!r}) == 'eth0' and net.has_address('eth0', {address!r}))"
    return [n for n in lab.nodes if lab.python(n, code, timeout=30).stdout.strip() == "True"]


REACH = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=1).close()
    print("yes")
except ConnectionRefusedError:
    print("yes")  # a RST: the address answers
except OSError:
    print("no")
"""


def reachable(lab, address: str) -> bool:
    """Whether `address` answers a TCP SYN from the client namespace."""
    out = lab.client_exec([sys.executable, "-c", REACH, address], check=False, timeout=20)
    return out.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def writer_vip(lab):
    address = lab.vip(0)
    lab.exec("node1", ["pcs", "resource", "create", "writer-vip", "ocf:pha:vip", f"ip={address}",
                       "cidr_netmask=24", "op", "monitor", "interval=2s", "timeout=10s"])
    node, seconds = wait_for("writer-vip started",
                             lambda: status(lab).resource_nodes("writer-vip"), timeout=60)
    print(f"writer-vip started on {node[0]} {seconds:.1f}s after pcs resource create")
    return address


def test_pcs_describes_the_installed_agent(lab) -> None:
    out = lab.exec("node1", ["pcs", "resource", "describe", "ocf:pha:vip"]).stdout
    assert "Virtual IP address" in out and "ip (required)" in out and "cidr_netmask" in out


def test_vip_runs_as_a_pacemaker_resource(lab, writer_vip) -> None:
    node = status(lab).resource_nodes("writer-vip")
    assert len(node) == 1
    assert holders(lab, writer_vip) == node
    assert reachable(lab, writer_vip)


def test_vip_moves_within_seconds_when_its_node_is_cut(lab, writer_vip, record_property) -> None:
    victim = status(lab).resource_nodes("writer-vip")[0]
    observer = next(n for n in lab.nodes if n != victim)
    t0 = time.monotonic()
    lab.cut(victim)
    try:
        moved, _ = wait_for("writer-vip on another node",
                            lambda: [n for n in status(lab, observer).resource_nodes("writer-vip")
                                     if n != victim], timeout=60)
        wait_for("writer-vip answering from the client", lambda: reachable(lab, writer_vip),
                 timeout=30, step=0.1)
        seconds = time.monotonic() - t0
        record_property("vip_failover_seconds", round(seconds, 2))
        print(f"writer-vip moved {victim} -> {moved[0]} and answered {seconds:.1f}s after the cut")
        assert seconds < 20
        # The isolated node lost quorum and stopped its copy (no-quorum-policy=stop).
        wait_for(f"{victim} dropping the address",
                 lambda: victim not in holders(lab, writer_vip), timeout=30)
    finally:
        lab.heal(victim)
    healed = lab.wait_online(timeout=60, observer=observer)
    print(f"{victim} back online {healed:.1f}s after heal")
    assert victim in status(lab, observer).online_nodes()
    assert len(holders(lab, writer_vip)) == 1


def test_ocf_tester_passes_inside_a_node(lab) -> None:
    out = lab.exec("node2", ["ocf-tester", "-n", "vip-tester", "-o", f"ip={lab.vip(20)}",
                             "-o", "cidr_netmask=24", "-o", "arp_count=1", AGENT],
                   check=False, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "vip passed all tests" in out.stdout


def test_misconfigured_vip_shows_its_exit_reason_in_crm_mon(lab) -> None:
    lab.exec("node1", ["pcs", "resource", "create", "bad-vip", "ocf:pha:vip", "ip=10.78.0.999",
                       "op", "monitor", "interval=5s"])
    try:
        failures, _ = wait_for("bad-vip failure in crm_mon", lambda: [
            f for f in status(lab).failures if f.op_key.startswith("bad-vip_")], timeout=60)
        assert failures[0].rc == 6  # OCF_ERR_CONFIGURED
        assert "parameter ip=10.78.0.999 is not an IPv4 or IPv6 address" in failures[0].exit_reason
        # Fatal for the resource: stopped everywhere (stop succeeds: nothing started), never started.
        wait_for("bad-vip stopped everywhere",
                 lambda: not status(lab).resource_nodes("bad-vip"), timeout=30)
        time.sleep(3)
        assert not status(lab).resource_nodes("bad-vip")
    finally:
        lab.exec("node1", ["pcs", "resource", "delete", "bad-vip", "--force"], check=False)


# Runs in the client namespace: prints "ready", then after argv[2] seconds one JSON list of
# the gratuitous ARP frames seen for argv[1] (sender and target address both argv[1]).
ARP_CAPTURE = r"""
import json, socket, struct, sys, time
vip, deadline = socket.inet_aton(sys.argv[1]), time.time() + float(sys.argv[2])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sock.settimeout(0.1)
print("ready", flush=True)
frames = []
while time.time() < deadline:
    try:
        data = sock.recv(2048)
    except socket.timeout:
        continue
    arp = data[14:42]
    if len(arp) == 28 and arp[14:18] == vip and arp[24:28] == vip:
        frames.append({"t": time.time(), "op": struct.unpack("!H", arp[6:8])[0], "mac": arp[8:14].hex(":")})
print(json.dumps(frames), flush=True)
"""


def test_start_announces_the_address_with_gratuitous_arp(lab) -> None:
    """The frames the agent sends from Python, seen on the wire from the client namespace."""
    address, node = lab.vip(21), "node3"
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "garp-test", "OCF_RESKEY_ip": address,
           "OCF_RESKEY_cidr_netmask": "24", "OCF_RESKEY_arp_count": "3", "OCF_RESKEY_arp_interval": "150"}
    capture = subprocess.Popen(lab.client_command([sys.executable, "-c", ARP_CAPTURE, address, "3"]),
                               stdout=subprocess.PIPE, text=True, env=lab.command_env())
    try:
        assert capture.stdout.readline().strip() == "ready"
        started = time.time()
        lab.exec(node, [AGENT, "start"], env=env)
        frames = json.loads(capture.communicate(timeout=30)[0])
    finally:
        capture.kill()
        lab.exec(node, [AGENT, "stop"], env=env, check=False)
    mac = lab.python(node, "from pha import net; print(net.get_link('eth0').mac)").stdout.strip()
    print(f"{len(frames)} gratuitous ARP frames for {address}, "
          f"{[round(f['t'] - started, 2) for f in frames]} s after start")
    assert [(f["op"], f["mac"]) for f in frames] == [(1, mac)] * 3      # requests, from node3's eth0
    gaps = [b["t"] - a["t"] for a, b in zip(frames, frames[1:])]
    assert all(gap > 0.1 for gap in gaps), gaps                        # arp_interval=150 ms apart


@pytest.mark.parametrize("nic", ["e" * 65536, "eth\udcff0", "eth0 eth1"], ids=["long", "not-utf8", "two"])
def test_bad_nic_is_refused_by_the_installed_agent_and_stop_succeeds(lab, nic: str) -> None:
    """Through the shim and the node's worker: no struct.error, no UnicodeEncodeError, no traceback."""
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "bad-nic", "OCF_RESKEY_ip": lab.vip(22),
           "OCF_RESKEY_nic": nic}
    start = lab.exec("node2", [AGENT, "start"], env=env, check=False)
    assert start.returncode == 6, start.stderr[-2000:]      # OCF_ERR_CONFIGURED
    assert "ocf-exit-reason:parameter nic=" in start.stderr and "Traceback" not in start.stderr
    stop = lab.exec("node2", [AGENT, "stop"], env=env, check=False)
    assert stop.returncode == 0 and "Traceback" not in stop.stderr, stop.stderr[-2000:]
    assert lab.vip(22) not in lab.exec("node2", ["ip", "-4", "-o", "addr"]).stdout
