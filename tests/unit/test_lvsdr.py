"""ocf:pha:lvsdr and lvsdr-realsvr without a kernel: parsing, name validation, lag hysteresis,
desired real servers, and bad input through AGENT.run (OCF_ERR_CONFIGURED with a reason)."""
from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from pha import ocf
from pha.agents import lvsdr, lvsdr_realsvr
from pha.agents.lvsdr import Candidate
from pha.ipvs import RealServer

pytestmark = pytest.mark.unit

HOSTS = {"node2": ["10.78.0.12"], "node3": ["10.78.0.13"], "alias2": ["10.78.0.12"],
         "zero": ["0.0.0.0"], "loop": ["127.0.0.1"], "outside": ["192.0.2.7"]}


def fake_resolver(name: str) -> list[str]:
    """/etc/hosts in a dict: unit tests never ask a real resolver (no packet leaves)."""
    if name not in HOSTS:
        raise OSError(-2, "Name or service not known")
    return HOSTS[name]


def run(agent: ocf.Agent, action: str, capsys: pytest.CaptureFixture, **params: str) -> tuple[int, str]:
    env = {f"OCF_RESKEY_{k}": v for k, v in params.items()}
    rc = agent.run([action], env=env)
    return rc, capsys.readouterr().err


# ---- weights, sizes, options


def test_weights_with_and_without_explicit_weight() -> None:
    assert lvsdr.parse_weights("node1,2 node2,1 10.78.0.14 node3,0", 5) == \
        {"node1": 2, "node2": 1, "10.78.0.14": 5, "node3": 0}
    assert lvsdr.parse_weights("", 1) == {}
    assert lvsdr.parse_weights("  node1,3\tnode2  ", 1) == {"node1": 3, "node2": 1}


