"""pha.ipvs without a kernel: model validation, the pure planner, raw-NLA parsing, apply's retries."""
from __future__ import annotations

import errno
import itertools
import os
import random

import pytest

from pha import ipvs
from pha.ipvs import (ADD_REAL_SERVER, ADD_SERVICE, DEL_REAL_SERVER, DEL_SERVICE, SET_REAL_SERVER,
                      SET_SERVICE, Change, RealServer, ServiceState, VirtualService, plan)

pytestmark = pytest.mark.unit

VS = VirtualService("10.0.0.100", 5432)


def rs(last: int, weight: int = 1, forwarding: str = "dr", port: int = 5432) -> RealServer:
    return RealServer(f"10.0.0.{last}", port, weight, forwarding)


def state(*servers: RealServer, service: VirtualService = VS) -> ServiceState:
    return ServiceState(service, servers)


def simulate(actual: ServiceState | None, changes: list[Change]) -> ServiceState | None:
    """What the kernel would hold after `changes` (a pure model of IPVS, for checking plans)."""
    service = actual.service if actual else None
    servers = {s.key: s for s in actual.real_servers} if actual else {}
    for change in changes:
        if change.kind == ADD_SERVICE:
            assert service is None, "add of an existing service"
            service, servers = change.service, {}
        elif change.kind == SET_SERVICE:
            assert service is not None and service.key == change.service.key
            service = change.service
        elif change.kind == DEL_SERVICE:
            assert service is not None
            service, servers = None, {}
        else:
            assert service is not None and service.key == change.service.key
            server = change.real_server
            if change.kind == ADD_REAL_SERVER:
                assert server.key not in servers
                servers[server.key] = server
            elif change.kind == SET_REAL_SERVER:
                assert server.key in servers
                servers[server.key] = server
            else:
                assert change.kind == DEL_REAL_SERVER and server.key in servers
                del servers[server.key]
    return None if service is None else ServiceState(service, tuple(servers.values()))


