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


@pytest.mark.parametrize("streaming, quorate, lock, seconds, ok", [
    (0, True, None, 5, True),
    (1, True, None, 5, False),      # a standby streams: stay sync
    (0, False, None, 5, False),     # partitioned: never go async
    (0, True, False, 5, False),     # lost the lock
    (0, True, True, 5, True),
    (0, True, None, 1, False),      # within the grace period
])
def test_async_fallback(streaming, quorate, lock, seconds, ok) -> None:
    assert d.may_fall_back_to_async(streaming, quorate, lock, seconds, grace=3) is ok


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
