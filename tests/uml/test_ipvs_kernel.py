"""pha.ipvs against a real kernel's IPVS (runs in the UML guest; see conftest.py).

`ipvsadm -Ln` serves as an independent oracle of what the kernel holds.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from pha.ipvs import (ADD_REAL_SERVER, DEL_REAL_SERVER, SET_REAL_SERVER, SET_SERVICE, Change, IPVSClient,
                      RealServer, ServiceState, VirtualService, plan)

pytestmark = pytest.mark.uml

VS = VirtualService("10.80.0.100", 5432, scheduler="rr")


def ipvsadm() -> str:
    return subprocess.run(["ipvsadm", "-Ln"], check=True, capture_output=True, text=True).stdout


def listed_servers() -> dict[str, tuple[str, int]]:
    """ipvsadm's view: "address:port" -> (forward, weight)."""
    rows = [line.split() for line in ipvsadm().splitlines() if line.strip().startswith("->")]
    return {row[1]: (row[2], int(row[3])) for row in rows if row[1] != "RemoteAddress:Port"}


def servers(*spec: tuple[str, int, str]) -> tuple[RealServer, ...]:
    return tuple(RealServer(address, 5432, weight, forwarding) for address, weight, forwarding in spec)


def same_servers(a: ServiceState | None, b: ServiceState) -> bool:
    return a is not None and a.service == b.service and set(a.real_servers) == set(b.real_servers)


def test_add_and_read_back_from_raw_attributes(ipvs_client: IPVSClient) -> None:
    desired = ServiceState(VS, servers(("10.80.0.12", 3, "dr"), ("10.80.0.13", 0, "dr"),
                                       ("10.80.0.14", 1, "nat")))
    assert ipvs_client.read(VS) is None
    changes = ipvs_client.reconcile(desired)
    assert len(changes) == 4
    assert same_servers(ipvs_client.read(VS), desired)
    assert "TCP  10.80.0.100:5432 rr" in ipvsadm()
    assert listed_servers() == {"10.80.0.12:5432": ("Route", 3), "10.80.0.13:5432": ("Route", 0),
                                "10.80.0.14:5432": ("Masq", 1)}      # Masq: not pyroute2's default (3)
    assert [s.service for s in ipvs_client.services()] == [VS]


def test_weight_change_keeps_every_other_field(ipvs_client: IPVSClient) -> None:
    ipvs_client.reconcile(ServiceState(VS, servers(("10.80.0.12", 1, "nat"), ("10.80.0.13", 1, "dr"))))
    desired = ServiceState(VS, servers(("10.80.0.12", 7, "nat"), ("10.80.0.13", 1, "dr")))
    changes = ipvs_client.reconcile(desired)
    assert [c.kind for c in changes] == [SET_REAL_SERVER]
    assert same_servers(ipvs_client.read(VS), desired)
    assert listed_servers()["10.80.0.12:5432"] == ("Masq", 7)


def test_forwarding_method_change(ipvs_client: IPVSClient) -> None:
    ipvs_client.reconcile(ServiceState(VS, servers(("10.80.0.12", 1, "nat"))))
    desired = ServiceState(VS, servers(("10.80.0.12", 1, "dr")))
    assert [c.kind for c in ipvs_client.reconcile(desired)] == [SET_REAL_SERVER]
    assert listed_servers() == {"10.80.0.12:5432": ("Route", 1)}


def test_scheduler_and_persistence_changes(ipvs_client: IPVSClient) -> None:
    ipvs_client.reconcile(ServiceState(VS, servers(("10.80.0.12", 2, "dr"))))
    for scheduler, timeout, shown in (("wrr", 0, "wrr"), ("wlc", 300, "wlc persistent 300"), ("rr", 0, "rr"),
                                      ("sh", 60, "sh persistent 60")):   # sh: autoloaded via uml-modprobe
        tuned = VirtualService(VS.address, VS.port, scheduler=scheduler, persistent_timeout=timeout)
        changes = ipvs_client.reconcile(ServiceState(tuned, servers(("10.80.0.12", 2, "dr"))))
        assert [c.kind for c in changes] == [SET_SERVICE]
        current = ipvs_client.read(tuned)
        assert current is not None and current.service == tuned
        assert current.real_servers == servers(("10.80.0.12", 2, "dr"))   # a service "set" keeps the dests
        assert f"TCP  10.80.0.100:5432 {shown}" in ipvsadm()