def same(a: ServiceState | None, b: ServiceState | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.service == b.service and set(a.real_servers) == set(b.real_servers)


# ---- model validation


@pytest.mark.parametrize("kwargs, message", [
    ({"address": "10.0.0.300"}, "not an IP address"),
    ({"address": "vip.example"}, "not an IP address"),
    ({"address": ""}, "not an IP address"),
    ({"port": 0}, "not a port"),
    ({"port": 65536}, "not a port"),
    ({"port": "5432"}, "not a port"),
    ({"port": True}, "not a port"),
    ({"protocol": "icmp"}, "protocol"),
    ({"scheduler": "RR"}, "scheduler"),
    ({"scheduler": "rr;reboot"}, "scheduler"),
    ({"scheduler": "a" * 16}, "scheduler"),
    ({"scheduler": ""}, "scheduler"),
    ({"persistent_timeout": -1}, "persistent_timeout"),
    ({"persistent_timeout": 1.5}, "persistent_timeout"),
])
def test_virtual_service_rejects_bad_fields(kwargs: dict, message: str) -> None:
    fields = {"address": "10.0.0.100", "port": 5432, **kwargs}
    with pytest.raises(ValueError, match=message):
        VirtualService(**fields)


def test_virtual_service_normalises_addresses_and_keys() -> None:
    v6 = VirtualService("2001:DB8::0001", 5432, "udp", "wlc", 300)
    assert v6.address == "2001:db8::1" and v6.key == ("2001:db8::1", 5432, "udp")
    assert str(VS) == "TCP 10.0.0.100:5432"


@pytest.mark.parametrize("kwargs, message", [
    ({"address": "node2"}, "not an IP address"),
    ({"port": -5}, "not a port"),
    ({"weight": -1}, "not in 0-65535"),
    ({"weight": 65536}, "not in 0-65535"),
    ({"weight": "2"}, "not in 0-65535"),
    ({"weight": False}, "not in 0-65535"),
    ({"forwarding": "local"}, "forwarding"),
])
def test_real_server_rejects_bad_fields(kwargs: dict, message: str) -> None:
    fields = {"address": "10.0.0.2", "port": 5432, **kwargs}
    with pytest.raises(ValueError, match=message):
        RealServer(**fields)


def test_weight_bounds_are_inclusive() -> None:
    assert RealServer("10.0.0.2", 5432, 0).weight == 0
    assert RealServer("10.0.0.2", 5432, 65535).weight == 65535


def test_duplicate_real_server_is_rejected() -> None:
    with pytest.raises(ValueError, match="10.0.0.2:5432 is listed twice"):
        state(rs(2, 1), rs(2, 5))
    assert len(state(rs(2), rs(2, port=5433)).real_servers) == 2


# ---- plan


def test_nothing_to_nothing() -> None:
    assert plan(None, None) == []


def test_create_from_empty_adds_service_then_servers() -> None:
    desired = state(rs(2), rs(3, 0))
    assert plan(desired, None) == [Change(ADD_SERVICE, VS), Change(ADD_REAL_SERVER, VS, rs(2)),
                                   Change(ADD_REAL_SERVER, VS, rs(3, 0))]


def test_create_service_without_servers() -> None:
    assert plan(state(), None) == [Change(ADD_SERVICE, VS)]


def test_remove_service_is_one_delete() -> None:
    assert plan(None, state(rs(2), rs(3))) == [Change(DEL_SERVICE, VS)]


def test_identical_states_make_no_changes_whatever_the_order() -> None:
    servers = [rs(2, 1), rs(3, 2), rs(4, 0), rs(5, 7, "nat")]
    for order in itertools.permutations(servers):
        assert plan(state(*servers), state(*order)) == []


@pytest.mark.parametrize("scheduler, timeout", [("wrr", 0), ("rr", 300), ("sh", 60)])
def test_scheduler_or_persistence_change_is_a_set(scheduler: str, timeout: int) -> None:
    tuned = VirtualService("10.0.0.100", 5432, scheduler=scheduler, persistent_timeout=timeout)
    assert plan(state(rs(2), service=tuned), state(rs(2))) == [Change(SET_SERVICE, tuned)]


def test_weight_and_forwarding_changes_are_sets() -> None:
    changes = plan(state(rs(2, 5), rs(3, 1, "nat")), state(rs(2, 1), rs(3, 1)))
    assert changes == [Change(SET_REAL_SERVER, VS, rs(2, 5)), Change(SET_REAL_SERVER, VS, rs(3, 1, "nat"))]


def test_drain_to_zero_is_a_set_not_a_delete() -> None:
    assert plan(state(rs(2, 0), rs(3)), state(rs(2), rs(3))) == [Change(SET_REAL_SERVER, VS, rs(2, 0))]


def test_removed_server_is_deleted() -> None:
    assert plan(state(rs(2)), state(rs(2), rs(3))) == [Change(DEL_REAL_SERVER, VS, rs(3))]


def test_same_address_other_port_is_another_server() -> None:
    changes = plan(state(rs(2, port=5433)), state(rs(2)))
    assert changes == [Change(ADD_REAL_SERVER, VS, rs(2, port=5433)), Change(DEL_REAL_SERVER, VS, rs(2))]


def test_order_is_service_then_adds_then_sets_then_deletes() -> None:
    tuned = VirtualService("10.0.0.100", 5432, scheduler="wlc")
    changes = plan(state(rs(3, 9), rs(4), service=tuned), state(rs(2), rs(3)))
    assert [c.kind for c in changes] == [SET_SERVICE, ADD_REAL_SERVER, SET_REAL_SERVER, DEL_REAL_SERVER]
    assert all(c.service == tuned for c in changes)


def test_plan_refuses_states_of_different_services() -> None:
    other = VirtualService("10.0.0.101", 5432)
    with pytest.raises(ValueError, match="cannot plan"):
        plan(state(service=other), state())
    with pytest.raises(ValueError, match="cannot plan"):
        plan(state(service=VirtualService("10.0.0.100", 5432, "udp")), state())


def test_plan_is_pure() -> None:
    actual, desired = state(rs(2), rs(3)), state(rs(3, 4), rs(5))
    before = (actual, desired)
    first = plan(desired, actual)
    assert plan(desired, actual) == first and (actual, desired) == before


def test_random_plans_reach_the_desired_state_and_then_stay_quiet() -> None:
    rng = random.Random(20261121)
    schedulers = ["rr", "wrr", "wlc"]
    for _ in range(500):
        def random_state() -> ServiceState | None:
            if rng.random() < 0.1:
                return None
            service = VirtualService("10.0.0.100", 5432, scheduler=rng.choice(schedulers),
                                     persistent_timeout=rng.choice([0, 0, 300]))
            picked = rng.sample(range(2, 40), rng.randint(0, 12))
            return ServiceState(service, tuple(rs(n, rng.randint(0, 3), rng.choice(["dr", "dr", "nat"]))
                                               for n in picked))
        actual, desired = random_state(), random_state()
        changes = plan(desired, actual)
        reached = simulate(actual, changes)
        assert same(reached, desired), (actual, desired, changes)
        assert plan(desired, reached) == []
        kinds = [c.kind for c in changes]
        assert kinds == sorted(kinds, key=[ADD_SERVICE, SET_SERVICE, ADD_REAL_SERVER, SET_REAL_SERVER,
                                           DEL_REAL_SERVER, DEL_SERVICE].index)


def test_thousand_servers_plan_is_fast_and_minimal() -> None:
    desired = state(*(RealServer(f"10.1.{i // 250}.{i % 250 + 1}", 5432, 1) for i in range(1000)))
    assert len(plan(desired, None)) == 1001
    assert plan(desired, desired) == []
    one_weight = state(*(s if i else RealServer(s.address, s.port, 2) for i, s in enumerate(desired.real_servers)))
    assert [c.kind for c in plan(one_weight, desired)] == [SET_REAL_SERVER]


# ---- raw netlink attributes


class NLA(dict):
    """Stands in for a pyroute2 nla: only .get() is used."""


def test_service_from_raw_nla_reads_flags_and_timeout() -> None:
    raw = NLA(IPVS_SVC_ATTR_ADDR="10.0.0.100", IPVS_SVC_ATTR_PORT=5432, IPVS_SVC_ATTR_PROTOCOL=6,
              IPVS_SVC_ATTR_SCHED_NAME="wrr", IPVS_SVC_ATTR_FLAGS={"flags": 0x3, "mask": 0xFFFFFFFF},
              IPVS_SVC_ATTR_TIMEOUT=300)
    assert ipvs.service_from_nla(raw) == VirtualService("10.0.0.100", 5432, "tcp", "wrr", 300)


def test_service_timeout_without_persistent_flag_is_ignored() -> None:
    raw = NLA(IPVS_SVC_ATTR_ADDR="10.0.0.100", IPVS_SVC_ATTR_PORT=5432, IPVS_SVC_ATTR_PROTOCOL=6,
              IPVS_SVC_ATTR_SCHED_NAME="rr", IPVS_SVC_ATTR_FLAGS={"flags": 0x2, "mask": 0xFFFFFFFF},
              IPVS_SVC_ATTR_TIMEOUT=300)
    assert ipvs.service_from_nla(raw).persistent_timeout == 0


def test_fwmark_and_unknown_protocol_services_are_skipped() -> None:
    assert ipvs.service_from_nla(NLA(IPVS_SVC_ATTR_FWMARK=7, IPVS_SVC_ATTR_PROTOCOL=6)) is None
    assert ipvs.service_from_nla(NLA(IPVS_SVC_ATTR_ADDR="10.0.0.1", IPVS_SVC_ATTR_PORT=1,
                                     IPVS_SVC_ATTR_PROTOCOL=99, IPVS_SVC_ATTR_SCHED_NAME="rr")) is None


@pytest.mark.parametrize("method, forwarding", [(0, "nat"), (2, "tunnel"), (3, "dr")])
def test_real_server_forwarding_comes_from_the_raw_attribute(method: int, forwarding: str) -> None:
    raw = NLA(IPVS_DEST_ATTR_ADDR="10.0.0.2", IPVS_DEST_ATTR_PORT=5432, IPVS_DEST_ATTR_FWD_METHOD=method,
              IPVS_DEST_ATTR_WEIGHT=4)
    assert ipvs.real_server_from_nla(raw) == RealServer("10.0.0.2", 5432, 4, forwarding)


def test_local_forwarding_is_not_modelled() -> None:
    raw = NLA(IPVS_DEST_ATTR_ADDR="10.0.0.2", IPVS_DEST_ATTR_PORT=5432, IPVS_DEST_ATTR_FWD_METHOD=1,
              IPVS_DEST_ATTR_WEIGHT=1)
    assert ipvs.real_server_from_nla(raw) is None


# ---- write messages: decoded by pyroute2's own parser


def decode(data: bytes) -> list:
    """Split a batch of netlink messages and decode each with pyroute2's ipvsmsg."""
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    messages, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "little")
        message = ipvsmsg(data[offset:offset + length])
        message.decode()
        messages.append(message)
        offset += (length + 3) & ~3
    return messages


