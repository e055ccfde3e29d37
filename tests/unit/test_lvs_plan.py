"""pha.lvs.plan and pha.lvs.hosts: the LVS director's pure decisions, without a kernel or a network.

Which names become real servers (and at which address), the parameters' grammars, lag
hysteresis, the real servers to program; the cluster's node list from corosync.conf.
"""
from __future__ import annotations

import ipaddress

import pytest

from pha.ipvs import RealServer
from pha.lvs import hosts, plan
from pha.lvs.plan import Candidate
from pha.values import parse_networks

pytestmark = pytest.mark.unit

HOSTS = {"node2": ["10.78.0.12"], "node3": ["10.78.0.13"], "alias2": ["10.78.0.12"],
         "zero": ["0.0.0.0"], "loop": ["127.0.0.1"], "outside": ["192.0.2.7"],
         "multi": ["10.78.0.21", "10.78.0.22"]}
LAB = parse_networks("10.78.0.0/24")


def fake_resolver(name: str) -> list[str]:
    """/etc/hosts in a dict: unit tests never ask a real resolver (no packet leaves)."""
    if name not in HOSTS:
        raise OSError(-2, "Name or service not known")
    return HOSTS[name]


def must_not_resolve(name: str) -> list[str]:
    raise AssertionError(f"resolver called for {name!r}")


# ---- weights and the deprecated ipvsadm options


def test_weights_with_and_without_explicit_weight() -> None:
    assert plan.parse_weights("node1,2 node2,1 10.78.0.14 node3,0", 5) == \
        {"node1": 2, "node2": 1, "10.78.0.14": 5, "node3": 0}
    assert plan.parse_weights("", 1) == {}
    assert plan.parse_weights("  node1,3\tnode2  ", 1) == {"node1": 3, "node2": 1}


