"""ocf:pha:pgsql's monitor through AGENT.run, on the primary and on standbys, with fakes:
attributes and their differences, SETTLE, the minority, lock loss, the sync target and
async fallback, slots, elections and their gating, and what does (not) fail the monitor."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from pha import ocf
from pha.pgsql import decide, names, rewind
from pgsql_fakes import NODES, SCORE, WANTED, FakeCluster, Node, primary_node, stream
from pgsql_fakes import cluster  # noqa: F401  (a fixture)

pytestmark = pytest.mark.unit


@pytest.fixture
def primary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Node:
    node = primary_node(tmp_path, monkeypatch, cluster)
    node.pg.replication = stream(("node2", "sync"), ("node3", "potential"))
    node.pg.sync_names = WANTED
    return node


@pytest.fixture
def standby(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Node:
    node = Node(tmp_path, monkeypatch, cluster)
    cluster.props[names.REPL_INFO] = "node2|3|0/3000000"
    return node


# --- the primary -----------------------------------------------------------------------------
def test_the_primary_publishes_every_node_then_only_differences(primary: Node, cluster: FakeCluster) -> None:
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    a = cluster.attrs
    assert (a["node1"][names.ATTR_STATUS], a["node1"][names.ATTR_DATA], a["node1"][SCORE]) == ("PRI", "LATEST", "1000")
    assert (a["node2"][names.ATTR_STATUS], a["node2"][names.ATTR_DATA], a["node2"][SCORE]) == \
        (decide.HS_SYNC, decide.STREAMING_SYNC, "100")
    assert (a["node3"][names.ATTR_STATUS], a["node3"][SCORE]) == (decide.HS_POTENTIAL, "-INFINITY")
    assert cluster.lifetimes[("node2", names.ATTR_DATA)] == "forever"
    assert cluster.lifetimes[("node2", names.ATTR_STATUS)] == "reboot"
    cluster.writes.clear()
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED and cluster.writes == []
    assert primary.state().primary is True


def test_a_disconnected_node_whose_resource_is_stopped_is_stop(primary: Node, cluster: FakeCluster) -> None:
    primary.pg.replication = stream(("node2", "sync"))
    cluster.running = ["node1", "node2"]
    primary.run("monitor")
    assert cluster.attrs["node3"][names.ATTR_STATUS] == decide.STOP
    cluster.running = NODES
    primary.run("monitor")
    assert cluster.attrs["node3"][names.ATTR_STATUS] == decide.HS_ALONE


def test_nothing_is_written_while_the_promotion_settles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        cluster: FakeCluster) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster, promoted_ago=0.5)
    assert node.run("monitor") == ocf.RUNNING_PROMOTED and cluster.writes == []
    node.save_state(promoted_at=time.time() - decide.SETTLE)
    node.pg.sync_names = WANTED
    assert node.run("monitor") == ocf.RUNNING_PROMOTED and cluster.writes


def test_a_minority_primary_writes_nothing(primary: Node, cluster: FakeCluster) -> None:
    cluster.quorum = False
    cluster.props[names.REPL_INFO] = "node2|4|0/6000000"       # the majority's, after a failover
    primary.save_state(baseline="0/5000060")
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert cluster.writes == [] and cluster.props[names.REPL_INFO] == "node2|4|0/6000000"
    assert not any("pg_reload_conf" in sql for sql in primary.pg.executed)


def test_the_primary_stops_at_once_when_it_loses_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          cluster: FakeCluster, capsys: pytest.CaptureFixture) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster, enable_distlock="true", distlock_lock_cmd="/bin/false")
    assert node.run("monitor") == ocf.ERR_GENERIC
    assert "lost the distributed lock" in capsys.readouterr().err
    assert node.pg.calls == [("stop", 1, True)] and cluster.attrs["node1"][SCORE] == "-INFINITY"


def test_the_primary_renews_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> None:
    renewed = tmp_path / "renewed"
    node = primary_node(tmp_path, monkeypatch, cluster, enable_distlock="true",
                        distlock_lock_cmd=f"touch {renewed}")
    node.pg.sync_names = WANTED
    assert node.run("monitor") == ocf.RUNNING_PROMOTED and renewed.exists()


def test_the_baseline_is_published_once_and_standby_attributes_go(primary: Node, cluster: FakeCluster) -> None:
    cluster.attrs["node1"].update({names.ATTR_LSN: "0000000005000000", names.ATTR_RECEIVER: "streaming"})
    primary.save_state(baseline="0/5000060", published={f"node1/{names.ATTR_LSN}/reboot": "0000000005000000"})
    primary.run("monitor")
    assert cluster.attrs["node1"][names.ATTR_BASELINE] == "0/5000060"
    assert names.ATTR_LSN not in cluster.attrs["node1"] and names.ATTR_RECEIVER not in cluster.attrs["node1"]
    assert primary.state().baseline is None


def test_a_lost_repl_info_is_written_again(primary: Node, cluster: FakeCluster,
                                           capsys: pytest.CaptureFixture) -> None:
    cluster.props[names.REPL_INFO] = "node2|2|0/2000000"      # an older configuration came back
    primary.run("monitor")
    assert cluster.props[names.REPL_INFO] == "node1|3|0/3000000"
    assert "REPL_INFO was not node1|3|0/3000000" in capsys.readouterr().err


def test_a_newer_repl_info_is_never_overwritten(primary: Node, cluster: FakeCluster,
                                              capsys: pytest.CaptureFixture) -> None:
    cluster.props[names.REPL_INFO] = "node2|4|0/4000000"      # a later promotion elsewhere
    primary.run("monitor")
    assert cluster.props[names.REPL_INFO] == "node2|4|0/4000000"
    assert "left as it is" in capsys.readouterr().err


def test_a_probe_never_writes_repl_info(primary: Node, cluster: FakeCluster) -> None:
    cluster.props[names.REPL_INFO] = "node2|2|0/2000000"      # the stack came back: Pacemaker decides
    primary.run("monitor", interval=0)
    assert cluster.props[names.REPL_INFO] == "node2|2|0/2000000"


@pytest.mark.parametrize("streaming, current, promoted_ago, corosync_quorum, expect", [
    (stream(("node2", "sync")), "", 60, True, WANTED),     # a standby streams again: sync
    ([], WANTED, 60, True, ""),                             # nobody streams, quorate: async
    ([], WANTED, 3, True, None),                            # within FALLBACK_GRACE: stay sync
    ([], WANTED, 60, False, None),                          # corosync says no quorum: stay sync
    (stream(("node2", "sync")), WANTED, 60, True, None),   # already right: nothing written
    ([], "", 60, True, None),                               # already async
])
def test_sync_target_and_async_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster,
                                        streaming, current, promoted_ago, corosync_quorum, expect) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster, promoted_ago=promoted_ago)
    node.pg.replication, node.pg.sync_names = streaming, current
    cluster.corosync_quorum = corosync_quorum
    assert node.run("monitor") == ocf.RUNNING_PROMOTED
    if expect is None:
        assert node.pg.conf is None and not any("pg_reload_conf" in s for s in node.pg.executed)
    else:
        assert node.pg.conf["synchronous_standby_names"] == expect
        assert "default_transaction_read_only" not in node.pg.conf
        assert any("pg_reload_conf" in s for s in node.pg.executed)


def test_async_mode_never_touches_the_sync_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   cluster: FakeCluster) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster, rep_mode="async")
    node.pg.replication = stream(("node2", "async"), ("node3", "async"))
    assert node.run("monitor") == ocf.RUNNING_PROMOTED and node.pg.conf is None
    assert (cluster.attrs["node2"][SCORE], cluster.attrs["node3"][SCORE]) == ("100", "99")


def test_the_primary_creates_the_missing_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               cluster: FakeCluster) -> None:
    node = primary_node(tmp_path, monkeypatch, cluster, replication_slot_name="pha")
    node.pg.sync_names, node.pg.slots = WANTED, ["pha_node2"]
    node.run("monitor")
    assert node.pg.slots == ["pha_node2", "pha_node3"]


@pytest.mark.parametrize("broken", ["status", "set_node_attr", "set_promotion_score", "get_property"])
def test_a_pacemaker_cli_error_never_fails_the_primary(primary: Node, cluster: FakeCluster,
                                                       capsys: pytest.CaptureFixture, broken: str) -> None:
    cluster.broken.add(broken)
    primary.save_state(baseline="0/5000060")
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert "the next one retries" in capsys.readouterr().err
    assert primary.state().primary is True
    cluster.broken.clear()
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED                    # retried
    assert cluster.attrs["node1"][names.ATTR_BASELINE] == "0/5000060" and cluster.attrs["node2"][SCORE] == "100"


def test_a_primary_that_does_not_answer_fails(primary: Node, capsys: pytest.CaptureFixture) -> None:
    primary.pg.connect_error = psycopg.OperationalError("connection failed: server closed the connection")
    assert primary.run("monitor") == ocf.FAILED_PROMOTED
    assert "PostgreSQL does not answer" in capsys.readouterr().err
    assert primary.run("monitor", interval=0) == ocf.ERR_GENERIC                # a probe
    assert "runs but does not answer" in capsys.readouterr().err


def test_a_failing_query_fails_the_primary(primary: Node) -> None:
    primary.params["monitor_sql"] = "select broken"
    original = primary.pg.answers
    primary.pg.answers = lambda: [("select broken", psycopg.errors.UndefinedColumn("column broken"))] + original()
    assert primary.run("monitor") == ocf.FAILED_PROMOTED


TOO_MANY = [
    psycopg.OperationalError('connection failed: connection to server on socket "/run/postgresql/.s.PGSQL.5432" '
                             'failed: FATAL:  sorry, too many clients already'),
    psycopg.OperationalError("connection failed: FATAL:  remaining connection slots are reserved for roles "
                             "with the SUPERUSER attribute"),
    psycopg.errors.TooManyConnections("too many"),
]
NOT_NOW = [
    psycopg.OperationalError("connection failed: FATAL:  the database system is starting up"),
    psycopg.OperationalError("connection failed: FATAL:  the database system is shutting down"),
    psycopg.errors.CannotConnectNow("not now"),
]


@pytest.mark.parametrize("error", TOO_MANY + NOT_NOW)
def test_a_busy_server_is_alive_in_its_last_known_role(primary: Node, capsys: pytest.CaptureFixture,
                                                       error: Exception) -> None:
    primary.pg.connect_error = error
    primary.pg.walsender_error = psycopg.OperationalError("FATAL:  no pg_hba.conf entry for replication connection")
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert "alive but refuses connections" in capsys.readouterr().err
    primary.save_state(primary=False)
    assert primary.run("monitor") == ocf.SUCCESS
    assert primary.run("monitor", interval=0) == ocf.SUCCESS
    assert ("connect", "walsender") not in primary.pg.calls       # a standby needs no way in


@pytest.mark.parametrize("error", TOO_MANY)
def test_a_full_primary_is_monitored_through_a_walsender_and_falls_back_to_async(
        primary: Node, capsys: pytest.CaptureFixture, error: Exception) -> None:
    """Commits waiting for a sync standby that is gone took every slot: the way in
    sees no standby streaming and goes async, which releases them."""
    primary.pg.sync_names = "node2"
    primary.pg.replication = []
    primary.save_state(primary=True, promoted_at=0.0)
    primary.pg.connect_error = error
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert ("connect", "walsender") in primary.pg.calls
    assert "monitoring through a walsender connection" in capsys.readouterr().err
    assert primary.pg.conf["synchronous_standby_names"] == ""


def test_a_failing_query_through_the_walsender_fails_the_primary(primary: Node) -> None:
    primary.pg.connect_error = TOO_MANY[0]
    primary.params["monitor_sql"] = "select broken"
    original = primary.pg.answers
    primary.pg.answers = lambda: [("select broken", psycopg.errors.UndefinedColumn("column broken"))] + original()
    assert primary.run("monitor") == ocf.FAILED_PROMOTED


def test_not_running(primary: Node) -> None:
    primary.pg.running = False
    assert primary.run("monitor") == ocf.NOT_RUNNING


# --- standbys --------------------------------------------------------------------------------
def test_a_streaming_standby_publishes_its_receiver_once_two_monitors_agree(standby: Node,
                                                                           cluster: FakeCluster) -> None:
    standby.pg.lag = (3 << 20) + 5
    assert standby.run("monitor") == ocf.SUCCESS
    assert names.ATTR_RECEIVER not in cluster.attrs["node1"]
    assert cluster.attrs["node1"][names.ATTR_LAG] == str(3 << 20)
    assert standby.run("monitor") == ocf.SUCCESS
    assert cluster.attrs["node1"][names.ATTR_RECEIVER] == "streaming"
    standby.pg.receiver = "stopped"
    cluster.attrs["node2"][names.ATTR_STATUS] = decide.PRI
    standby.run("monitor")
    assert cluster.attrs["node1"][names.ATTR_RECEIVER] == "streaming"       # one "stopped" is not enough
    standby.run("monitor")
    assert cluster.attrs["node1"][names.ATTR_RECEIVER] == "stopped"


def test_a_receiver_still_connecting_restarts_once_the_primary_answers(standby: Node, cluster: FakeCluster,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """After a failover its SYN left before the writer VIP moved: it would wait for TCP's resend."""
    cluster.attrs["node2"][names.ATTR_STATUS] = decide.PRI
    standby.pg.receiver = "stopped"              # pg_stat_wal_receiver has no row until it is connected
    receiver = subprocess.Popen(["sleep", "30"])
    standby.pg.receiver_pid = receiver.pid
    standby.source_up = False                    # the writer VIP has not moved yet: leave it be
    assert standby.run("monitor") == ocf.SUCCESS
    assert receiver.poll() is None
    standby.source_up = True
    assert standby.run("monitor") == ocf.SUCCESS
    assert receiver.wait(timeout=5) == -15
    assert "WAL receiver restarted: not streaming while the primary behind master_ip answers" in \
        capsys.readouterr().err