def test_remove_real_server_and_service(ipvs_client: IPVSClient) -> None:
    ipvs_client.reconcile(ServiceState(VS, servers(("10.80.0.12", 1, "dr"), ("10.80.0.13", 1, "dr"))))
    changes = ipvs_client.reconcile(ServiceState(VS, servers(("10.80.0.13", 1, "dr"))))
    assert [c.kind for c in changes] == [DEL_REAL_SERVER]
    assert "10.80.0.12" not in ipvsadm()
    assert ipvs_client.remove(VS) is True
    assert ipvs_client.read(VS) is None and "10.80.0.100" not in ipvsadm()
    assert ipvs_client.remove(VS) is False


def test_apply_is_idempotent(ipvs_client: IPVSClient) -> None:
    desired = ServiceState(VS, servers(("10.80.0.12", 1, "dr"), ("10.80.0.13", 2, "dr")))
    changes = plan(desired, None)
    ipvs_client.apply(changes)
    ipvs_client.apply(changes)            # every add hits EEXIST and becomes a set
    assert same_servers(ipvs_client.read(VS), desired)
    gone = [Change(DEL_REAL_SERVER, VS, RealServer("10.80.0.99", 5432))]
    ipvs_client.apply(gone)               # deleting what is not there is done
    ipvs_client.apply([Change(SET_REAL_SERVER, VS, RealServer("10.80.0.14", 5432, 4))])   # set -> add
    assert RealServer("10.80.0.14", 5432, 4) in ipvs_client.read(VS).real_servers


def test_noop_reconcile_makes_zero_netlink_writes(ipvs_client: IPVSClient) -> None:
    desired = ServiceState(VS, servers(("10.80.0.12", 1, "dr"), ("10.80.0.13", 0, "dr")))
    ipvs_client.reconcile(desired)
    before = ipvs_client.writes
    listing = ipvsadm()
    for _ in range(3):
        assert ipvs_client.reconcile(desired) == []
    assert ipvs_client.writes == before
    assert ipvsadm() == listing


def test_unknown_scheduler_is_a_clear_error(ipvs_client: IPVSClient) -> None:
    from pha.ipvs import IPVSError
    with pytest.raises(IPVSError, match="nosuch"):
        ipvs_client.reconcile(ServiceState(VirtualService(VS.address, VS.port, scheduler="nosuch")))
    assert ipvs_client.read(VS) is None


def test_thousand_real_servers(ipvs_client: IPVSClient) -> None:
    many = tuple(RealServer(f"10.81.{i // 250}.{i % 250 + 1}", 5432, 1 + i % 3) for i in range(1000))
    desired = ServiceState(VS, many)
    started = time.monotonic()
    writes = ipvs_client.writes
    ipvs_client.reconcile(desired)
    elapsed = time.monotonic() - started
    assert ipvs_client.writes - writes == 1001
    assert same_servers(ipvs_client.read(VS), desired)
    assert len(listed_servers()) == 1000
    print(f"1000 real servers from empty: {elapsed:.2f}s")

    writes = ipvs_client.writes
    assert ipvs_client.reconcile(desired) == [] and ipvs_client.writes == writes

    changed = ServiceState(VS, (RealServer(many[0].address, 5432, 9),) + many[1:])
    assert [c.kind for c in ipvs_client.reconcile(changed)] == [SET_REAL_SERVER]
    assert ipvs_client.writes == writes + 1

    half = ServiceState(VS, many[::2])
    changes = ipvs_client.reconcile(half)
    assert [c.kind for c in changes] == [SET_REAL_SERVER] + [DEL_REAL_SERVER] * 500   # many[0] back to 1
    assert same_servers(ipvs_client.read(VS), half)
    assert ADD_REAL_SERVER not in {c.kind for c in changes}
