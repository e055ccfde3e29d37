"""ocf:pha:lvsdr and lvsdr-realsvr without a kernel: bad input through AGENT.run
(OCF_ERR_CONFIGURED with a reason), where real servers come from (scripts run for real,
Pacemaker and the primary faked), monitor against a fake IPVS, state and heartbeat files.
The pure decisions are in test_lvs_plan.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pha import ocf, ocflog
from pha.agents import lvsdr, lvsdr_realsvr
from pha.ipvs import RealServer, ServiceState, VirtualService
from pha.lvs import hosts, sources, state
from pha.lvs.plan import Candidate

pytestmark = pytest.mark.unit

HOSTS = {"node2": ["10.78.0.12"], "node3": ["10.78.0.13"], "node4": ["10.78.0.14"]}


def fake_resolver(name: str) -> list[str]:
    """/etc/hosts in a dict: unit tests never ask a real resolver (no packet leaves)."""
    if name not in HOSTS:
        raise OSError(-2, "Name or service not known")
    return HOSTS[name]


def run(agent: ocf.Agent, action: str, capsys: pytest.CaptureFixture, **params: str) -> tuple[int, str]:
    env = {f"OCF_RESKEY_{k}": v for k, v in params.items()}
    rc = agent.run([action], env=env)
    return rc, capsys.readouterr().err


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
    ({"vip": "10.78.0.200", "max_lag": "lots"}, "parameter max_lag=lots is not a size"),
    ({"vip": "10.78.0.200", "max_lag": "1.5MB"}, "parameter max_lag=1.5MB is not a size"),
    ({"vip": "10.78.0.200", "allowed_networks": "10.78.0.0/40"}, "parameter allowed_networks="),
    ({"vip": "10.78.0.200", "realserver_dependent_attribute_value": "HS:(sync"},
     "parameter realserver_dependent_attribute_value=HS:(sync is not a regular expression"),
    ({"vip": "10.78.0.200", "realserver_discovery_conninfo": "host=10.78.0.11 password=secret"},
     "holds a password"),
    ({"vip": "10.78.0.200", "realserver_get_real_servers_script": "get_active_slaves 'host=x password=secret'"},
     "puts a password on a command line"),
    ({"vip": "10.78.0.200", "realserver_get_real_servers_script": "get_active_slaves postgresql://u:secret@x/db"},
     "puts a password on a command line"),
    ({"vip": "10.78.0.200", "realserver_get_real_servers_script": "env PGPASSWORD=secret get_active_slaves x"},
     "puts a password on a command line"),
    ({"vip": "10.78.0.200", "realserver_check_active_real_server_script": "check 'sslpassword=secret' -h"},
     "puts a password on a command line"),
    ({"vip": "10.78.0.200", "realserver_discovery_conninfo": "host=10.78.0.11 sslpassword=secret"},
     "holds a sslpassword"),
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
    res = ocf.Resource(lvsdr.AGENT, "validate-all", env, ocflog.Log("lvsdr", env))
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
    return ocf.Resource(agent, "monitor", env, ocflog.Log(agent.name, env))


def test_lvsdr_state_file_is_private(tmp_path: Path) -> None:
    res = resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200")
    state.save_state(res, {"drained": {"node3": 1}})
    path = Path(state.state_path(res))
    assert path.name == "lvsdr.reader_0.json"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert state.load_state(res) == {"drained": {"node3": 1}}
    path.write_text("not json")
    assert state.load_state(res) == {}
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"drained": {"node2": 0}}')
    assert state.load_state(res) == {}                  # never read through a symlink
    state.save_state(res, {"drained": {}})
    assert not path.is_symlink() and (tmp_path / "elsewhere.json").read_text() == '{"drained": {"node2": 0}}'
    state.drop_state(res)
    state.drop_state(res)
    assert not path.exists()


def test_heartbeat_file_is_created_then_touched_never_written(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    res = resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", heatbeat_file=str(beat))
    state.stamp_heartbeat(res)
    assert beat.read_text() == "" and beat.stat().st_mode & 0o777 == 0o644
    beat.write_text("kept\n")
    os.utime(beat, (1, 1))
    state.stamp_heartbeat(res)
    assert beat.read_text() == "kept\n" and beat.stat().st_mtime > 1


def test_heartbeat_file_refuses_symlinks_and_special_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    precious = tmp_path / "precious"
    precious.write_text("do not truncate\n")
    os.utime(precious, (1, 1))
    link = tmp_path / "beat"
    link.symlink_to(precious)
    state.stamp_heartbeat(resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", heartbeat_file=str(link)))
    assert precious.read_text() == "do not truncate\n" and precious.stat().st_mtime == 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    state.stamp_heartbeat(resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", heartbeat_file=str(fifo)))
    err = capsys.readouterr().err
    assert err.count("not stamped") == 2, err


@pytest.mark.parametrize("mode, owner", [(0o777, 0), (0o1777, 0), (0o775, 0), (0o755, 65534)])
def test_heartbeat_file_only_in_a_directory_only_root_can_write(tmp_path: Path, mode: int, owner: int,
                                                                capsys: pytest.CaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    os.chown(shared, owner, 0)
    state.stamp_heartbeat(resource(lvsdr.AGENT, tmp_path, vip="10.78.0.200", heartbeat_file=str(shared / "b")))
    assert not (shared / "b").exists()
    assert "not a directory only root can write to" in capsys.readouterr().err


def test_heartbeat_directory_reached_through_another_users_directory(tmp_path: Path) -> None:
    users = tmp_path / "home"
    users.mkdir()
    os.chown(users, 65534, 65534)
    (users / "link").symlink_to(tmp_path)              # points at a root-only directory
    with pytest.raises(OSError, match="only root"):
        state.check_root_only(str(users / "link"))
    state.check_root_only(str(tmp_path))
    state.check_root_only("/")


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
    monkeypatch.setattr(sources, "_crm", lambda: Crm(run=fake))


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
    monkeypatch.setattr(sources, "_crm", lambda: Crm(run=broken))
    with pytest.raises(lvsdr.SourceFailed, match="timed out"):
        lvsdr.healthy_candidates(director(tmp_path, realserver_dependent_resource="rs-clone"))


def test_lag_attribute_that_is_not_a_number_is_an_unknown_lag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class OddLag(FakePacemaker):
        def __call__(self, argv, timeout):
            from pha.crm import CommandResult
            if any(a == "--name=pgsql-lag" for a in argv):
                return CommandResult(0, {"--node=node2": "²\n", "--node=node3": "-5\n"}[argv[1]], "")
            return super().__call__(argv, timeout)
    with_pacemaker(monkeypatch, OddLag([], ["node2", "node3"], {}))
    res = director(tmp_path, lag_attribute_name="pgsql-lag", max_lag="1MB")
    assert lvsdr.healthy_candidates(res) == [Candidate("node2", None), Candidate("node3", None)]


# ---- monitor against a fake IPVS: which names become real servers


class FakeIPVS:
    """The kernel's IPVS for one service: read() and apply() like pha.ipvs.IPVSClient."""

    def __init__(self, servers: tuple[RealServer, ...] = ()) -> None:
        self.state: ServiceState | None = ServiceState(VirtualService("10.78.0.200", 5432), servers)
        self.changes: list = []

    def read(self, service: VirtualService) -> ServiceState | None:
        return self.state

    def apply(self, changes) -> int:
        from pha.ipvs import ADD_REAL_SERVER, DEL_REAL_SERVER, SET_REAL_SERVER
        changes = list(changes)
        self.changes += changes
        servers = {rs.address: rs for rs in self.state.real_servers}
        for change in changes:
            if change.kind in (ADD_REAL_SERVER, SET_REAL_SERVER):
                servers[change.real_server.address] = change.real_server
            elif change.kind == DEL_REAL_SERVER:
                del servers[change.real_server.address]
        self.state = ServiceState(self.state.service, tuple(servers.values()))
        return len(changes)

    def close(self) -> None:
        pass

    def addresses(self) -> list[str]:
        return sorted(rs.address for rs in self.state.real_servers)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeIPVS:
    """A fake IPVS, the lab's names, and 10.78.0.0/24 as the network holding the VIP."""
    import ipaddress

    from pha import net
    fake = FakeIPVS()
    monkeypatch.setattr(lvsdr, "_client", lambda: fake)
    monkeypatch.setattr(hosts, "local_resolver", lambda: fake_resolver)
    monkeypatch.setattr(net, "networks_holding", lambda vip: [ipaddress.ip_network("10.78.0.0/24")])
    return fake


