"""The pgsql agent's pure decisions."""
from __future__ import annotations

import pytest

from pha.pgsql import decide as d

pytestmark = pytest.mark.unit
NODES = ["node1", "node2", "node3"]


def test_lsn_round_trip_and_attr() -> None:
    assert d.parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert d.format_lsn(d.parse_lsn("0/3000060")) == "0/3000060"
    assert d.lsn_attr(d.parse_lsn("1/0")) == "0000000100000000"
    assert sorted([d.lsn_attr(5), d.lsn_attr(1 << 33)]) == [d.lsn_attr(5), d.lsn_attr(1 << 33)]
    with pytest.raises(ValueError):
        d.parse_lsn("nope")


def test_repl_info() -> None:
    info = d.ReplInfo("node2", 3, d.parse_lsn("0/5000A0"))
    assert info.render() == "node2|3|0/5000A0"
    assert d.ReplInfo.parse("node2|3|0/5000A0") == info
    assert d.ReplInfo.parse("") is None and d.ReplInfo.parse(None) is None
    with pytest.raises(ValueError):
        d.ReplInfo.parse("node2|3")


def test_history_parsing() -> None:
    text = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000A0\tno recovery target specified\n"
    assert d.parse_history(text) == {1: 0x3000158, 2: 0x5000A0}


@pytest.mark.parametrize("tl, lsn, expect", [
    (3, 0x9000000, None),            # on the cluster's timeline
    (4, 0x9000000, None),            # ahead: not this check's business
    (2, 0x5000A0, None),             # left exactly at the switch point
    (2, 0x400000, None),             # behind it: can follow
    (2, 0x6000000, "timeline 2 forked"),
    (1, 0x3000158, None),            # older timeline, from history
    (1, 0x3000200, "timeline 1 forked"),
])
def test_fork_guard(tl, lsn, expect) -> None:
    info = d.ReplInfo("node2", 3, 0x5000A0)
    why = d.forked(tl, lsn, info, {1: 0x3000158, 2: 0x5000A0})
    assert (why is None) if expect is None else expect in why


def test_fork_guard_without_history_or_info() -> None:
    assert d.forked(1, 10**9, None) is None
    assert d.forked(1, 10**9, d.ReplInfo("n", 3, 5)) is None     # unknown: let PostgreSQL judge
    assert "forked" in d.forked(2, 6, d.ReplInfo("n", 3, 5))


SWITCH = 0x4035670      # measured: a primary demoted and stopped while cut off, timeline 2 left here
CUT_OFF_CONTROL = {"Latest checkpoint's TimeLineID": "2", "Latest checkpoint location": "0/4035630",
                   "Minimum recovery ending location": "0/40356A8", "Min recovery ending loc's timeline": "2"}


def test_stopped_wal_reads_pg_controldata() -> None:
    assert d.stopped_wal(CUT_OFF_CONTROL) == d.StoppedWal(2, 0x4035630, (2, 0x40356A8))
    assert d.stopped_wal(CUT_OFF_CONTROL, wal_timeline=3).timeline == 3
    assert d.stopped_wal({"Latest checkpoint location": "0/5000028", "Minimum recovery ending location": "0/0",
                          "Min recovery ending loc's timeline": "0"}) == d.StoppedWal(0, 0x5000028, None)


@pytest.mark.parametrize("wal, expect", [
    (d.StoppedWal(2, SWITCH - 0x40, None), None),                         # checkpoint before the switch
    (d.StoppedWal(2, SWITCH, None), "checkpoint at 0/4035670, not before"),  # its record reaches past it
    (d.StoppedWal(2, SWITCH + 0x40, None), "checkpoint at"),
    (d.StoppedWal(2, SWITCH - 0x40, (2, SWITCH)), None),                  # replayed up to the switch: follows
    (d.StoppedWal(2, SWITCH - 0x40, (2, 0x40356A8)), "minimum recovery point 0/40356A8, past 0/4035670"),
    (d.StoppedWal(2, SWITCH - 0x40, (3, 0x40356A8)), None),               # on the cluster's timeline
    (d.StoppedWal(3, SWITCH + 0x40, (3, SWITCH + 0x40)), None),
    (d.StoppedWal(1, 0x3000158, None), "timeline 1 forked"),               # older timeline, from history
    (d.StoppedWal(1, 0x3000100, (1, 0x3000200)), "timeline 1 forked: minimum recovery point"),
])
def test_stopped_fork_guard(wal, expect) -> None:
    """PostgreSQL's own checks at a standby's start: checkpoint before the switch point,
    minimum recovery point not past it."""
    why = d.stopped_forked(wal, d.ReplInfo("node2", 3, SWITCH), {1: 0x3000158, 2: SWITCH})
    assert (why is None) if expect is None else expect in why
    assert d.stopped_forked(wal, None) is None