@pytest.mark.parametrize("text, message", [
    ("node1,x", "not an integer"),
    ("node1,-1", "not an integer"),
    ("node1,65536", "not an integer"),
    ("node1,", "comma but no weight"),
    ("node1,1 node1,2", "listed twice"),
    (";rm,1", "neither an IPv4 address nor a valid hostname"),
    ("0.0.0.0,1", "not a unicast host address"),
])
def test_bad_weights(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lvsdr.parse_weights(text, 1)


@pytest.mark.parametrize("text, size", [("0", 0), ("1048576", 1 << 20), ("16MB", 16 << 20), ("512kB", 512 << 10),
                                        ("1 GB", 1 << 30), ("10mb", 10 << 20), ("100B", 100)])
def test_sizes(text: str, size: int) -> None:
    assert lvsdr.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "1.5MB", "MB", "16 MiB", "1e6"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        lvsdr.parse_size(text)


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
    assert lvsdr.parse_service_options(text) == parsed


@pytest.mark.parametrize("text, message", [
    ("-s", "needs a scheduler"),
    ("-s fastest", "not one of"),
    ("-p 0", "not 1-"),
    ("-p soon", "persistence timeout 'soon'"),
    ("-M 255.255.255.0", "'-M' is not supported"),
    ("-s rr; reboot", "not one of"),
    ("-s 'rr", "cannot be split"),
])
def test_bad_legacy_options(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lvsdr.parse_service_options(text)


def test_networks() -> None:
    assert lvsdr.parse_networks("10.78.0.0/24, 192.168.1.0/24") == \
        [ipaddress.ip_network("10.78.0.0/24"), ipaddress.ip_network("192.168.1.0/24")]
    for bad in ("10.78.0.0/33", "lab", "2001:db8::/32"):
        with pytest.raises(ValueError):
            lvsdr.parse_networks(bad)


# ---- real-server names


@pytest.mark.parametrize("name", [
    ";rm -rf /", "node2;reboot", "$(reboot)", "`id`", "node 2", "-h", "--help", "../etc/passwd",
    "node2\n10.0.0.1", "", "a" * 64, "x" * 254, "10.78.0.300", "999", "node_2",
])
def test_hostile_or_malformed_names_are_refused_before_resolving(name: str) -> None:
    def must_not_resolve(_: str) -> list[str]:
        raise AssertionError("resolver called for a malformed name")
    address, problem = lvsdr.resolve_real_server(name, [], must_not_resolve)
    assert address is None and problem


@pytest.mark.parametrize("name, reason", [
    ("0.0.0.0", "not a unicast host address"),
    ("127.0.0.1", "not a unicast host address"),
    ("224.0.0.1", "not a unicast host address"),
    ("255.255.255.255", "not a unicast host address"),
    ("169.254.1.1", "not a unicast host address"),
    ("2001:db8::1", "not an IPv4 address"),
    ("nosuchhost", "does not resolve"),
    ("zero", "resolves to 0.0.0.0"),
    ("loop", "resolves to 127.0.0.1"),
])
def test_unusable_names(name: str, reason: str) -> None:
    address, problem = lvsdr.resolve_real_server(name, [], fake_resolver)
    assert address is None and reason in problem


def test_good_names_resolve() -> None:
    assert lvsdr.resolve_real_server("node2", [], fake_resolver) == ("10.78.0.12", "")
    assert lvsdr.resolve_real_server("10.78.0.14", [], fake_resolver) == ("10.78.0.14", "")
    assert lvsdr.resolve_real_server("node2.lab.example.", [], lambda n: ["10.78.0.22"]) == ("10.78.0.22", "")


def test_allowed_networks_limit_real_servers() -> None:
    lab = lvsdr.parse_networks("10.78.0.0/24")
    assert lvsdr.resolve_real_server("node3", lab, fake_resolver) == ("10.78.0.13", "")
    address, problem = lvsdr.resolve_real_server("outside", lab, fake_resolver)
    assert address is None and "outside allowed_networks" in problem
    address, problem = lvsdr.resolve_real_server("10.79.0.5", lab, fake_resolver)
    assert address is None and "outside allowed_networks" in problem


# ---- lag hysteresis


def test_lag_drains_above_max_and_returns_after_resume_checks() -> None:
    max_lag = 1000
    drained: dict[str, int] = {}
    timeline = [(100, False), (1001, True), (900, True), (400, True), (500, False), (1200, True),
                (10, True), (2000, True), (10, True), (10, False)]
    for lag, expect_drained in timeline:
        drained = lvsdr.lag_step(drained, {"node2": lag}, max_lag, resume_checks=2)
        assert ("node2" in drained) == expect_drained, (lag, drained)


def test_lag_equal_to_max_is_not_drained_and_unknown_lag_keeps_state() -> None:
    assert lvsdr.lag_step({}, {"node2": 1000, "node3": None}, 1000, 2) == {}
    assert lvsdr.lag_step({"node2": 1}, {"node2": None}, 1000, 3) == {"node2": 1}


def test_lag_state_forgets_vanished_standbys() -> None:
    assert lvsdr.lag_step({"node2": 0, "node3": 0}, {"node3": 5000}, 1000, 2) == {"node3": 0}


def test_single_resume_check_restores_at_once() -> None:
    assert lvsdr.lag_step({"node2": 0}, {"node2": 0}, 1000, 1) == {}


# ---- desired real servers


def healthy(*pairs: tuple[str, str]) -> list[tuple[Candidate, str]]:
    return [(Candidate(name), address) for name, address in pairs]


def test_weights_by_name_then_address_then_default() -> None:
    servers = lvsdr.desired_real_servers(
        healthy(("node2", "10.78.0.12"), ("10.78.0.13", "10.78.0.13"), ("node4", "10.78.0.14")),
        weights={"node2": 3}, weights_by_address={"10.78.0.13": 2}, default_weight=1, port=5432,
        drained=[], current=[], inhibit_on_failure=False)
    assert servers == [RealServer("10.78.0.12", 5432, 3), RealServer("10.78.0.13", 5432, 2),
                       RealServer("10.78.0.14", 5432, 1)]


def test_one_real_server_per_address() -> None:
    servers = lvsdr.desired_real_servers(healthy(("node2", "10.78.0.12"), ("alias2", "10.78.0.12")),
                                         {}, {}, 1, 5432, [], [], False)
    assert servers == [RealServer("10.78.0.12", 5432, 1)]


def test_drained_standby_gets_weight_zero() -> None:
    servers = lvsdr.desired_real_servers(healthy(("node2", "10.78.0.12"), ("node3", "10.78.0.13")),
                                         {"node3": 4}, {}, 1, 5432, ["node3"], [], False)
    assert servers == [RealServer("10.78.0.12", 5432, 1), RealServer("10.78.0.13", 5432, 0)]


def test_failed_server_is_deleted_or_inhibited() -> None:
    current = [RealServer("10.78.0.12", 5432, 1), RealServer("10.78.0.13", 5432, 1)]
    still = healthy(("node2", "10.78.0.12"))
    assert lvsdr.desired_real_servers(still, {}, {}, 1, 5432, [], current, False) == [current[0]]
    assert lvsdr.desired_real_servers(still, {}, {}, 1, 5432, [], current, True) == \
        [current[0], RealServer("10.78.0.13", 5432, 0)]


# ---- bad input through the OCF runtime


@pytest.mark.parametrize("params, reason", [
    ({"vip": "10.78.0.200", "scheduler": "fastest"}, "parameter scheduler=fastest must be one of rr, wrr"),
    ({"vip": "10.78.0.200", "port": "0"}, "parameter port=0 must be 1-65535"),
    ({"vip": "10.78.0.200", "port": "65536"}, "parameter port=65536 must be 1-65535"),
    ({"vip": "10.78.0.200", "port": "pg"}, "parameter port=pg is not an integer"),
    ({"vip": "10.78.0"}, "parameter vip=10.78.0 is not an IPv4 address"),
    ({"vip": "reader.example"}, "parameter vip=reader.example is not an IPv4 address"),
    ({"vip": "0.0.0.0"}, "parameter vip=0.0.0.0 is not a unicast host address"),
    ({}, "required parameter(s) not set: vip"),
    ({"vip": "10.78.0.200", "virtual_service_options": "-s fastest"}, "virtual_service_options="),
    ({"vip": "10.78.0.200", "weight_of_realservers": "node1,abc"}, "parameter weight_of_realservers="),
    ({"vip": "10.78.0.200", "default_weight": "70000"}, "parameter default_weight=70000 must be 0-65535"),
    ({"vip": "10.78.0.200", "max_lag": "lots"}, "parameter max_lag=lots"),
    ({"vip": "10.78.0.200", "allowed_networks": "10.78.0.0/40"}, "parameter allowed_networks="),
    ({"vip": "10.78.0.200", "realserver_dependent_attribute_value": "HS:(sync"},
     "parameter realserver_dependent_attribute_value=HS:(sync is not a regular expression"),
    ({"vip": "10.78.0.200", "realserver_discovery_conninfo": "host=10.78.0.11 password=secret"},
     "holds a password"),
    ({"vip": "10.78.0.200", "realserver_get_real_servers_script": "get_active_slaves 'host=x password=s'"},
     "puts a password on a command line"),
    ({"vip": "10.78.0.200", "realserver_get_real_servers_script": "get_active_slaves 'host=x'",
      "realserver_discovery_conninfo": "host=10.78.0.11"}, "not both"),
    ({"vip": "10.78.0.200", "inhibit_on_failure": "maybe"}, "is not a boolean"),
])
@pytest.mark.parametrize("action", ["validate-all", "start", "monitor"])
def test_lvsdr_bad_input_is_err_configured(params: dict, reason: str, action: str,
                                           capsys: pytest.CaptureFixture) -> None:
    rc, err = run(lvsdr.AGENT, action, capsys, **params)
    assert rc == ocf.ERR_CONFIGURED
    exit_reason = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(exit_reason) == 1 and reason in exit_reason[0], err
    assert "secret" not in err


def test_lvsdr_valid_configuration(capsys: pytest.CaptureFixture) -> None:
    rc, err = run(lvsdr.AGENT, "validate-all", capsys, vip="10.78.0.200", port="5432",
                  virtual_service_options="-s wrr -p 120", weight_of_realservers="node2,2 node3",
                  max_lag="16MB", allowed_networks="10.78.0.0/24",
                  realserver_discovery_conninfo="host=10.78.0.11 user=postgres")
    assert rc == ocf.SUCCESS, err
    assert "virtual_service_options is deprecated" in err


def test_typed_parameters_win_over_legacy_options(capsys: pytest.CaptureFixture) -> None:
    env = {"OCF_RESKEY_vip": "10.78.0.200", "OCF_RESKEY_virtual_service_options": "-s wrr -p 120",
           "OCF_RESKEY_scheduler": "lc"}
    res = ocf.Resource(lvsdr.AGENT, "validate-all", env, ocf.Log("lvsdr", env))
    config = lvsdr.build_config(res)
    assert (config.scheduler, config.persistent_timeout) == ("lc", 120)


def test_stop_with_bad_parameters_succeeds(capsys: pytest.CaptureFixture) -> None:
    rc, _ = run(lvsdr.AGENT, "stop", capsys, vip="10.78.0")
    assert rc == ocf.SUCCESS


def test_meta_data_is_valid_and_marks_deprecations(capsys: pytest.CaptureFixture) -> None:
    import xml.etree.ElementTree as ET
    assert lvsdr.AGENT.run(["meta-data"], env={}) == ocf.SUCCESS
    root = ET.fromstring(capsys.readouterr().out)
    params = {p.get("name"): p for p in root.iter("parameter")}
    for name in ("vip", "port", "virtual_service_options", "default_weight", "weight_of_realservers",
                 "realserver_dependent_resource", "realserver_dependent_attribute_name",
                 "realserver_dependent_attribute_value", "realserver_get_real_servers_script",
                 "realserver_check_active_real_server_script", "heartbeat_file", "max_lag",
                 "inhibit_on_failure", "allowed_networks", "scheduler", "persistent_timeout"):
        assert name in params, name
    legacy = params["virtual_service_options"].find("deprecated")
    assert {r.get("name") for r in legacy.iter("replaced-with")} == {"scheduler", "persistent_timeout"}
    monitor = [a for a in root.iter("action") if a.get("name") == "monitor"][0]
    assert monitor.get("interval") == "3s"


@pytest.mark.parametrize("params, reason", [
    ({"vip": "10.78.0.300"}, "parameter vip=10.78.0.300 is not an IPv4 address"),
    ({"vip": "127.0.0.1"}, "is not a unicast IPv4 address"),
    ({"vip": "10.78.0.200", "nic_lo": "eth0:0"}, "parameter nic_lo=eth0:0 must be lo or lo:SUFFIX"),
    ({"vip": "10.78.0.200", "nic_lo": "lo:0;reboot"}, "must be lo or lo:SUFFIX"),
])
def test_realsvr_bad_input_is_err_configured(params: dict, reason: str, capsys: pytest.CaptureFixture) -> None:
    rc, err = run(lvsdr_realsvr.AGENT, "start", capsys, **params)
    assert rc == ocf.ERR_CONFIGURED, err
    exit_reason = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(exit_reason) == 1 and reason in exit_reason[0], err


# ---- state and heartbeat files


def resource(agent: ocf.Agent, tmp_path: Path, **params: str) -> ocf.Resource:
    env = {"OCF_RESOURCE_INSTANCE": "reader:0", "PHA_STATE_DIR": str(tmp_path / "state"),
           **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    return ocf.Resource(agent, "monitor", env, ocf.Log(agent.name, env))


def test_lvsdr_state_file_is_private(tmp_path: Path) -> None:
    res = resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200")
    lvsdr.save_state(res, {"drained": {"node3": 1}})
    path = Path(lvsdr.state_path(res))
    assert path.name == "lvsdr.reader_0.json"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert lvsdr.load_state(res) == {"drained": {"node3": 1}}
    path.write_text("not json")
    assert lvsdr.load_state(res) == {}
    lvsdr.drop_state(res)
    lvsdr.drop_state(res)
    assert not path.exists()


def test_heartbeat_file(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    res = resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", heatbeat_file=str(beat))
    lvsdr.stamp_heartbeat(res)
    assert beat.read_text().strip().isdigit() and beat.stat().st_mode & 0o777 == 0o600


# ---- lvsdr-realsvr pure parts


def test_arp_problem() -> None:
    good = {name: value for name, value in lvsdr_realsvr.sysctl_names().items()}
    assert lvsdr_realsvr.arp_problem(good) is None
    assert lvsdr_realsvr.arp_problem({**good, "net.ipv4.conf.all.arp_ignore": "2"}) is None
    assert "arp_ignore is 0" in lvsdr_realsvr.arp_problem({**good, "net.ipv4.conf.lo.arp_ignore": "0"})
    assert "arp_announce is 1" in lvsdr_realsvr.arp_problem({**good, "net.ipv4.conf.all.arp_announce": "1"})
    assert "unreadable" in lvsdr_realsvr.arp_problem({})


def test_restore_only_what_is_still_ours() -> None:
    ours = lvsdr_realsvr.sysctl_names()
    saved = {name: "0" for name in ours}
    current = dict(ours)
    current["net.ipv4.conf.lo.arp_ignore"] = "2"          # changed by someone since start
    restore = lvsdr_realsvr.to_restore(saved, current)
    assert "net.ipv4.conf.lo.arp_ignore" not in restore
    assert restore == {name: "0" for name in ours if name != "net.ipv4.conf.lo.arp_ignore"}
    assert lvsdr_realsvr.to_restore({**saved, "net.ipv4.ip_forward": "1"}, dict(ours)).keys() == ours.keys()
    assert lvsdr_realsvr.to_restore(dict(ours), dict(ours)) == {}


def test_realsvr_state_file_keeps_the_first_originals(tmp_path: Path) -> None:
    res = resource(lvsdr_realsvr.AGENT, tmp_path, vip="10.78.0.200")
    lvsdr_realsvr._save_originals(res, {"net.ipv4.conf.lo.arp_ignore": "0"})
    lvsdr_realsvr._save_originals(res, {"net.ipv4.conf.lo.arp_ignore": "1"})
    path = Path(lvsdr_realsvr.state_path(res))
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["sysctls"] == {"net.ipv4.conf.lo.arp_ignore": "0"}
    assert lvsdr_realsvr._load_originals(res) == {"net.ipv4.conf.lo.arp_ignore": "0"}
    other = tmp_path / "state" / "lvsdr-realsvr.other.json"
    other.write_text("{}")
    (tmp_path / "state" / "lvsdr.realsvr.json").write_text("{}")       # a director's state: not counted
    assert lvsdr_realsvr._other_instances(res) == ["lvsdr-realsvr.other.json"]
    os.unlink(other)


# ---- where real servers come from (scripts run for real; Pacemaker through a fake runner)


def director(tmp_path: Path, **params: str) -> ocf.Resource:
    return resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", **params)


def names(candidates: list[Candidate]) -> list[str]:
    return [c.name for c in candidates]


def test_get_real_servers_script_output_is_the_list(tmp_path: Path) -> None:
    res = director(tmp_path, realserver_get_real_servers_script="echo node2 node3 node2 10.78.0.14")
    assert names(lvsdr.healthy_candidates(res)) == ["node2", "node3", "10.78.0.14"]


def test_failing_script_leaves_real_servers_alone(tmp_path: Path) -> None:
    res = director(tmp_path, realserver_get_real_servers_script="sh -c 'echo primary down >&2; exit 1'")
    with pytest.raises(lvsdr.SourceFailed, match="exited 1: primary down"):
        lvsdr.healthy_candidates(res)
    res = director(tmp_path, realserver_get_real_servers_script="/nonexistent/get_active_slaves x")
    with pytest.raises(lvsdr.SourceFailed, match="could not be run"):
        lvsdr.healthy_candidates(res)


class FakePacemaker:
    """Answers crm_resource / crm_node / crm_attribute like Pacemaker 2.1.5 would."""

    def __init__(self, located: list[str], members: list[str], status: dict[str, str]) -> None:
        self.located, self.members, self.status = located, members, status
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv, timeout: float):
        from pha.crm import CommandResult
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[0] == "crm_resource":
            nodes = "".join(f'<node state="started">{n}</node>' for n in self.located)
            return CommandResult(0, f'<pacemaker-result api-version="2.25"><nodes>{nodes}</nodes>'
                                    '<status code="0" message="OK"/></pacemaker-result>', "")
        if argv[0] == "crm_node":
            return CommandResult(0, "\n".join(self.members) + "\n", "")
        node = next(a.split("=", 1)[1] for a in argv if a.startswith("--node="))
        if node in self.status:
            return CommandResult(0, self.status[node] + "\n", "")
        return CommandResult(105, "", "crm_attribute: Error performing operation: No such device or address")


def with_pacemaker(monkeypatch: pytest.MonkeyPatch, fake: FakePacemaker) -> None:
    from pha.crm import Crm
    monkeypatch.setattr(lvsdr, "_crm", lambda: Crm(run=fake))


def test_dependent_resource_and_attribute_regex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePacemaker(located=["node1", "node2", "node3", "node4"], members=[],
                         status={"node1": "PRI", "node2": "HS:sync", "node3": "HS:async", "node4": "HS:alone"})
    with_pacemaker(monkeypatch, fake)
    res = director(tmp_path, realserver_dependent_resource="reader-rs-clone",
                   realserver_dependent_attribute_name="pgsql-status")
    assert names(lvsdr.healthy_candidates(res)) == ["node2", "node3"]
    assert fake.calls[0][:3] == ("crm_resource", "--locate", "--resource=reader-rs-clone")
    assert all("--name=pgsql-status" in call and "--lifetime=reboot" in call for call in fake.calls[1:])


def test_regex_must_match_the_whole_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_pacemaker(monkeypatch, FakePacemaker([], ["node2", "node3"], {"node2": "HS:sync", "node3": "xHS:syncx"}))
    res = director(tmp_path, realserver_dependent_attribute_name="pgsql-status")
    assert names(lvsdr.healthy_candidates(res)) == ["node2"]


def test_weight_names_are_the_candidates_without_a_dependent_resource(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePacemaker([], ["node1", "node2"], {})
    with_pacemaker(monkeypatch, fake)
    res = director(tmp_path, weight_of_realservers="node2,2 node3")
    assert names(lvsdr.healthy_candidates(res)) == ["node2", "node3"] and fake.calls == []


def test_check_script_gets_the_name_appended_and_hostile_names_never_reach_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_pacemaker(monkeypatch, FakePacemaker([], ["node2", "node3", "$(reboot)"], {}))
    check = "sh -c 'if [ \"$0\" = node3 ] || [ \"$0\" = \"$(reboot)\" ]; then echo t; else echo f; fi'"
    res = director(tmp_path, realserver_check_active_real_server_script=check)
    assert names(lvsdr.healthy_candidates(res)) == ["node3"]


def test_lag_comes_from_the_node_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class WithLag(FakePacemaker):
        def __call__(self, argv, timeout):
            from pha.crm import CommandResult
            if any(a == "--name=pgsql-lag" for a in argv):
                return CommandResult(0, {"--node=node2": "100\n", "--node=node3": "9000000\n"}[argv[1]], "")
            return super().__call__(argv, timeout)
    with_pacemaker(monkeypatch, WithLag([], ["node2", "node3"], {"node2": "HS:sync", "node3": "HS:async"}))
    res = director(tmp_path, lag_attribute_name="pgsql-lag", max_lag="1MB",
                   realserver_dependent_attribute_name="pgsql-status")
    assert lvsdr.healthy_candidates(res) == [Candidate("node2", 100), Candidate("node3", 9000000)]


def test_pacemaker_failure_leaves_real_servers_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(argv, timeout):
        raise TimeoutError("timed out")
    from pha.crm import Crm
    monkeypatch.setattr(lvsdr, "_crm", lambda: Crm(run=broken))
    with pytest.raises(lvsdr.SourceFailed, match="timed out"):
        lvsdr.healthy_candidates(director(tmp_path, realserver_dependent_resource="rs-clone"))