def test_full_service_record_carries_every_field() -> None:
    tuned = VirtualService("10.0.0.100", 5432, "tcp", "wrr", 300)
    message, = decode(ipvs.encode_write(33, 7, Change(SET_SERVICE, tuned), "set"))
    assert (message["header"]["type"], message["header"]["sequence_number"], message["cmd"]) == (33, 7, 2)
    assert message["header"]["flags"] & 0x5 == 0x5            # request + ack
    svc = message.get("IPVS_CMD_ATTR_SERVICE")
    assert (svc.get("IPVS_SVC_ATTR_AF"), svc.get("IPVS_SVC_ATTR_PROTOCOL"), svc.get("IPVS_SVC_ATTR_ADDR"),
            svc.get("IPVS_SVC_ATTR_PORT")) == (2, 6, "10.0.0.100", 5432)
    assert svc.get("IPVS_SVC_ATTR_SCHED_NAME") == "wrr" and svc.get("IPVS_SVC_ATTR_TIMEOUT") == 300
    assert svc.get("IPVS_SVC_ATTR_FLAGS") == {"flags": ipvs.PERSISTENT_FLAG, "mask": 0xFFFFFFFF}
    assert svc.get("IPVS_SVC_ATTR_NETMASK") == "255.255.255.255"
    assert ipvs.service_from_nla(svc) == tuned


