"""ocf:pha:pgsql's promote and demote through AGENT.run with fakes: a promotion and its
REPL_INFO, the held primary's promotion in place, check_best's refusals, the lock, and
each demote branch (not running, a stop follows, back to a standby)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pha import ocf
from pha.pgsql import decide, names, peers
from pgsql_fakes import SCORE, SYSTEM, WANTED, FakeCluster, Node, primary_node
from pgsql_fakes import cluster  # noqa: F401  (a fixture)

pytestmark = pytest.mark.unit


@pytest.fixture
def standby(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Node:
    """node1, the sync standby of node2 (which has failed)."""
    node = Node(tmp_path, monkeypatch, cluster)
    cluster.props[names.REPL_INFO] = "node2|3|0/3000000"
    cluster.attrs["node1"][names.ATTR_DATA] = decide.STREAMING_SYNC
    cluster.attrs["node2"][names.ATTR_STATUS] = decide.STOP
    return node


def promoted(node: Node) -> bool:
    return any("pg_promote(" in sql for sql in node.pg.executed)


# --- promote ---------------------------------------------------------------------------------
def test_promote_records_repl_info_and_becomes_the_primary(standby: Node, cluster: FakeCluster) -> None:
    assert standby.run("promote") == ocf.SUCCESS
    assert promoted(standby) and not standby.pg.in_recovery
    assert cluster.props[names.REPL_INFO] == "node1|4|0/5000060"      # switch point from the history file
    state = standby.state()
    assert state.primary and state.repl_info == "node1|4|0/5000060" and state.baseline == "0/5000060"
    assert state.promoted_at > 0 and state.published == {} and state.rounds == 0
    assert cluster.attrs["node1"][SCORE] == "1000" and standby.pg.standby_signal is False
    assert standby.pg.conf["synchronous_standby_names"] == WANTED


def test_promote_in_async_mode_leaves_the_sync_setting(standby: Node) -> None:
    standby.params["rep_mode"] = "async"
    assert standby.run("promote") == ocf.SUCCESS and standby.pg.conf is None


@pytest.mark.parametrize("attrs, reason, steps_aside", [
    ({"node1": {names.ATTR_DATA: decide.STREAMING_POTENTIAL}}, "not the sync standby's", True),
    ({"node1": {names.ATTR_DATA: decide.DISCONNECT}}, "this node's data is DISCONNECT", True),
    ({"node3": {names.ATTR_STATUS: decide.PRI}}, "node3 is still the primary", False),
])
def test_check_best_refuses(standby: Node, cluster: FakeCluster, capsys: pytest.CaptureFixture,
                            attrs: dict, reason: str, steps_aside: bool) -> None:
    for node, values in attrs.items():
        cluster.attrs[node].update(values)
    cluster.attrs["node1"][SCORE] = "100"
    assert standby.run("promote") == ocf.ERR_GENERIC
    assert reason in capsys.readouterr().err and not promoted(standby)
    assert cluster.attrs["node1"][SCORE] == ("-INFINITY" if steps_aside else "100")
    assert cluster.props[names.REPL_INFO] == "node2|3|0/3000000"


def test_the_held_primary_is_promoted_in_place(standby: Node, cluster: FakeCluster) -> None:
    cluster.props[names.REPL_INFO] = "node1|3|0/3000000"
    standby.pg.running = False
    assert standby.run("start") == ocf.SUCCESS and standby.state().held
    standby.pg.in_recovery = False
    assert standby.run("promote") == ocf.SUCCESS
    assert not promoted(standby) and cluster.props[names.REPL_INFO] == "node1|3|0/3000000"
    assert "default_transaction_read_only" not in standby.pg.conf
    assert standby.pg.conf["synchronous_standby_names"] == WANTED
    state = standby.state()
    assert not state.held and state.primary and state.repl_info == "node1|3|0/3000000"
    assert state.baseline == standby.pg.lsn


def test_promoting_a_primary_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             cluster: FakeCluster) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster)
    assert node.run("promote") == ocf.SUCCESS and cluster.writes == [] and not promoted(node)


def test_promotion_waits_for_the_lock(standby: Node, tmp_path: Path) -> None:
    flag = tmp_path / "lease-expired"
    standby.params.update(enable_distlock="true",
                          distlock_lock_cmd=f"sh -c 'test -e {flag} && exit 0; touch {flag}; exit 1'")
    assert standby.run("promote") == ocf.SUCCESS and promoted(standby)


def test_promotion_is_refused_when_the_lock_cannot_be_asked(standby: Node, cluster: FakeCluster,
                                                            capsys: pytest.CaptureFixture) -> None:
    standby.params.update(enable_distlock="true", distlock_lock_cmd="sh -c 'exit 2'")
    assert standby.run("promote") == ocf.ERR_GENERIC
    assert "distlock_lock_cmd failed (exit 2)" in capsys.readouterr().err
    assert not promoted(standby) and cluster.attrs["node1"][SCORE] == "-INFINITY"


def test_a_lock_command_that_cannot_run_counts_as_failed(standby: Node, capsys: pytest.CaptureFixture) -> None:
    standby.params.update(enable_distlock="true", distlock_lock_cmd="/nonexistent/lock")
    assert standby.run("promote") == ocf.ERR_GENERIC
    assert "distlock_lock_cmd failed (exit 2)" in capsys.readouterr().err


# --- the peers' WAL at a promotion (pha.pgsql.peers) ------------------------------------------------
def identity(lsn: str, timeline: int = 3, system: str = SYSTEM) -> peers.Identity:
    return peers.Identity(system, decide.Position(timeline, decide.parse_lsn(lsn)))


def test_promotion_asks_every_running_peer_where_its_wal_ends(standby: Node, cluster: FakeCluster) -> None:
    cluster.running = ["node1", "node3"]
    assert standby.run("promote") == ocf.SUCCESS and promoted(standby)
    [(address, conninfo)] = standby.asked
    assert address == "10.0.0.3" and "replication=true" in conninfo and "user=postgres" in conninfo
    assert "application_name=pha-promote-node1" in conninfo and "password" not in conninfo
    assert not any("pg_last_wal_receive_lsn()::text" in q for q in standby.pg.executed)   # nobody had more


def test_a_primary_peer_is_not_asked_and_refuses_the_promotion(standby: Node, cluster: FakeCluster) -> None:
    cluster.attrs["node3"][names.ATTR_STATUS] = decide.PRI
    assert standby.run("promote") == ocf.ERR_GENERIC and not promoted(standby)
    assert [a for a, _ in standby.asked] == ["10.0.0.2"]


def test_promotion_catches_up_with_a_peer_that_has_more_wal(standby: Node, cluster: FakeCluster,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The double failure: the primary's Pacemaker and its sync standby's PostgreSQL die at
    once, the primary goes on with node3 as its sync, and node1 (the sync standby it marked)
    is promoted: it must first fetch what node3 acknowledged."""
    standby.peer_answers["node3"] = identity("0/6000100")
    standby.pg.upstream_lsn["10.0.0.3"] = "0/6000100"
    assert standby.run("promote") == ocf.SUCCESS and promoted(standby)
    err = capsys.readouterr().err
    assert "node3 has WAL to 0/6000100 on timeline 3, past this node's 0/5000060 on timeline 3" in err
    assert "caught up with node3" in err
    assert cluster.props[names.REPL_INFO] == "node1|4|0/6000100"
    assert standby.pg.conf["primary_conninfo"].startswith("host=10.0.0.100 ")   # master_ip again


