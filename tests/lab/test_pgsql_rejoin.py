"""ocf:pha:pgsql, sync mode, automatic rewind (auto_rewind, issue 11): kill -9 of the
primary's postmaster under a writer through the writer VIP, several rounds. Each time
the old primary must stream again with no manual command and no acknowledged insert
may be lost; when it forked, its start rewound it (pgsql-rewound names the kept WAL and
its summary.txt). The cluster restarts a failed instance in place (migration-threshold
3): the time from the kill to healthy again is measured. One lab for the module.
"""
from __future__ import annotations

import json
import sys
import time

import pytest

from pgsql_cluster import CLONE, create_pgsql_cluster, primary_of, status, wait_for, wait_healthy
from pha.lab import config
from pha.pgsql import names
from writer import Writer

pytestmark = pytest.mark.lab
PGDATA = config.PGDATA
ROUNDS = 3
HEALTHY_WITHIN = 90.0
# A crash and the fork its monitor then finds are 2 failures; migration-threshold=3 restarts in
# place until a 3rd within failure-timeout (20 s after the last one) bans the node: the rounds
# are spaced so that each starts with no failure counted (what a second crash soon after would
# meet is the threshold at work, not a rejoin).
FAILURES_EXPIRE = 25.0
_healthy_at = [0.0]         # time.monotonic() when the last fault of this module was over


def failures_expired() -> None:
    """Wait until the failures of the previous fault no longer count (failure-timeout)."""
    time.sleep(max(0.0, _healthy_at[0] + FAILURES_EXPIRE - time.monotonic()))


def fault_over() -> float:
    """Note that the cluster is healthy again (now); return time.monotonic()."""
    _healthy_at[0] = time.monotonic()
    return _healthy_at[0]


@pytest.fixture(scope="module")
def rejoin_cluster(lab):
    keep = lab.state_dir / "rewind"        # per lab, removed with it; nodes see the host's /var/tmp
    timings = create_pgsql_cluster(lab, rep_mode="sync", migration_threshold=3, rewind_keep_dir=str(keep))
    print(f"pgsql cluster healthy {timings['healthy']:.1f}s after the pcs push")
    return lab