def test_a_node_cut_off_then_stopped_is_forked() -> None:
    """The case CI met: demoted while cut off, stopped, minimum recovery point past the switch."""
    assert d.stopped_forked(d.stopped_wal(CUT_OFF_CONTROL), d.ReplInfo("node2", 3, SWITCH))


def rows(*spec):
    return [d.Standby(n, st, ss, lag) for n, st, ss, lag in spec]


def test_sync_mode_views() -> None:
    views = d.standby_views(NODES, "node1", rows(("node2", "streaming", "sync", 0),
                                                 ("node3", "streaming", "potential", 0)), sync_mode=True)
    assert views["node2"] == d.StandbyView(d.HS_SYNC, d.STREAMING_SYNC, d.CANDIDATE_SCORE)
    assert views["node3"] == d.StandbyView(d.HS_POTENTIAL, d.STREAMING_POTENTIAL, -d.INFINITY)
    assert "node1" not in views


def test_disconnected_and_catching_up() -> None:
    views = d.standby_views(NODES, "node1", rows(("node2", "catchup", "async", 10**6)), sync_mode=False)
    assert views["node2"] == d.StandbyView(d.HS_ASYNC, "CATCHUP|ASYNC", -d.INFINITY)
    assert views["node3"] == d.StandbyView(d.HS_ALONE, d.DISCONNECT, -d.INFINITY)


def test_a_disconnected_node_whose_resource_is_stopped_is_stop() -> None:
    views = d.standby_views(NODES, "node1", rows(("node2", "catchup", "async", 10**6)), sync_mode=False)
    marked = d.mark_stopped(views, running=["node1"])
    assert marked["node3"] == d.StandbyView(d.STOP, d.DISCONNECT, -d.INFINITY)
    assert marked["node2"] == views["node2"]          # connected: its resource runs, whatever crm_mon says
    assert d.mark_stopped(views, running=["node1", "node3"]) == views


def test_async_mode_ranks_and_lag() -> None:
    views = d.standby_views(NODES, "node1", rows(("node2", "streaming", "async", 100),
                                                 ("node3", "streaming", "async", 10**9)),
                            sync_mode=False, max_lag=10**6)
    assert views["node2"].score == d.CANDIDATE_SCORE and views["node2"].data_status == d.STREAMING_ASYNC
    assert views["node3"].score == -d.INFINITY


def test_sync_names() -> None:
    assert d.sync_standby_names(NODES, "node2") == 'FIRST 1 ("node1", "node3")'
    assert d.sync_standby_names(["node1"], "node1") == ""


@pytest.mark.parametrize("quorate, lock, seconds, ok", [
    (True, None, 5, True),
    (False, None, 5, False),     # partitioned: never go async
    (True, False, 5, False),     # lost the lock
    (True, True, 5, True),
    (True, None, 1, False),      # within the grace period
    (False, True, 1, False),
])
def test_async_fallback(quorate, lock, seconds, ok) -> None:
    assert d.may_fall_back_to_async(quorate, lock, seconds, grace=3) is ok
    assert d.may_fall_back_to_async(quorate, lock, seconds + 100) is (quorate and lock is not False)


WANTED = 'FIRST 1 ("node2", "node3")'


@pytest.mark.parametrize("streaming, current, may_go_async, target", [
    (1, "", True, WANTED),             # a standby streams again: back to sync
    (2, "", False, WANTED),
    (1, WANTED, True, None),           # already sync: nothing to write
    (0, WANTED, True, ""),             # nobody streams and it is safe: async
    (0, WANTED, False, None),          # not safe (no quorum, lock, grace): stay sync, writes block
    (0, "", True, None),               # already async
])
def test_sync_target(streaming, current, may_go_async, target) -> None:
    asked = []

    def ask() -> bool:
        asked.append(1)
        return may_go_async
    assert d.sync_target(streaming, current, WANTED, ask) == target
    assert bool(asked) == (streaming == 0 and current != "")   # the Pacemaker call only when needed


