"""Read load balancing end to end, on real IPVS (runs in the UML guest; see conftest.py).

A director (the guest's root namespace), a PostgreSQL primary and standbys in their own
namespaces, and a separate client namespace (IPVS does not balance the director's own
connections). ocf:pha:lvsdr and ocf:pha:lvsdr-realsvr are driven through their OCF actions;
the real servers come from the primary itself (in-process get_active_slaves).
"""
from __future__ import annotations

import collections
import time
from typing import Iterator

import pytest
from click.testing import CliRunner

from pha import ocf
from pha.agents import lvsdr, lvsdr_realsvr
from pha.ipvs import IPVSClient, VirtualService
from uml_lab import NODES, PRIMARY, STATE, VIP, Lab, run_agent

pytestmark = pytest.mark.uml

MONITOR_INTERVAL = 3.0
DISCOVERY = f"host={NODES[PRIMARY]} port=5432 user=postgres dbname=postgres"
DIRECTOR = {"OCF_RESOURCE_INSTANCE": "reader", "OCF_RESKEY_vip": VIP, "OCF_RESKEY_port": "5432",
            "OCF_RESKEY_realserver_discovery_conninfo": DISCOVERY, "OCF_RESKEY_allowed_networks": "10.79.0.0/24",
            "OCF_RESKEY_CRM_meta_interval": str(int(MONITOR_INTERVAL * 1000)),
            "PHA_STATE_DIR": str(STATE / "state-director")}
REAL_SERVERS = ("node2", "node3", "node4")


def realsvr_env(node: str) -> dict[str, str]:
    return {"OCF_RESOURCE_INSTANCE": "reader-rs:0", "OCF_RESKEY_vip": VIP, "OCF_RESKEY_nic_lo": "lo:rd",
            "PHA_STATE_DIR": str(STATE / f"state-{node}")}


def director(action: str, **params: str) -> tuple[int, str]:
    env = dict(DIRECTOR, **{f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return run_agent(lvsdr.AGENT, action, env)


def weights() -> dict[str, int]:
    """The kernel's real servers of the reader service: address -> weight."""
    with IPVSClient() as client:
        state = client.read(VirtualService(VIP, 5432))
    assert state is not None, "the virtual service is gone"
    return {rs.address: rs.weight for rs in state.real_servers}


def sysctls(node: str) -> dict[str, str]:
    from uml_lab import inside
    with inside(node):
        return lvsdr_realsvr._read_sysctls()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab()
    started = time.monotonic()
    try:
        lab.up()
        lab.make_clusters()
        for node in ("node1", "node2", "node3"):
            lab.start_pg(node)
        lab.wait_streaming(["node2", "node3"])
        print(f"lab up with a primary and 2 streaming standbys in {time.monotonic() - started:.1f}s")
        yield lab
    finally:
        lab.down()


def test_realsvr_start_puts_vip_on_lo_after_the_arp_sysctls(lab: Lab) -> None:
    from pha import net
    from uml_lab import inside
    for node in ("node2", "node3"):
        assert sysctls(node) == dict.fromkeys(lvsdr_realsvr.sysctl_names(), "0")
        assert run_agent(lvsdr_realsvr.AGENT, "monitor", realsvr_env(node), node)[0] == ocf.NOT_RUNNING
        rc, log = run_agent(lvsdr_realsvr.AGENT, "start", realsvr_env(node), node)
        assert rc == ocf.SUCCESS, log
        assert run_agent(lvsdr_realsvr.AGENT, "start", realsvr_env(node), node)[0] == ocf.SUCCESS
        assert run_agent(lvsdr_realsvr.AGENT, "monitor", realsvr_env(node), node)[0] == ocf.SUCCESS
        assert sysctls(node) == lvsdr_realsvr.sysctl_names()
        with inside(node):
            assert (VIP, 32, "lo:rd") in net.addresses("lo")
            assert net.get_link("lo").up


def test_director_start_balances_rr_over_both_standbys(lab: Lab) -> None:
    assert director("monitor")[0] == ocf.NOT_RUNNING
    rc, log = director("start")
    assert rc == ocf.SUCCESS, log
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1}
    with open("/proc/sys/net/ipv4/ip_forward") as f, open("/proc/sys/net/ipv4/vs/expire_nodest_conn") as g:
        assert (f.read().strip(), g.read().strip()) == ("1", "1")
    seen = lab.who_answers(8)
    assert set(seen) == {"node2", "node3"}, seen
    assert all(a != b for a, b in zip(seen, seen[1:])), f"rr must alternate: {seen}"


def test_steady_monitor_changes_nothing(lab: Lab) -> None:
    durations = []
    for _ in range(3):
        began = time.monotonic()
        rc, log = director("monitor")
        durations.append(round(time.monotonic() - began, 3))
        assert rc == ocf.SUCCESS, log
        assert "real-server" not in log and "service" not in log, log
    print(f"steady monitors took {durations} s")
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1}


def test_killed_standby_is_removed_at_the_next_monitor(lab: Lab) -> None:
    lab.kill_postmaster("node3")
    killed = time.monotonic()
    durations = []
    while NODES["node3"] in weights():
        assert time.monotonic() - killed < 2 * MONITOR_INTERVAL, "node3 still a real server"
        began = time.monotonic()
        rc, log = director("monitor")
        durations.append(round(time.monotonic() - began, 2))
        assert rc == ocf.SUCCESS, log
    removal = time.monotonic() - killed
    print(f"standby death to removal: {removal:.2f}s, monitors of {durations} s")
    assert removal <= MONITOR_INTERVAL
    assert lab.who_answers(4) == ["node2"] * 4

    lab.start_pg("node3")
    lab.wait_streaming(["node3"])
    assert director("monitor")[0] == ocf.SUCCESS
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1}
    assert set(lab.who_answers(4)) == {"node2", "node3"}