def monitor(tmp_path: Path, capsys: pytest.CaptureFixture, **params: str) -> tuple[int, str]:
    env = {"OCF_RESOURCE_INSTANCE": "reader", "OCF_RESKEY_CRM_meta_interval": "3000",
           "PHA_STATE_DIR": str(tmp_path / "state"), "OCF_RESKEY_vip": "10.78.0.200",
           **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    rc = lvsdr.AGENT.run(["monitor"], env=env)
    return rc, capsys.readouterr().err


def primary_reports(monkeypatch: pytest.MonkeyPatch, *rows: tuple[str, str | None]) -> None:
    from pha import discovery
    standbys = [discovery.Standby(name, "streaming", "async", addr, 0, 0.0) for name, addr in rows]
    monkeypatch.setattr(discovery, "active_standbys", lambda conninfo, timeout=5: standbys)


def test_standby_names_must_match_the_address_they_connect_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, kernel: FakeIPVS) -> None:
    primary_reports(monkeypatch, ("node2", "10.78.0.12"),
                    ("198.51.100.7", "127.0.0.1"),        # a local process calling itself anything
                    ("10.78.0.99", "127.0.0.1"),
                    ("node3", "10.78.0.14"),              # node4 claiming to be node3
                    ("10.0.0.5 10.0.0.6", "10.78.0.14"),  # one name, never two real servers
                    ("node4", None))                      # a unix socket
    rc, err = monitor(tmp_path, capsys, realserver_discovery_conninfo="host=10.78.0.11 user=postgres")
    assert rc == ocf.SUCCESS, err
    assert kernel.addresses() == ["10.78.0.12"]
    assert err.count("real server skipped") == 5, err