@pytest.mark.parametrize("value, text", [
    (d.INFINITY, "INFINITY"), (d.INFINITY + 5, "INFINITY"), (-d.INFINITY, "-INFINITY"),
    (-d.INFINITY - 1, "-INFINITY"), (1000, "1000"), (0, "0"), (-3, "-3")])
def test_score_text(value, text) -> None:
    assert d.score_text(value) == text


@pytest.mark.parametrize("score, ok", [
    (None, False), ("-INFINITY", False), ("INFINITY", True), ("+INFINITY", True),
    ("1", True), ("100", True), ("0", False), ("-5", False)])
def test_promotable(score, ok) -> None:
    assert d.promotable(score) is ok


def test_cluster_views_add_the_primary_and_mark_stopped_nodes() -> None:
    views = d.cluster_views(NODES, "node1", rows(("node2", "streaming", "sync", 0)), True, 0, ["node1", "node2"])
    assert views == {"node1": d.StandbyView(d.PRI, d.LATEST, d.PRIMARY_SCORE),
                     "node2": d.StandbyView(d.HS_SYNC, d.STREAMING_SYNC, d.CANDIDATE_SCORE),
                     "node3": d.StandbyView(d.STOP, d.DISCONNECT, -d.INFINITY)}


SCORE = "master-pgsql"


@pytest.mark.parametrize("actual, expected", [
    ({}, [("node2", "pgsql-status", "HS:sync", "reboot"), ("node2", "pgsql-data-status", "STREAMING|SYNC", "forever"),
          ("node2", SCORE, "100", "reboot")]),
    ({"node2": {"pgsql-status": "HS:sync", "pgsql-data-status": "STREAMING|SYNC", SCORE: "100"}}, []),
    ({"node2": {"pgsql-status": "HS:sync", "pgsql-data-status": "STREAMING|SYNC", SCORE: "-INFINITY"}},
     [("node2", SCORE, "100", "reboot")]),
    ({"node2": {"pgsql-status": "HS:alone", "pgsql-data-status": "STREAMING|SYNC", SCORE: "100"}},
     [("node2", "pgsql-status", "HS:sync", "reboot")]),
    ({"node2": {"pgsql-status": "HS:sync", "pgsql-data-status": "DISCONNECT", SCORE: "100"}},
     [("node2", "pgsql-data-status", "STREAMING|SYNC", "forever")]),
])
def test_attribute_writes_are_the_differences(actual, expected) -> None:
    views = {"node2": d.StandbyView(d.HS_SYNC, d.STREAMING_SYNC, d.CANDIDATE_SCORE)}
    assert d.attribute_writes(views, actual, SCORE) == [d.Write(*w) for w in expected]


def test_minus_infinity_is_written_as_pacemaker_shows_it() -> None:
    views = {"node3": d.StandbyView(d.STOP, d.DISCONNECT, -d.INFINITY)}
    actual = {"node3": {"pgsql-status": "STOP", "pgsql-data-status": "DISCONNECT", SCORE: "-INFINITY"}}
    assert d.attribute_writes(views, actual, SCORE) == []


@pytest.mark.parametrize("attrs, online, known", [
    ({}, NODES, False),
    ({"node2": {"pgsql-status": "PRI"}}, NODES, True),              # another node is the primary
    ({"node1": {"pgsql-status": "PRI"}}, NODES, False),             # this node's own stale PRI does not count
    ({"node3": {SCORE: "100"}}, NODES, True),                        # promotable already
    ({"node3": {SCORE: "100"}}, ["node1", "node2"], False),          # ... but offline
    ({"node1": {SCORE: "INFINITY"}}, NODES, True),                   # this node itself is promotable
    ({"node2": {SCORE: "-INFINITY"}, "node3": {SCORE: "0"}}, NODES, False),
])
def test_leader_known(attrs, online, known) -> None:
    assert d.leader_known(NODES, "node1", attrs, online, SCORE) is known