def test_catching_up_streams_from_the_peer_without_asking_for_a_writable_one(standby: Node) -> None:
    standby.peer_answers["node3"] = identity("0/6000100")
    confs = []
    write_conf = standby.pg.write_conf
    standby.pg.write_conf = lambda settings: confs.append(dict(settings)) or write_conf(settings)
    standby.pg.upstream_lsn["10.0.0.3"] = "0/6000100"
    assert standby.run("promote") == ocf.SUCCESS
    conninfo = confs[0]["primary_conninfo"]
    assert conninfo.startswith("host=10.0.0.3 ") and "target_session_attrs" not in conninfo
    assert "application_name=node1" in conninfo


def test_in_async_mode_the_caught_up_primary_points_at_master_ip_again(standby: Node) -> None:
    standby.params["rep_mode"] = "async"
    standby.peer_answers["node2"] = identity("0/6000100")
    standby.pg.upstream_lsn["10.0.0.2"] = "0/6000100"
    assert standby.run("promote") == ocf.SUCCESS
    assert standby.pg.conf["primary_conninfo"].startswith("host=10.0.0.100 ")


def test_a_peer_whose_wal_does_not_arrive_gets_the_promotion(standby: Node, cluster: FakeCluster,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(peers, "CATCH_UP_WAIT", 0.1)
    cluster.attrs["node1"][SCORE] = "100"
    standby.peer_answers["node3"] = identity("0/6000100")
    assert standby.run("promote") == ocf.ERR_GENERIC and not promoted(standby)
    assert "node3 is promotable" in capsys.readouterr().err
    assert cluster.attrs["node1"][SCORE] == "-INFINITY" and cluster.attrs["node3"][SCORE] == "100"
    assert standby.pg.conf["primary_conninfo"].startswith("host=10.0.0.100 ")
    assert cluster.props[names.REPL_INFO] == "node2|3|0/3000000"


def test_the_peer_handed_the_promotion_is_promoted_although_not_the_marked_sync(
        standby: Node, cluster: FakeCluster) -> None:
    cluster.attrs["node1"][names.ATTR_DATA] = decide.STREAMING_POTENTIAL
    cluster.attrs["node3"][names.ATTR_DATA] = decide.STREAMING_SYNC
    standby.peer_answers["node3"] = identity("0/5000000")        # the marked sync standby has less
    assert standby.run("promote") == ocf.SUCCESS and promoted(standby)


def test_a_non_sync_node_is_refused_when_the_sync_standby_cannot_be_asked(
        standby: Node, cluster: FakeCluster, capsys: pytest.CaptureFixture) -> None:
    import psycopg
    cluster.attrs["node1"][names.ATTR_DATA] = decide.STREAMING_POTENTIAL
    cluster.attrs["node3"][names.ATTR_DATA] = decide.STREAMING_SYNC
    standby.peer_answers["node3"] = psycopg.OperationalError("connection to server at \"10.0.0.3\" failed: timeout")
    assert standby.run("promote") == ocf.ERR_GENERIC and not promoted(standby)
    err = capsys.readouterr().err
    assert "cannot ask node3 (10.0.0.3) where its WAL ends: connection to server" in err
    assert "not the sync standby's" in err


@pytest.mark.parametrize("answer", ["unreachable", "another cluster"])
def test_a_peer_that_cannot_be_counted_does_not_hold_the_promotion(standby: Node, answer: str,
                                                                   capsys: pytest.CaptureFixture) -> None:
    import psycopg
    standby.peer_answers["node3"] = (psycopg.OperationalError("timeout expired") if answer == "unreachable"
                                     else identity("0/9000000", system="7000000000000000002"))
    assert standby.run("promote") == ocf.SUCCESS and promoted(standby)
    assert "node3" in capsys.readouterr().err
    assert standby.pg.lsn == "0/5000060"                          # nothing fetched from there


# --- demote ----------------------------------------------------------------------------------
@pytest.fixture
def primary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Node:
    node = primary_node(tmp_path, monkeypatch, cluster)
    cluster.attrs["node1"][SCORE] = "1000"
    return node


def test_demote_of_a_primary_that_is_not_running(primary: Node, cluster: FakeCluster) -> None:
    primary.pg.running = False
    assert primary.run("demote") == ocf.SUCCESS
    assert primary.pg.calls == [] and cluster.writes == []
    state = primary.state()
    assert not state.primary and state.repl_info is None


def test_demote_followed_by_a_stop_shuts_down_as_the_primary(primary: Node, cluster: FakeCluster,
                                                             tmp_path: Path) -> None:
    released = tmp_path / "released"
    primary.params.update(enable_distlock="true", distlock_lock_cmd="/bin/true",
                          distlock_unlock_cmd=f"touch {released}")
    primary.save_state(stop_follows=True)
    assert primary.run("demote") == ocf.SUCCESS
    assert primary.pg.calls == [("stop", 10, False)] and primary.pg.standby_signal is None
    assert released.exists() and not primary.state().primary and not primary.state().stop_follows


@pytest.mark.parametrize("target_role, shutdown", [("Stopped", False), (None, True)])
def test_demote_sees_the_stop_coming_without_notifications(primary: Node, cluster: FakeCluster,
                                                           target_role, shutdown) -> None:
    cluster.target_role = target_role
    if shutdown:
        cluster.shutdown.add("node1")
    assert primary.run("demote") == ocf.SUCCESS
    assert primary.pg.calls == [("stop", 10, False)] and not primary.pg.running


def test_demote_restarts_as_a_standby(primary: Node, cluster: FakeCluster) -> None:
    primary.save_state(rounds=3)
    assert primary.run("demote") == ocf.SUCCESS
    assert primary.pg.calls == [("stop", 10, False), ("start",), ("wait_ready",)]
    assert primary.pg.standby_signal is True and primary.pg.in_recovery
    assert primary.pg.conf["synchronous_standby_names"] == ""
    assert cluster.attrs["node1"][SCORE] == "1" and cluster.attrs["node1"][names.ATTR_STATUS] == decide.HS_ALONE
    state = primary.state()
    assert not state.primary and state.rounds == 0 and state.repl_info is None


def test_demote_without_quorum_stops_immediately(primary: Node, cluster: FakeCluster) -> None:
    cluster.corosync_quorum = False
    assert primary.run("demote") == ocf.SUCCESS and primary.pg.calls[0] == ("stop", 10, True)


def test_demote_without_crm_mon_assumes_no_stop_follows(primary: Node, cluster: FakeCluster,
                                                       capsys: pytest.CaptureFixture) -> None:
    cluster.broken.add("status")
    assert primary.run("demote") == ocf.SUCCESS and ("start",) in primary.pg.calls
    assert "cannot tell whether a stop follows this demote" in capsys.readouterr().err


def test_a_failed_restart_fails_the_demote(primary: Node, capsys: pytest.CaptureFixture) -> None:
    from pha.pgsql.instance import PgError

    def broken(timeout: float) -> None:
        raise PgError("pg_ctl start failed: port in use")
    primary.pg.start = broken
    assert primary.run("demote") == ocf.ERR_GENERIC and "port in use" in capsys.readouterr().err


# --- the record pha guard watches (pha.pgsql.guard) ------------------------------------------------
def test_a_primary_is_recorded_for_the_guard_until_demoted_or_stopped(standby: Node) -> None:
    from pha.pgsql import guard
    directory = str(standby.guard_dir)
    assert standby.run("promote") == ocf.SUCCESS
    [record] = guard.read_records(directory)[0]
    assert (record.resource, record.node, record.pgdata, record.port) == ("pgsql", "node1", standby.pg.pgdata, 5432)
    assert standby.run("demote") == ocf.SUCCESS
    assert guard.read_records(directory) == ([], [])
    standby.pg.in_recovery = False                 # a primary the monitor finds (adopted): recorded
    standby.save_state(primary=True)
    assert standby.run("monitor") == ocf.RUNNING_PROMOTED
    assert len(guard.read_records(directory)[0]) == 1
    assert standby.run("stop") == ocf.SUCCESS
    assert guard.read_records(directory) == ([], [])