def test_dest_record_carries_every_field_and_the_service_key() -> None:
    message, = decode(ipvs.encode_write(33, 8, Change(SET_REAL_SERVER, VS, rs(2, 0, "nat")), "set"))
    assert message["cmd"] == 6
    dest = message.get("IPVS_CMD_ATTR_DEST")
    assert ipvs.real_server_from_nla(dest) == rs(2, 0, "nat")
    assert (dest.get("IPVS_DEST_ATTR_U_THRESH"), dest.get("IPVS_DEST_ATTR_L_THRESH"),
            dest.get("IPVS_DEST_ATTR_ADDR_FAMILY")) == (0, 0, 2)
    key = message.get("IPVS_CMD_ATTR_SERVICE")
    assert (key.get("IPVS_SVC_ATTR_ADDR"), key.get("IPVS_SVC_ATTR_PORT")) == ("10.0.0.100", 5432)
    assert key.get("IPVS_SVC_ATTR_SCHED_NAME") is None       # a key only


def test_delete_and_ipv6_messages() -> None:
    v6 = VirtualService("2001:db8::100", 5432, "udp", "rr")
    deleted, added = decode(ipvs.encode_write(1, 1, Change(DEL_REAL_SERVER, VS, rs(3)), "del")
                            + ipvs.encode_write(1, 2, Change(ADD_SERVICE, v6), "add"))
    assert deleted["cmd"] == 7 and deleted.get("IPVS_CMD_ATTR_DEST").get("IPVS_DEST_ATTR_WEIGHT") is None
    svc = added.get("IPVS_CMD_ATTR_SERVICE")
    assert added["cmd"] == 1
    assert (svc.get("IPVS_SVC_ATTR_AF"), svc.get("IPVS_SVC_ATTR_ADDR")) == (10, "2001:db8::100")


def ack(seq: int, code: int) -> bytes:
    return ipvs.NLMSG_HEADER.pack(36, ipvs.NLMSG_ERROR, 0, seq, 1) + (-code).to_bytes(4, "little", signed=True) \
        + ipvs.NLMSG_HEADER.pack(16, 33, 5, seq, 0)


def test_parse_acks() -> None:
    assert list(ipvs.parse_acks(ack(1, 0) + ack(2, errno.EEXIST) + ack(3, errno.ESRCH))) == \
        [(1, 0), (2, errno.EEXIST), (3, errno.ESRCH)]
    assert list(ipvs.parse_acks(b"")) == [] and list(ipvs.parse_acks(b"\0" * 20)) == []


# ---- apply: retries and errors, against a fake kernel that answers like IPVS


class FakeKernel:
    """Stands in for the netlink socket: decodes each request, answers with the kernel's codes."""

    def __init__(self) -> None:
        self.services: set = set()
        self.dests: set = set()
        self.calls: list[tuple[str, str]] = []
        self.answers = b""
        self.sends = 0

    def send(self, data: bytes) -> None:
        self.sends += 1
        for message in decode(data):
            self.answers += ack(message["header"]["sequence_number"], self.handle(message))

    def recv(self, size: int) -> bytes:
        data, self.answers = self.answers, b""
        return data

    def handle(self, message) -> int:
        kind, command = {1: ("service", "add"), 2: ("service", "set"), 3: ("service", "del"),
                         5: ("dest", "add"), 6: ("dest", "set"), 7: ("dest", "del")}[message["cmd"]]
        self.calls.append((kind, command))
        svc = message.get("IPVS_CMD_ATTR_SERVICE")
        service = (svc.get("IPVS_SVC_ATTR_ADDR"), svc.get("IPVS_SVC_ATTR_PORT"))
        if kind == "service":
            if command != "del" and svc.get("IPVS_SVC_ATTR_SCHED_NAME") not in ("rr", "wrr", "wlc"):
                return errno.ENOENT
            if command == "add":
                if service in self.services:
                    return errno.EEXIST
                self.services.add(service)
            elif service not in self.services:
                return errno.ESRCH
            elif command == "del":
                self.services.discard(service)
            return 0
        if service not in self.services:
            return errno.ESRCH
        dest = message.get("IPVS_CMD_ATTR_DEST")
        key = (dest.get("IPVS_DEST_ATTR_ADDR"), dest.get("IPVS_DEST_ATTR_PORT"))
        if command == "add":
            if key in self.dests:
                return errno.EEXIST
            self.dests.add(key)
        elif key not in self.dests:
            return errno.ENOENT
        elif command == "del":
            self.dests.discard(key)
        return 0