def test_lagging_standby_drains_to_weight_zero_and_comes_back(lab: Lab) -> None:
    lag = {"max_lag": "1MB", "lag_resume_checks": "2"}
    # an open session on node3 must survive the drain
    for _ in range(4):
        session = lab.client_connect()
        if session.execute("select current_setting('cluster_name')").fetchone()[0] == "node3":
            break
        session.close()
    else:
        pytest.fail("no connection landed on node3")
    lab.local("node3", "select pg_wal_replay_pause()")
    lab.local(PRIMARY, "create table filler as select g, repeat('x', 200) as pad from generate_series(1, 12000) g")
    lab.wait_replayed("node2")        # only node3 may lag now (node2 lags too while it replays ~3 MB)
    deadline = time.monotonic() + 15
    while weights()[NODES["node3"]] != 0:
        assert time.monotonic() < deadline, f"node3 not drained: {weights()}"
        rc, log = director("monitor", **lag)
        assert rc == ocf.SUCCESS, log
        time.sleep(0.3)
    assert "draining node3" in log
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 0}
    assert lab.who_answers(4) == ["node2"] * 4
    assert session.execute("select current_setting('cluster_name')").fetchone()[0] == "node3"
    session.close()

    lab.local("node3", "select pg_wal_replay_resume()")
    checks_until_back = 0
    deadline = time.monotonic() + 20
    while weights()[NODES["node3"]] == 0:
        assert time.monotonic() < deadline, f"node3 did not come back: {weights()}"
        time.sleep(1.0)
        assert director("monitor", **lag)[0] == ocf.SUCCESS
        checks_until_back += 1
    assert checks_until_back >= 2, "hysteresis: back only after 2 good monitors"
    assert set(lab.who_answers(4)) == {"node2", "node3"}


def test_standby_outside_the_cluster_joins_and_leaves(lab: Lab) -> None:
    rc, log = run_agent(lvsdr_realsvr.AGENT, "start", realsvr_env("node4"), "node4")
    assert rc == ocf.SUCCESS, log
    lab.start_pg("node4")
    lab.wait_streaming([NODES["node4"]])         # application_name is its address
    assert director("monitor")[0] == ocf.SUCCESS
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1, NODES["node4"]: 1}
    counts = collections.Counter(lab.who_answers(6))
    assert counts == {"node2": 2, "node3": 2, "node4": 2}, counts

    lab.kill_postmaster("node4")
    time.sleep(0.5)
    assert director("monitor", inhibit_on_failure="true")[0] == ocf.SUCCESS
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1, NODES["node4"]: 0}   # inhibited, not deleted
    assert director("monitor")[0] == ocf.SUCCESS
    assert weights() == {NODES["node2"]: 1, NODES["node3"]: 1}
    assert set(lab.who_answers(4)) == {"node2", "node3"}


def test_discovery_tools_against_real_postgresql(lab: Lab) -> None:
    runner = CliRunner()
    from pha.cli import main
    result = runner.invoke(main, ["get-active-slaves", "/usr/bin/psql", DISCOVERY])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["node2", "node3"]
    result = runner.invoke(main, ["get-active-slaves", "--json", DISCOVERY])
    import json
    standbys = json.loads(result.stdout)
    assert [(s["name"], s["state"], s["sync_state"]) for s in standbys] == \
        [("node2", "streaming", "async"), ("node3", "streaming", "async")]
    assert all(isinstance(s["lag_bytes"], int) for s in standbys)
    base = "port=5432 user=postgres dbname=postgres"
    assert runner.invoke(main, ["check-active-slave", "psql", base, "-h", NODES["node2"]]).stdout == "t\n"
    assert runner.invoke(main, ["check-active-slave", base, "-h", NODES[PRIMARY]]).stdout == "f\n"
    down = runner.invoke(main, ["check-active-slave", base + " connect_timeout=2", "-h", NODES["node4"]])
    assert down.exit_code == 1 and down.stdout == "" and NODES["node4"] in down.stderr


def test_stop_removes_service_vip_and_restores_sysctls(lab: Lab) -> None:
    from pha import net
    from uml_lab import inside
    rc, log = director("stop")
    assert rc == ocf.SUCCESS, log
    with IPVSClient() as client:
        assert client.read(VirtualService(VIP, 5432)) is None
    assert director("monitor")[0] == ocf.NOT_RUNNING
    assert director("stop")[0] == ocf.SUCCESS
    for node in REAL_SERVERS:
        rc, log = run_agent(lvsdr_realsvr.AGENT, "stop", realsvr_env(node), node)
        assert rc == ocf.SUCCESS, log
        assert run_agent(lvsdr_realsvr.AGENT, "monitor", realsvr_env(node), node)[0] == ocf.NOT_RUNNING
        with inside(node):
            assert all(address != VIP for address, _, _ in net.addresses("lo"))
        assert sysctls(node) == dict.fromkeys(lvsdr_realsvr.sysctl_names(), "0")