@pytest.mark.parametrize("status", ["streaming", "waiting"])
def test_a_connected_receiver_is_never_restarted(standby: Node, cluster: FakeCluster,
                                                monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    """Streaming, or waiting for the startup process at a timeline switch."""
    cluster.attrs["node2"][names.ATTR_STATUS] = decide.PRI
    monkeypatch.setattr(rewind, "reachable", lambda *a, **kw: pytest.fail("probed"))
    standby.pg.receiver = status
    standby.pg.receiver_pid = 1
    assert standby.run("monitor") == ocf.SUCCESS


def test_check_wal_receiver_off_publishes_nothing(standby: Node, cluster: FakeCluster) -> None:
    standby.params["check_wal_receiver"] = "false"
    standby.run("monitor")
    standby.run("monitor")
    assert cluster.writes == []


def test_a_held_primary_is_a_quiet_standby(standby: Node, cluster: FakeCluster) -> None:
    standby.pg.in_recovery = False
    standby.save_state(held=True)
    assert standby.run("monitor") == ocf.SUCCESS and cluster.writes == []


def published(cluster: FakeCluster, node: str, lsn: int, status: str = decide.HS_ALONE, timeline: int = 3) -> None:
    cluster.attrs[node].update({names.ATTR_STATUS: status, names.ATTR_LSN: decide.lsn_attr(lsn),
                                names.ATTR_TIMELINE: str(timeline)})


def leaderless(standby: Node, cluster: FakeCluster) -> None:
    standby.pg.receiver = "stopped"
    standby.pg.lsn = "0/5000060"
    for n in ("node1", "node2"):
        cluster.attrs[n][names.ATTR_DATA] = decide.STREAMING_SYNC if n == "node1" else decide.STREAMING_POTENTIAL


def test_an_election_is_held_at_once_when_everybody_published(standby: Node, cluster: FakeCluster,
                                                              capsys: pytest.CaptureFixture) -> None:
    standby.params["rep_mode"] = "async"
    leaderless(standby, cluster)
    published(cluster, "node2", 0x5000060)
    published(cluster, "node3", 0x4000000)
    assert standby.run("monitor") == ocf.SUCCESS
    assert [cluster.attrs[n][SCORE] for n in NODES] == ["100", "99", "98"]        # ties: node_list order
    assert "election ranks ['node1', 'node2', 'node3']" in capsys.readouterr().err
    assert cluster.attrs["node1"][names.ATTR_LSN] == decide.lsn_attr(0x5000060)


def test_sync_mode_elects_only_current_data(standby: Node, cluster: FakeCluster) -> None:
    leaderless(standby, cluster)
    published(cluster, "node2", 0x6000000)      # more WAL, but it was only the potential standby
    published(cluster, "node3", 0x4000000)
    standby.run("monitor")
    assert [cluster.attrs[n][SCORE] for n in NODES] == ["100", "-INFINITY", "-INFINITY"]


def test_an_election_waits_for_a_node_that_has_not_published(standby: Node, cluster: FakeCluster) -> None:
    leaderless(standby, cluster)
    published(cluster, "node2", 0x5000060)
    cluster.online = ["node1", "node2"]          # node3 is away: xlog_check_count (2) rounds
    standby.run("monitor")
    assert SCORE not in cluster.attrs["node1"] and standby.state().rounds == 1
    standby.run("monitor")
    assert cluster.attrs["node1"][SCORE] == "100" and standby.state().rounds == 2


def test_an_election_waits_longer_for_a_starting_node(standby: Node, cluster: FakeCluster,
                                                      capsys: pytest.CaptureFixture) -> None:
    leaderless(standby, cluster)
    published(cluster, "node2", 0x5000060)       # node3 online without any status: starting
    for _ in range(9):
        standby.run("monitor")
        assert SCORE not in cluster.attrs["node1"]
    assert "waiting for node3 to publish its position" in capsys.readouterr().err
    standby.run("monitor")
    assert cluster.attrs["node1"][SCORE] == "100" and standby.state().rounds == 10


@pytest.mark.parametrize("attrs", [
    {"node2": {names.ATTR_STATUS: decide.PRI}},              # a primary runs
    {"node3": {SCORE: "100"}},                               # somebody is promotable already
])
def test_no_election_with_a_leader(standby: Node, cluster: FakeCluster, attrs: dict) -> None:
    leaderless(standby, cluster)
    standby.save_state(rounds=4)
    for node, values in attrs.items():
        cluster.attrs[node].update(values)
    cluster.writes.clear()
    standby.run("monitor")
    assert standby.state().rounds == 0
    assert not any(w[0] == "score" or w[2] in (names.ATTR_LSN, names.ATTR_TIMELINE) for w in cluster.writes)


def test_streaming_resets_the_rounds(standby: Node) -> None:
    standby.save_state(rounds=3)
    standby.run("monitor")
    assert standby.state().rounds == 0


@pytest.mark.parametrize("auto_rewind, reason", [
    ("false", "repair with cls_repair_by_pg_rewind: timeline 3 forked"),
    ("true", "timeline 3 forked: WAL to 0/5000060, past 0/4000000 (timeline 4): its start rewinds it"),
])
def test_the_fork_guard_catches_a_running_standby(standby: Node, cluster: FakeCluster, capsys: pytest.CaptureFixture,
                                                  auto_rewind: str, reason: str) -> None:
    standby.params["auto_rewind"] = auto_rewind
    standby.pg.receiver = "stopped"
    cluster.props[names.REPL_INFO] = "node2|4|0/4000000"       # this node's timeline 3 went to 0/5000060
    assert standby.run("monitor") == ocf.ERR_GENERIC
    assert reason in capsys.readouterr().err


def test_a_forked_standby_fails_its_monitor_then_its_restart_rewinds(standby: Node, cluster: FakeCluster,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """Pacemaker's recovery of the failed monitor: stop, then start on the same node, which rewinds."""
    standby.pg.receiver = "stopped"
    cluster.props[names.REPL_INFO] = "node2|4|0/4000000"
    assert standby.run("monitor") == ocf.ERR_GENERIC
    # Stopped, the checkpoint no longer shows the fork: the verdict the monitor remembered still does.
    assert standby.run("stop") == ocf.SUCCESS
    standby.pg.control["Latest checkpoint location"] = "0/3000000"
    kept = rewind.Kept("/var/lib/pha/rewind/x", 1, 16777216, False, "/var/lib/pha/rewind/x/summary.txt", 2)
    standby.rewind_result = rewind.Result(rewind.REWIND, "timeline 3 forked", kept)
    assert standby.run("start") == ocf.SUCCESS
    assert len(standby.rewinds) == 1 and standby.rewinds[0]["info"].timeline == 4
    assert not Path(standby.ctx.fork_marker).exists() and standby.pg.standby_signal is True
    assert cluster.attrs["node1"][names.ATTR_REWOUND].endswith(" 16777216 /var/lib/pha/rewind/x")


def test_a_pacemaker_cli_error_never_fails_a_standby(standby: Node, cluster: FakeCluster,
                                                     capsys: pytest.CaptureFixture) -> None:
    cluster.broken.add("set_node_attr")
    assert standby.run("monitor") == ocf.SUCCESS
    assert "the next one retries" in capsys.readouterr().err


def test_a_standby_that_does_not_answer_fails(standby: Node) -> None:
    standby.pg.connect_error = psycopg.OperationalError("connection failed: server closed the connection")
    assert standby.run("monitor") == ocf.ERR_GENERIC


# --- adopting a primary the agent did not start (issue 14) -------------------------------------------
def test_a_primary_without_the_include_gets_it_and_one_reload(primary: Node, capsys: pytest.CaptureFixture) -> None:
    primary.pg.conf_source = None          # synchronous_standby_names comes from no file: pha.conf is not read
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert ("ensure_included",) in primary.pg.calls and primary.pg.conf is not None
    assert primary.pg.conf["synchronous_standby_names"] == WANTED      # what the server had, kept
    assert sum("pg_reload_conf" in q for q in primary.pg.executed) == 1
    assert "pha.conf was not in effect" in capsys.readouterr().err
    # Still not in effect at the next monitor (reload pending): no second attempt within a minute.
    primary.pg.executed.clear()
    primary.pg.calls.clear()
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert ("ensure_included",) not in primary.pg.calls and not any("pg_reload_conf" in q for q in primary.pg.executed)


def test_the_probe_of_an_adopted_primary_includes_pha_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           cluster: FakeCluster) -> None:
    node = Node(tmp_path, monkeypatch, cluster)          # no state file: PostgreSQL was started by hand
    node.pg.in_recovery = False
    node.pg.conf_source = str(Path(node.pg.pgdata) / "postgresql.conf")
    node.pg.sync_names = ""
    assert node.run("monitor", interval=0) == ocf.RUNNING_PROMOTED
    assert ("ensure_included",) in node.pg.calls and any("pg_reload_conf" in q for q in node.pg.executed)


def test_a_primary_whose_pha_conf_is_in_effect_is_left_alone(primary: Node) -> None:
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert ("ensure_included",) not in primary.pg.calls and not any("pg_reload_conf" in q for q in primary.pg.executed)


def test_a_server_reading_another_config_file_is_named_not_edited(primary: Node,
                                                                  capsys: pytest.CaptureFixture) -> None:
    primary.pg.conf_source = None
    primary.pg.config_file = "/etc/postgresql/16/main/postgresql.conf"
    assert primary.run("monitor") == ocf.RUNNING_PROMOTED
    assert ("ensure_included",) not in primary.pg.calls
    assert "reads /etc/postgresql/16/main/postgresql.conf, not parameter config=" in capsys.readouterr().err