def client_with(fake: FakeKernel) -> ipvs.IPVSClient:
    client = ipvs.IPVSClient.__new__(ipvs.IPVSClient)
    client.writes, client._seq, client._family, client._raw = 0, 0, 33, fake
    return client


def test_apply_counts_one_write_per_change_in_one_socket_write() -> None:
    fake = FakeKernel()
    client = client_with(fake)
    assert client.apply(plan(state(rs(2), rs(3)), None)) == 3
    assert fake.services == {("10.0.0.100", 5432)} and len(fake.dests) == 2 and fake.sends == 1
    assert client.apply([]) == 0 and client.writes == 3 and fake.sends == 1


def test_large_plans_go_out_in_batches() -> None:
    fake = FakeKernel()
    client = client_with(fake)
    many = state(*(RealServer(f"10.1.{i // 250}.{i % 250 + 1}", 5432) for i in range(600)))
    assert client.apply(plan(many, None)) == 601
    assert len(fake.dests) == 600 and fake.sends == 3


def test_apply_is_idempotent_when_replayed() -> None:
    fake = FakeKernel()
    client = client_with(fake)
    changes = plan(state(rs(2), rs(3)), None) + [Change(DEL_REAL_SERVER, VS, rs(3))]
    client.apply(changes)
    writes = client.apply(changes)        # add -> EEXIST -> set; 10.0.0.3 is added and deleted again
    assert writes == 4 + 2
    assert fake.dests == {("10.0.0.2", 5432)}
    assert fake.calls[-2:] == [("service", "set"), ("dest", "set")]


def test_set_of_a_missing_server_or_service_becomes_add() -> None:
    fake = FakeKernel()
    client = client_with(fake)
    client.apply([Change(SET_SERVICE, VS), Change(SET_REAL_SERVER, VS, rs(2))])
    # batch: both fail (no service); then the service is added, the dest's set retried, then added
    assert fake.calls == [("service", "set"), ("dest", "set"),
                          ("service", "add"), ("dest", "set"), ("dest", "add")]
    assert fake.dests == {("10.0.0.2", 5432)}


def test_delete_of_missing_service_is_done() -> None:
    client = client_with(FakeKernel())
    assert client.apply([Change(DEL_SERVICE, VS)]) == 1


def test_unknown_scheduler_error_names_the_change() -> None:
    client = client_with(FakeKernel())
    bad = VirtualService("10.0.0.100", 5432, scheduler="nosuch")
    with pytest.raises(ipvs.IPVSError, match="add-service TCP 10.0.0.100:5432 failed: ENOENT.*'nosuch'"):
        client.apply([Change(ADD_SERVICE, bad)])


def test_real_server_for_missing_service_raises() -> None:
    client = client_with(FakeKernel())
    with pytest.raises(ipvs.IPVSError, match="add-real-server .* failed: ESRCH"):
        client.apply([Change(ADD_REAL_SERVER, VS, rs(2))])


def test_missing_acks_time_out_with_a_clear_error() -> None:
    class Silent(FakeKernel):
        def recv(self, size: int) -> bytes:
            import socket
            raise socket.timeout()
    client = client_with(Silent())
    with pytest.raises(ipvs.IPVSError, match="no answer from IPVS"):
        client.apply([Change(ADD_SERVICE, VS)])


def test_unavailable_message() -> None:
    assert str(ipvs.IPVSUnavailable()) == "this kernel has no IPVS: load ip_vs"


@pytest.mark.skipif(os.path.exists("/proc/net/ip_vs"), reason="this kernel has IPVS")
def test_kernel_without_ipvs_raises_unavailable() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for generic netlink")
    with pytest.raises(ipvs.IPVSUnavailable, match="^this kernel has no IPVS: load ip_vs"):
        ipvs.IPVSClient()