def test_default_allowed_networks_are_the_vips_subnet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, kernel: FakeIPVS) -> None:
    rc, err = monitor(tmp_path, capsys, realserver_get_real_servers_script="echo node2 192.0.2.9 10.78.0.14")
    assert rc == ocf.SUCCESS and kernel.addresses() == ["10.78.0.12", "10.78.0.14"]
    assert "192.0.2.9 (192.0.2.9) is outside allowed_networks" in err
    rc, err = monitor(tmp_path, capsys, realserver_get_real_servers_script="echo node2 192.0.2.9",
                      allowed_networks="0.0.0.0/0")
    assert rc == ocf.SUCCESS and kernel.addresses() == ["10.78.0.12", "192.0.2.9"]


def test_no_network_holding_the_vip_leaves_real_servers_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, kernel: FakeIPVS) -> None:
    from pha import net
    kernel.state = ServiceState(kernel.state.service, (RealServer("10.78.0.13", 5432),))
    monkeypatch.setattr(net, "networks_holding", lambda vip: [])
    rc, err = monitor(tmp_path, capsys, realserver_get_real_servers_script="echo node2")
    assert rc == ocf.SUCCESS and kernel.addresses() == ["10.78.0.13"] and kernel.changes == []
    assert "no network on this node holds vip 10.78.0.200: set allowed_networks" in err


def test_script_printing_one_name_a_line(tmp_path: Path, capsys: pytest.CaptureFixture, kernel: FakeIPVS) -> None:
    rc, err = monitor(tmp_path, capsys, realserver_get_real_servers_script="printf 'node2\\nnode3\\n'")
    assert rc == ocf.SUCCESS and kernel.addresses() == ["10.78.0.12", "10.78.0.13"], err