def test_election_pool() -> None:
    me = d.Candidate("node1", 3, 10, d.STREAMING_SYNC)
    attrs = {"node2": {"pgsql-status": "HS:alone", "pgsql-xlog-loc": d.lsn_attr(0x500), "pgsql-timeline": "3",
                       "pgsql-data-status": "STREAMING|POTENTIAL"},
             "node3": {}, "node4": {"pgsql-status": "HS:alone", "pgsql-xlog-loc": "10"},
             "node5": {"pgsql-status": "STOP"}, "node6": {"pgsql-status": "HS:async"}}
    nodes = [f"node{i}" for i in range(1, 8)]
    candidates, starting = d.election_pool(nodes, me, attrs, online=["node1", "node2", "node3", "node5",
                                                                        "node6", "node7"])
    assert candidates == [me, d.Candidate("node2", 3, 0x500, "STREAMING|POTENTIAL")]   # node4 offline
    assert starting == ["node3", "node7"]    # online without any status; node6 has not published a position


@pytest.mark.parametrize("rounds, published, starting, wait", [
    (1, 3, [], None),                       # everybody published: elect at once
    (1, 2, [], d.WAIT_MISSING),             # one missing: xlog_check_count rounds
    (2, 2, [], None),
    (1, 2, ["node3"], d.WAIT_STARTING),     # a node is starting: 5 x xlog_check_count rounds
    (9, 2, ["node3"], d.WAIT_STARTING),
    (10, 2, ["node3"], None),
    (10, 1, ["node3"], None),
])
def test_election_gating(rounds, published, starting, wait) -> None:
    assert d.election_wait(rounds, 2, published, 3, starting) == wait


@pytest.mark.parametrize("info, tl, clean, held", [
    (d.ReplInfo("node1", 3, 5), 3, True, True),
    (d.ReplInfo("node1", 3, 5), 3, False, False),     # crashed: it must replay as a standby
    (d.ReplInfo("node1", 3, 5), 2, True, False),      # not on the recorded timeline
    (d.ReplInfo("node2", 3, 5), 3, True, False),      # another node is the recorded primary
    (None, 3, True, False),
])
def test_held_primary(info, tl, clean, held) -> None:
    assert d.held_primary(info, "node1", tl, clean) is held


@pytest.mark.parametrize("attrs, sync, refusal", [
    ({}, True, None),
    ({"node1": {"pgsql-data-status": "STREAMING|SYNC"}}, True, None),
    ({"node1": {"pgsql-data-status": "LATEST"}}, True, None),
    ({"node1": {"pgsql-data-status": "STREAMING|POTENTIAL"}}, True,
     d.Refusal("not promoting: this node's data is STREAMING|POTENTIAL, not the sync standby's", True)),
    ({"node1": {"pgsql-data-status": "DISCONNECT"}}, False, None),     # async: any data may win
    ({"node3": {"pgsql-status": "PRI"}}, False, d.Refusal("not promoting: node3 is still the primary", False)),
    ({"node1": {"pgsql-status": "PRI"}}, False, None),
])
def test_promotion_refusal(attrs, sync, refusal) -> None:
    assert d.promotion_refusal("node1", NODES, attrs, sync) == refusal


POTENTIAL_ME = {"node1": {"pgsql-data-status": "STREAMING|POTENTIAL"}}


@pytest.mark.parametrize("peer_data, caught_up_with, refused", [
    ("STREAMING|SYNC", ["node2"], False),        # the sync standby the primary marked has no more than us
    ("LATEST", ["node2"], False),
    ("STREAMING|SYNC", [], True),                # not asked: it may have more
    ("STREAMING|POTENTIAL", ["node2"], True),    # a peer no more current than us vouches for nothing
    ("DISCONNECT", ["node2"], True),
])
def test_a_node_that_caught_up_with_the_sync_standby_may_be_promoted(peer_data, caught_up_with, refused) -> None:
    attrs = {**POTENTIAL_ME, "node2": {"pgsql-data-status": peer_data}}
    assert (d.promotion_refusal("node1", NODES, attrs, True, caught_up_with) is not None) is refused


def test_catching_up_never_excuses_a_running_primary() -> None:
    attrs = {"node2": {"pgsql-data-status": "STREAMING|SYNC"}, "node3": {"pgsql-status": "PRI"}}
    assert d.promotion_refusal("node1", NODES, attrs, True, ["node2"]) == \
        d.Refusal("not promoting: node3 is still the primary", False)


P = d.Position