@pytest.mark.parametrize("text, message", [
    ("node1,x", "not an integer"),
    ("node1,-1", "not an integer"),
    ("node1,+1", "not an integer"),
    ("node1,65536", "not an integer"),
    ("node1,²", "not an integer"),
    ("node1,١", "not an integer"),
    ("node1,", "comma but no weight"),
    ("node1,1 node1,2", "listed twice"),
    (";rm,1", "neither an IPv4 address nor a valid hostname"),
    ("0.0.0.0,1", "not a unicast host address"),
])
def test_bad_weights(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan.parse_weights(text, 1)


@pytest.mark.parametrize("text, parsed", [
    ("-s rr", {"scheduler": "rr"}),
    ("-s wrr -p 600", {"scheduler": "wrr", "persistent_timeout": 600}),
    ("-s wlc -p", {"scheduler": "wlc", "persistent_timeout": 300}),
    ("-p -s sh", {"persistent_timeout": 300, "scheduler": "sh"}),
    ("--scheduler=lc --persistent=60", {"scheduler": "lc", "persistent_timeout": 60}),
    ("-swrr -p30", {"scheduler": "wrr", "persistent_timeout": 30}),
    ("", {}),
])
def test_legacy_virtual_service_options(text: str, parsed: dict) -> None:
    assert plan.parse_service_options(text) == parsed


@pytest.mark.parametrize("text, message", [
    ("-s", "needs a scheduler"),
    ("-s fastest", "not one of"),
    ("-p 0", "not 1-"),
    ("-p 31536001", "not 1-"),
    ("-p soon", "persistence timeout 'soon'"),
    ("-p ³", "persistence timeout"),
    ("-M 255.255.255.0", "'-M' is not supported"),
    ("-s rr; reboot", "not one of"),
    ("-s 'rr", "cannot be split"),
])
def test_bad_legacy_options(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan.parse_service_options(text)


def test_networks_are_parsed_by_pha_values() -> None:
    assert parse_networks("10.78.0.0/24, 192.168.1.7/24") == \
        [ipaddress.ip_network("10.78.0.0/24"), ipaddress.ip_network("192.168.1.0/24")]
    for bad in ("10.78.0.0/33", "lab", "2001:db8::/32"):
        with pytest.raises(ValueError):
            parse_networks(bad)


# ---- names that do not come from the primary


@pytest.mark.parametrize("name", [
    ";rm -rf /", "node2;reboot", "$(reboot)", "`id`", "node 2", "-h", "--help", "../etc/passwd",
    "node2\n10.0.0.1", "10.0.0.5 10.0.0.6", "", "a" * 64, "x" * 254, "10.78.0.300", "999", "node_2",
    "nöde2", "node2\x00", "node2.\n",
])
def test_hostile_or_malformed_names_are_refused_before_resolving(name: str) -> None:
    address, problem = plan.resolve_real_server(name, [], must_not_resolve)
    assert address is None and problem
    assert "\n" not in problem


@pytest.mark.parametrize("name, reason", [
    ("0.0.0.0", "not a unicast host address"),
    ("127.0.0.1", "not a unicast host address"),
    ("224.0.0.1", "not a unicast host address"),
    ("255.255.255.255", "not a unicast host address"),
    ("169.254.1.1", "not a unicast host address"),
    ("240.0.0.1", "not a unicast host address"),
    ("2001:db8::1", "not an IPv4 address"),
    ("nosuchhost", "does not resolve"),
    ("zero", "resolves to 0.0.0.0"),
    ("loop", "resolves to 127.0.0.1"),
])
def test_unusable_names(name: str, reason: str) -> None:
    address, problem = plan.resolve_real_server(name, [], fake_resolver)
    assert address is None and reason in problem


def test_good_names_resolve() -> None:
    assert plan.resolve_real_server("node2", [], fake_resolver) == ("10.78.0.12", "")
    assert plan.resolve_real_server("10.78.0.14", [], must_not_resolve) == ("10.78.0.14", "")
    assert plan.resolve_real_server("node2.lab.example.", [], lambda n: ["10.78.0.22"]) == ("10.78.0.22", "")
    assert plan.resolve_real_server("multi", [], fake_resolver) == ("10.78.0.21", "")


def test_allowed_networks_limit_real_servers() -> None:
    assert plan.resolve_real_server("node3", LAB, fake_resolver) == ("10.78.0.13", "")
    address, problem = plan.resolve_real_server("outside", LAB, fake_resolver)
    assert address is None and "outside allowed_networks" in problem
    address, problem = plan.resolve_real_server("10.79.0.5", LAB, fake_resolver)
    assert address is None and "outside allowed_networks" in problem
    assert plan.resolve_real_server("outside", parse_networks("0.0.0.0/0"), fake_resolver) == ("192.0.2.7", "")


# ---- standbys the primary reports: the name must be the address they connect from


@pytest.mark.parametrize("name, client_addr, address", [
    ("node2", "10.78.0.12", "10.78.0.12"),
    ("10.78.0.12", "10.78.0.12", "10.78.0.12"),
    ("alias2", "10.78.0.12", "10.78.0.12"),
    ("multi", "10.78.0.22", "10.78.0.22"),               # any of the name's addresses, the real one used
    ("node2", "::ffff:10.78.0.12", "10.78.0.12"),         # IPv4 on a dual-stack socket
])
def test_standby_becomes_a_real_server_at_the_address_it_connects_from(
        name: str, client_addr: str, address: str) -> None:
    assert plan.standby_address(name, client_addr, LAB, fake_resolver) == (address, "")


@pytest.mark.parametrize("name, client_addr, reason", [
    ("198.51.100.7", "127.0.0.1", "loopback"),            # any local process may call itself anything
    ("node2", "127.0.0.1", "loopback"),
    ("node2", "::1", "loopback"),
    ("node2", None, "unix socket"),
    ("198.51.100.7", "10.78.0.13", "but 198.51.100.7 is 198.51.100.7"),
    ("node2", "10.78.0.13", "but node2 is 10.78.0.12"),   # a standby claiming another node's name
    ("nosuchhost", "10.78.0.13", "does not resolve"),
    ("10.0.0.5 10.0.0.6", "10.0.0.5", "neither an IPv4 address nor a valid hostname"),
    ("node2\nnode3", "10.78.0.12", "neither an IPv4 address nor a valid hostname"),
    ("$(reboot)", "10.78.0.12", "neither an IPv4 address nor a valid hostname"),
    ("", "10.78.0.12", "is empty"),
    ("node2", "fe80::1", "not an IPv4 address"),
    ("node2", "garbage", "not an address"),
    ("outside", "192.0.2.7", "outside allowed_networks"),
])
def test_standby_names_that_do_not_match_are_refused(name: str, client_addr: str, reason: str) -> None:
    address, problem = plan.standby_address(name, client_addr, LAB, fake_resolver)
    assert address is None and reason in problem, problem
    assert "\n" not in problem


def test_malformed_standby_names_are_never_resolved() -> None:
    for name in ("10.0.0.5 10.0.0.6", "a;b", "x" * 300):
        assert plan.standby_address(name, "10.78.0.12", [], must_not_resolve)[0] is None


def test_admitted_sorts_candidates_by_their_kind() -> None:
    candidates = [Candidate("node2"), Candidate("node3", 5, from_primary=True, client_addr="10.78.0.13"),
                  Candidate("198.51.100.7", from_primary=True, client_addr="127.0.0.1"),
                  Candidate("10.0.0.5 10.0.0.6"), Candidate("outside")]
    usable, skipped = plan.admitted(candidates, LAB, fake_resolver)
    assert usable == [(candidates[0], "10.78.0.12"), (candidates[1], "10.78.0.13")]
    assert len(skipped) == 3 and "loopback" in skipped[0] and "outside allowed_networks" in skipped[2]


@pytest.mark.parametrize("text, lag", [
    ("0", 0), ("1024", 1024), (" 7 ", 7), (None, None), ("", None), ("²", None), ("١٢", None),
    ("-5", None), ("1e3", None), ("12.5", None), ("9" * 30, None), ("16MB", None),
])
def test_lag_attribute_values(text: str, lag: int) -> None:
    assert plan.parse_lag(text) == lag


# ---- lag hysteresis


def test_lag_drains_above_max_and_returns_after_resume_checks() -> None:
    max_lag = 1000
    drained: dict[str, int] = {}
    timeline = [(100, False), (1001, True), (900, True), (400, True), (500, False), (1200, True),
                (10, True), (2000, True), (10, True), (10, False)]
    for lag, expect_drained in timeline:
        drained = plan.lag_step(drained, {"node2": lag}, max_lag, resume_checks=2)
        assert ("node2" in drained) == expect_drained, (lag, drained)


def test_lag_equal_to_max_is_not_drained_and_unknown_lag_keeps_state() -> None:
    assert plan.lag_step({}, {"node2": 1000, "node3": None}, 1000, 2) == {}
    assert plan.lag_step({"node2": 1}, {"node2": None}, 1000, 3) == {"node2": 1}


def test_lag_state_forgets_vanished_standbys() -> None:
    assert plan.lag_step({"node2": 0, "node3": 0}, {"node3": 5000}, 1000, 2) == {"node3": 0}


def test_single_resume_check_restores_at_once() -> None:
    assert plan.lag_step({"node2": 0}, {"node2": 0}, 1000, 1) == {}


# ---- desired real servers


def healthy(*pairs: tuple[str, str]) -> list[tuple[Candidate, str]]:
    return [(Candidate(name), address) for name, address in pairs]


def test_weights_by_name_then_address_then_default() -> None:
    servers = plan.desired_real_servers(
        healthy(("node2", "10.78.0.12"), ("10.78.0.13", "10.78.0.13"), ("node4", "10.78.0.14")),
        weights={"node2": 3}, weights_by_address={"10.78.0.13": 2}, default_weight=1, port=5432,
        drained=[], current=[], inhibit_on_failure=False)
    assert servers == [RealServer("10.78.0.12", 5432, 3), RealServer("10.78.0.13", 5432, 2),
                       RealServer("10.78.0.14", 5432, 1)]


def test_weights_by_address_resolve_the_weight_names() -> None:
    assert plan.weights_by_address({"node2": 3, "alias2": 5, "nosuchhost": 2, "10.78.0.9": 4}, fake_resolver) == \
        {"10.78.0.12": 3, "10.78.0.9": 4}


def test_one_real_server_per_address() -> None:
    servers = plan.desired_real_servers(healthy(("node2", "10.78.0.12"), ("alias2", "10.78.0.12")),
                                        {}, {}, 1, 5432, [], [], False)
    assert servers == [RealServer("10.78.0.12", 5432, 1)]


def test_drained_standby_gets_weight_zero() -> None:
    servers = plan.desired_real_servers(healthy(("node2", "10.78.0.12"), ("node3", "10.78.0.13")),
                                        {"node3": 4}, {}, 1, 5432, ["node3"], [], False)
    assert servers == [RealServer("10.78.0.12", 5432, 1), RealServer("10.78.0.13", 5432, 0)]


def test_failed_server_is_deleted_or_inhibited() -> None:
    current = [RealServer("10.78.0.12", 5432, 1), RealServer("10.78.0.13", 5432, 1)]
    still = healthy(("node2", "10.78.0.12"))
    assert plan.desired_real_servers(still, {}, {}, 1, 5432, [], current, False) == [current[0]]
    assert plan.desired_real_servers(still, {}, {}, 1, 5432, [], current, True) == \
        [current[0], RealServer("10.78.0.13", 5432, 0)]


# ---- the cluster's node list (pha.lvs.hosts)

COROSYNC_CONF = """
totem {
    version: 2
    cluster_name: pha   # not a node
    interface {
        linknumber: 0
    }
}
nodelist {
    node {
        ring0_addr: 10.78.0.11
        name: node1
        nodeid: 1
    }
    node {
        ring0_addr: 10.78.0.12   # comment
        ring1_addr: 192.168.9.12
        name: node2
    }
    node {
        ring0_addr: node3-ring
        name: node3
    }
    node {
        ring0_addr: 10.78.0.14
    }
}
"""


def test_corosync_nodelist() -> None:
    assert hosts.parse_corosync_nodes(COROSYNC_CONF) == \
        {"node1": ["10.78.0.11"], "node2": ["10.78.0.12", "192.168.9.12"], "node3": []}
    assert hosts.parse_corosync_nodes("") == {}
    assert hosts.parse_corosync_nodes("nodelist {\n node {\n name: x\n") == {}


def test_cluster_nodes_first_then_the_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts, "system_resolver", fake_resolver)
    resolve = hosts.resolver({"node2": ["10.78.0.52"], "node9": ["10.78.0.19"]})
    assert resolve("node2") == ["10.78.0.52", "10.78.0.12"]
    assert resolve("node9") == ["10.78.0.19"]          # a cluster node the resolver does not know
    assert resolve("node3") == ["10.78.0.13"]
    with pytest.raises(OSError):
        resolve("nosuchhost")
    assert plan.standby_address("node9", "10.78.0.19", LAB, resolve) == ("10.78.0.19", "")


def test_cluster_nodes_without_corosync_conf(tmp_path) -> None:
    assert hosts.cluster_nodes(str(tmp_path / "missing.conf")) == {}
    conf = tmp_path / "corosync.conf"
    conf.write_text(COROSYNC_CONF)
    assert hosts.cluster_nodes(str(conf))["node1"] == ["10.78.0.11"]
    (tmp_path / "link.conf").symlink_to(conf)
    assert hosts.cluster_nodes(str(tmp_path / "link.conf")) == {}
