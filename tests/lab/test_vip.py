"""ocf:pha:vip as a real Pacemaker resource in the namespace lab."""
from __future__ import annotations

import sys
import time

import pytest

from pha import crm

pytestmark = pytest.mark.lab
AGENT = "/usr/lib/ocf/resource.d/pha/vip"


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"pg": False}


def status(lab, observer: str = "node1") -> crm.ClusterStatus:
    return crm.parse_crm_mon(lab.exec(observer, list(crm.CRM_MON_ARGV), timeout=20).stdout)


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