def rewound_since(lab, node: str, moment: float) -> tuple[str, int, str] | None:
    """(time, bytes, directory) of pgsql-rewound on `node` when written after `moment` (wall clock)."""
    value = status(lab).attribute(node, names.ATTR_REWOUND) or ""
    parts = value.split(" ", 2)
    if len(parts) != 3:
        return None
    when = time.mktime(time.strptime(parts[0], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    return (parts[0], int(parts[1]), parts[2]) if when >= int(moment) else None


def test_kill_9_of_the_primary_rejoins_by_itself(rejoin_cluster, record_property) -> None:
    lab = rejoin_cluster
    outcomes = []
    for round_no in range(ROUNDS):
        failures_expired()
        old = primary_of(lab)
        writer = Writer(lab, lab.vip(0), table=f"pha_rejoin{round_no}", interval=0.02).start()
        try:
            time.sleep(2)
            pid = lab.exec(old, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
            killed = writer.mark()
            t0 = time.monotonic()
            lab.exec(old, ["kill", "-9", pid])
            new, _ = wait_for("a new primary", lambda: next(
                (n for n in status(lab).promoted_nodes(CLONE) if n != old), None), timeout=60)
            promoted_after = time.monotonic() - t0
            # The writer goes on while the old primary rejoins: no manual command anywhere.
            wait_healthy(lab, timeout=HEALTHY_WITHIN, rep_mode="sync")
            healthy_after = fault_over() - t0
            assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
            result = writer.stop_and_check(new)
        finally:
            writer.stop()
        assert result.lost == [] and not result.interleaved, result.summary()
        view = status(lab)
        assert old in view.unpromoted_nodes(CLONE)
        assert (view.attribute(old, names.ATTR_DATA) or "").startswith("STREAMING")
        rewound = rewound_since(lab, old, killed)
        if rewound:
            _, size, kept = rewound
            summary = lab.exec(old, ["cat", f"{kept}/summary.txt"]).stdout
            assert summary.startswith("# WAL this node wrote on timeline") and "commit(s)" in summary
            assert lab.exec(old, ["ls", kept]).stdout.count("\n") >= 2       # a segment and the summary
        outcome = (f"round {round_no + 1}: kill -9 of {old}: {new} promoted after {promoted_after:.1f}s, "
                   f"healthy after {healthy_after:.1f}s, {'rewound ' + str(rewound[1]) + ' B' if rewound else 'no rewind'}"
                   f"; writer {result.summary()}")
        print(outcome)
        outcomes.append((healthy_after, bool(rewound)))
        record_property(f"round{round_no + 1}_healthy_after_s", round(healthy_after, 1))
        record_property(f"round{round_no + 1}_rewound", bool(rewound))
    print(f"rewinds: {sum(r for _, r in outcomes)} of {len(outcomes)}; healthy after "
          f"{', '.join(f'{h:.1f}s' for h, _ in outcomes)}")


def test_cut_of_the_primary_node_then_heal_rejoins_by_itself(rejoin_cluster, record_property) -> None:
    """Cut off, the old primary may write WAL its commits wait on (never acknowledged):
    after heal it has then forked, and its restart rewinds it."""
    lab = rejoin_cluster
    failures_expired()
    old = primary_of(lab)
    majority = [n for n in lab.nodes if n != old]
    writer = Writer(lab, lab.vip(0), table="pha_rejoin_cut", interval=0.02).start()
    try:
        time.sleep(2)
        writer.mark()
        lab.cut(old)
        new, _ = wait_for("the majority promotes", lambda: next(
            (n for n in status(lab, majority).promoted_nodes(CLONE) if n != old), None), timeout=60)
        assert writer.wait_ack_after(time.time(), timeout=30) is not None, writer.tail()
        wait_for(f"{old} stopping its primary (no quorum)", lambda: lab.exec(
            old, ["test", "-e", f"{PGDATA}/postmaster.pid"], check=False).returncode != 0, timeout=60)
        healed = time.time()
        t0 = time.monotonic()
        lab.heal(old)
        lab.wait_online(timeout=60, observer=majority[0])
        wait_healthy(lab, timeout=HEALTHY_WITHIN, rep_mode="sync")
        healthy_after = fault_over() - t0
        result = writer.stop_and_check(new)
    finally:
        writer.stop()
        lab.heal(old)
    assert result.lost == [] and not result.interleaved, result.summary()
    rewound = rewound_since(lab, old, healed)
    if rewound:
        summary = lab.exec(old, ["cat", f"{rewound[2]}/summary.txt"]).stdout
        assert "commit(s), " in summary
        print(summary)
    print(f"cut of {old}, heal: healthy {healthy_after:.1f}s after the heal, "
          f"{'rewound ' + str(rewound[1]) + ' B in ' + rewound[2] if rewound else 'no rewind'}; "
          f"writer {result.summary()}")
    record_property("cut_heal_healthy_after_s", round(healthy_after, 1))
    record_property("cut_rewound", bool(rewound))


LOCAL_SQL = r"""
import json, sys
import psycopg
host, sql = sys.argv[1], sys.argv[2]
with psycopg.connect(host=host, port=5432, user="postgres", dbname="postgres", autocommit=True,
                     connect_timeout=5) as conn:
    cursor = conn.execute(sql)
    print(json.dumps([list(r) for r in cursor.fetchall()] if cursor.description else []))
"""

LOCAL_COMMITS = r"""
import json, sys
import psycopg
host, count = sys.argv[1], int(sys.argv[2])
with psycopg.connect(host=host, port=5432, user="postgres", dbname="postgres", autocommit=True,
                     connect_timeout=5) as conn:
    conn.execute("SET synchronous_commit = local")      # acknowledged by the primary alone, as in async mode
    ids = [conn.execute("INSERT INTO pha_rejoin_local (note) VALUES ('local') RETURNING id").fetchone()[0]
           for _ in range(count)]
print(json.dumps(ids))
"""


def sql(lab, where: str, statement: str) -> list:
    """Rows of `statement` run on `where` (a node's unix socket, or the VIP from the client)."""
    host = "/run/postgresql" if where != "client" else lab.vip(0)
    argv = [sys.executable, "-c", LOCAL_SQL, host, statement]
    return json.loads((lab.client_exec(argv) if where == "client" else lab.exec(where, argv)).stdout)


def commits_of_the_primary_alone(lab, count: int = 20) -> tuple[str, str, list[str], list[int]]:
    """Pause the primary's walsenders and commit `count` inserts through the writer VIP with
    synchronous_commit=local (acknowledged by the primary alone, as in async mode): (primary,
    its postmaster's pid, the walsenders' pids, the ids acknowledged)."""
    failures_expired()
    wait_healthy(lab, timeout=HEALTHY_WITHIN, rep_mode="sync")
    old = primary_of(lab)
    # The writer VIP may still be settling after the previous test's heal (seen once on Debian 13).
    wait_for("the writer VIP to take writes", lambda: sql(
        lab, "client", "CREATE TABLE IF NOT EXISTS pha_rejoin_local (id bigserial PRIMARY KEY, note text)")
        == [], timeout=30)
    senders = [str(r[0]) for r in sql(lab, old, "SELECT pid FROM pg_stat_replication")]
    assert senders
    pid = lab.exec(old, ["head", "-1", f"{PGDATA}/postmaster.pid"]).stdout.strip()
    lab.exec(old, ["kill", "-STOP", *senders])
    try:
        ids = json.loads(lab.client_exec([sys.executable, "-c", LOCAL_COMMITS, lab.vip(0), str(count)]).stdout)
    except BaseException:
        lab.exec(old, ["kill", "-CONT", *senders], check=False)
        raise
    return old, pid, senders, ids


def test_commits_acknowledged_by_the_old_primary_alone_survive_its_crash(rejoin_cluster) -> None:
    """Commits the standbys never received (walsenders paused, synchronous_commit=local) are
    acknowledged, then the primary dies with its walsenders. When Pacemaker has started it
    again in place (a standby now) before the promotion asks its peers, the promotion streams
    its WAL first: the new primary holds every one of those commits and the old one needs no
    rewind (seen in every run here on Debian 12 and 13). Otherwise none of them is on the
    new primary and the old one's rewind lists them in its summary: never lost unseen."""
    lab = rejoin_cluster
    old, pid, senders, ids = commits_of_the_primary_alone(lab)
    killed = time.time()
    lab.exec(old, ["kill", "-9", pid, *senders])
    t0 = time.monotonic()
    new, _ = wait_for("a new primary", lambda: next(
        (n for n in status(lab).promoted_nodes(CLONE) if n != old), None), timeout=60)
    wait_healthy(lab, timeout=HEALTHY_WITHIN, rep_mode="sync")
    healthy_after = fault_over() - t0
    present = {r[0] for r in sql(lab, new, "SELECT id FROM pha_rejoin_local")}
    rewound = rewound_since(lab, old, killed)
    if set(ids) <= present:
        assert not rewound, f"{old} was rewound, yet {new} had streamed its WAL"
        print(f"{len(ids)} commits acknowledged by {old} alone, all on {new} (promoted); healthy "
              f"{healthy_after:.1f}s after the kill, {old} streams again without a rewind")
        return
    assert not present & set(ids), f"{new} holds only some of the commits {old} acknowledged alone"
    assert rewound, f"{old} rejoined without a rewind, yet its WAL held {len(ids)} commits the others lack"
    assert_summary_lists(lab, old, rewound, ids)
    print(f"{len(ids)} commits acknowledged by {old} alone; {new} promoted before {old} was back; healthy "
          f"{healthy_after:.1f}s after the kill; {old} rewound, {rewound[1]} B kept in {rewound[2]}")


def assert_summary_lists(lab, node: str, rewound: tuple[str, int, str], ids: list[int]) -> str:
    """The summary.txt of `node`'s rewind lists at least as many commits as `ids`; its text."""
    summary = lab.exec(node, ["cat", f"{rewound[2]}/summary.txt"]).stdout
    commits = [line for line in summary.splitlines() if line and not line.startswith("#")]
    assert len(commits) >= len(ids), summary
    return summary


def test_commits_acknowledged_by_a_cut_primary_alone_are_listed_in_the_summary(rejoin_cluster) -> None:
    """The same commits, then the primary's node is cut: nobody can stream them, so the
    majority promotes without them, and after the heal the old primary's start rewinds it:
    its summary.txt lists them, and they are not on the new primary."""
    lab = rejoin_cluster
    old, _, senders, ids = commits_of_the_primary_alone(lab)
    majority = [n for n in lab.nodes if n != old]
    cut = time.time()
    lab.cut(old)
    try:
        lab.exec(old, ["kill", "-CONT", *senders])          # nothing reaches the others now
        new, _ = wait_for("the majority promotes", lambda: next(
            (n for n in status(lab, majority).promoted_nodes(CLONE) if n != old), None), timeout=60)
        wait_for(f"{old} stopping its primary (no quorum)", lambda: lab.exec(
            old, ["test", "-e", f"{PGDATA}/postmaster.pid"], check=False).returncode != 0, timeout=90)
    finally:
        lab.heal(old)
    t0 = time.monotonic()
    lab.wait_online(timeout=60, observer=majority[0])
    wait_healthy(lab, timeout=HEALTHY_WITHIN, rep_mode="sync")
    healthy_after = fault_over() - t0
    present = {r[0] for r in sql(lab, new, "SELECT id FROM pha_rejoin_local")}
    assert not present & set(ids), "the new primary holds commits its standby never received?"
    rewound = rewound_since(lab, old, cut)
    assert rewound, f"{old} rejoined without a rewind, yet its WAL held {len(ids)} commits the others lack"
    summary = assert_summary_lists(lab, old, rewound, ids)
    print(f"{len(ids)} commits acknowledged by {old} alone, then cut; {new} promoted; healthy "
          f"{healthy_after:.1f}s after the heal; {old} rewound, {rewound[1]} B kept in {rewound[2]}:\n{summary}")