@pytest.mark.parametrize("peers, best", [
    ({}, None),
    ({"node2": P(3, 100), "node3": P(3, 100)}, None),          # the same WAL: nothing to fetch
    ({"node2": P(3, 99), "node3": None}, None),                # behind, or not asked
    ({"node2": P(3, 101), "node3": P(3, 150)}, "node3"),       # the most WAL
    ({"node2": P(3, 150), "node3": P(3, 150)}, "node2"),       # ties by node_list order
    ({"node2": P(4, 10), "node3": P(3, 500)}, "node2"),        # a newer timeline
    ({"node2": P(2, 900)}, None),                              # an older timeline's WAL forked off
])
def test_most_advanced_peer(peers, best) -> None:
    assert d.most_advanced_peer(P(3, 100), peers, NODES) == best


def test_a_position_reads_as_an_lsn_and_a_timeline() -> None:
    assert str(P(4, 0x5000060)) == "0/5000060 on timeline 4"


@pytest.mark.parametrize("running, follows, path, asked", [
    (False, True, d.DEMOTE_NOT_RUNNING, False),
    (True, True, d.DEMOTE_BY_STOPPING, True),
    (True, False, d.DEMOTE_TO_STANDBY, True),
])
def test_demote_path(running, follows, path, asked) -> None:
    calls = []
    assert d.demote_path(running, lambda: calls.append(1) or follows) == path
    assert bool(calls) is asked


@pytest.mark.parametrize("target_role, shutdown, follows", [
    ("Stopped", False, True), (None, True, True), ("Started", False, False), (None, False, False)])
def test_stop_follows_demote(target_role, shutdown, follows) -> None:
    assert d.stop_follows_demote(target_role, shutdown) is follows


@pytest.mark.parametrize("sqlstate, message, busy", [
    ("53300", "", "53300"),
    ("57P03", "", "57P03"),
    ("57P01", "terminating connection due to administrator command", None),
    ("28000", "too many clients", None),            # the SQLSTATE wins over the text
    (None, 'connection failed: ... failed: FATAL:  sorry, too many clients already', "53300"),
    (None, "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute", "53300"),
    (None, "FATAL:  the database system is starting up", "57P03"),
    (None, "FATAL:  the database system is shutting down", "57P03"),
    (None, "FATAL:  the database system is not yet accepting connections", "57P03"),
    (None, "FATAL:  the database system is in recovery mode", None),   # a crash: PostgreSQL's own failure
    (None, 'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file', None),
    (None, "", None),
])
def test_busy_sqlstate(sqlstate, message, busy) -> None:
    assert d.busy_sqlstate(sqlstate, message) == busy


def test_election() -> None:
    c = [d.Candidate("node1", 2, 100, None), d.Candidate("node2", 2, 300, None),
         d.Candidate("node3", 2, 300, None)]
    assert d.elect(c, NODES, sync_mode=False) == ["node2", "node3", "node1"]     # tie: node_list order
    c.append(d.Candidate("node4", 3, 1, None))
    assert d.elect(c, NODES + ["node4"], sync_mode=False)[0] == "node4"          # newer timeline wins


def test_election_in_sync_mode_keeps_to_current_data() -> None:
    c = [d.Candidate("node1", 2, 999, d.STREAMING_POTENTIAL), d.Candidate("node2", 2, 300, d.STREAMING_SYNC),
         d.Candidate("node3", 2, 300, d.DISCONNECT)]
    ranking = d.elect(c, NODES, sync_mode=True)
    assert ranking == ["node2"]
    assert d.election_score("node2", ranking) == d.CANDIDATE_SCORE
    assert d.election_score("node1", ranking) == -d.INFINITY
    fresh = [d.Candidate(n, 1, 5, None) for n in NODES]
    assert d.elect(fresh, NODES, sync_mode=True) == NODES


@pytest.mark.parametrize("mine, current, probe, expect", [
    ("node1|3|0/3000000", "node1|3|0/3000000", False, False),   # nothing to do
    ("node1|3|0/3000000", None, False, True),                   # lost: written again
    ("node1|3|0/3000000", "node2|2|0/2000000", False, True),    # an older record came back
    ("node1|3|0/3000000", "garbage", False, True),               # malformed
    ("node1|3|0/3000000", "node2|3|0/3000000", False, False),   # same timeline, another node: not ours
    ("node1|3|0/3000000", "node2|4|0/4000000", False, False),   # a later promotion
    ("node1|3|0/3000000", None, True, False),                   # never from a probe
    (None, "node2|2|0/2000000", False, False),                  # this primary wrote none
])
def test_may_reassert_repl_info(mine, current, probe, expect) -> None:
    assert d.may_reassert_repl_info(mine, current, probe) is expect
