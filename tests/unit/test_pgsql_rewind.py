"""pha.pgsql.rewind: the decision over timelines, positions and flags, and its I/O through fakes."""
from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from pha.pgsql import rewind as r
from pha.pgsql.decide import ReplInfo, parse_lsn
from pha.pgsql.process import PgError

pytestmark = pytest.mark.unit
SEG = 16 << 20
SWITCH = parse_lsn("0/50000A0")                 # where timeline 3 began (REPL_INFO)
INFO = ReplInfo("node2", 3, SWITCH)
HISTORY = {1: parse_lsn("0/3000158"), 2: SWITCH}


def facts(tl: int = 2, lsn: str = "0/6000000", **kw) -> r.Facts:
    return r.Facts(tl, parse_lsn(lsn), kw.pop("info", INFO), **kw)


# --- the decision ------------------------------------------------------------------------------
@pytest.mark.parametrize("f, action, words", [
    (facts(info=None), r.NONE, "no REPL_INFO"),
    (facts(tl=3), r.NONE, "not forked"),                                   # on the cluster's timeline
    (facts(tl=2, lsn="0/5000098"), r.NONE, "not forked"),                   # checkpoint before the switch
    (facts(tl=2, lsn="0/50000A0"), r.REWIND, "checkpoint at 0/50000A0, not before"),  # a record past it
    (facts(tl=2, lsn="0/4000000"), r.NONE, "not forked"),                   # behind it: can follow
    (facts(tl=1, lsn="0/9000000"), r.NONE, "not in the cluster's known history"),
    (facts(tl=1, lsn="0/9000000", history=HISTORY), r.REWIND, "timeline 1 forked"),
    (facts(tl=1, lsn="0/3000000", history=HISTORY), r.NONE, "not forked"),
    (facts(tl=2, lsn="0/6000000"), r.REWIND, "timeline 2 forked: checkpoint at 0/6000000, not before 0/50000A0"),
    (facts(tl=2, lsn="0/4000000", min_recovery=(2, parse_lsn("0/6000000"))), r.REWIND,
     "timeline 2 forked: minimum recovery point 0/6000000, past 0/50000A0"),
    (facts(tl=2, lsn="0/4000000", min_recovery=(3, parse_lsn("0/6000000"))), r.NONE, "not forked"),
    (facts(tl=4), r.REFUSE, "ahead of the cluster"),
    (facts(tl=4, reclone=True), r.REFUSE, "ahead of the cluster"),
    (facts(source_reachable=False), r.REFUSE, "cannot be reached"),
    (facts(source_reachable=False, reclone=True), r.REFUSE, "cannot be reached"),
    (facts(hints=False), r.REFUSE, "wal_log_hints=on or data checksums"),
    (facts(hints=False, reclone=True), r.RECLONE, "wal_log_hints=on or data checksums"),
    (facts(last_rewind=r.FAILED), r.REFUSE, "pg_rewind failed: re-clone it (cls_repair_by_pg_rewind --reclone"),
    (facts(last_rewind=r.FAILED, reclone=True), r.RECLONE, "old data is kept aside"),
    (facts(last_rewind=r.NOT_REQUIRED), r.REFUSE, "does not contain the minimum recovery point"),
    (facts(last_rewind=r.NOT_REQUIRED, reclone=True), r.RECLONE, "found nothing to rewind"),
])
def test_decide(f: r.Facts, action: str, words: str) -> None:
    verdict = r.decide(f)
    assert verdict.action == action and words in verdict.reason, verdict


def test_decide_invariants_over_every_combination() -> None:
    """Whatever the flags: a rewind only with the means to do it; a re-clone only when
    allowed; nothing for a node that can follow; never a rewind of a node ahead."""
    for tl, lsn, hints, up, clone, last, minrec in itertools.product(
            (1, 2, 3, 4), ("0/4000000", "0/50000A0", "0/6000000"), (True, False), (True, False), (True, False),
            (None, r.FAILED, r.NOT_REQUIRED), (None, (2, parse_lsn("0/7000000")))):
        f = r.Facts(tl, parse_lsn(lsn), INFO, HISTORY, hints, up, clone, minrec, last)
        verdict = r.decide(f)
        forked = r.fork_reason(f) is not None
        assert verdict.action in (r.NONE, r.REWIND, r.REFUSE, r.RECLONE) and verdict.reason
        if tl > 3:
            assert verdict.action == r.REFUSE
        elif not forked:
            assert verdict.action == r.NONE
        elif not up:
            assert verdict.action == r.REFUSE
        elif verdict.action == r.REWIND:
            assert hints and last is None
        else:
            assert verdict.action == (r.RECLONE if clone else r.REFUSE)


def test_facts_from_controldata() -> None:
    control = {"Latest checkpoint's TimeLineID": "2", "Latest checkpoint location": "0/6000028",
               "wal_log_hints setting": "off", "Data page checksum version": "0",
               "Minimum recovery ending location": "0/0", "Min recovery ending loc's timeline": "0"}
    assert r.facts_from_controldata(control, wal_timeline=3) == (3, 0x6000028, False, None)
    control.update({"Data page checksum version": "1", "Minimum recovery ending location": "0/7000000",
                    "Min recovery ending loc's timeline": "2"})
    assert r.facts_from_controldata(control) == (2, 0x6000028, True, (2, 0x7000000))


def test_source_conninfo_quotes_and_has_no_password() -> None:
    text = r.source_conninfo("10.0.0.1", 5432, "rep'l")
    assert "host=10.0.0.1 port=5432 user='rep\\'l'" in text and "target_session_attrs=read-write" in text
    assert "password" not in text


# --- keeping the diverged WAL -------------------------------------------------------------------------
class FakeRun:
    """Stands for process.run_as: records calls, answers per program."""

    def __init__(self, answers: dict[str, tuple[int, str, str]], effects: Optional[dict] = None) -> None:
        self.answers, self.effects, self.calls = answers, effects or {}, []

    def __call__(self, who, argv, timeout, cwd="/", env=None):
        tool = os.path.basename(argv[0])
        self.calls.append((tool, argv, env, timeout))
        if tool in self.effects:
            self.effects[tool](argv)
        code, out, err = self.answers.get(tool, (0, "", ""))
        if code is None:
            raise PgError(f"{tool} did not finish within {timeout:.0f} s (killed)")
        return subprocess.CompletedProcess(argv, code, out, err)


WALDUMP = """\
rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/05000120, prev 0/050000E8, desc: COMMIT 2026-11-29 21:00:00.123456 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/05000200, prev 0/05000180, desc: ABORT 2026-11-29 21:00:01.000000 UTC
rmgr: Transaction len (rec/tot):    130/   130, tx:        737, lsn: 0/06000300, prev 0/06000280, desc: COMMIT 2026-11-29 21:00:02.5 UTC; inval msgs: catcache 7
"""


@pytest.fixture
def node(tmp_path: Path) -> r.Target:
    pgdata = tmp_path / "pgdata"
    wal = pgdata / "pg_wal"
    wal.mkdir(parents=True)
    for name in ("000000020000000000000004", "000000020000000000000005", "000000020000000000000006",
                 "000000030000000000000005", "00000003.history"):
        (wal / name).write_bytes(name.encode() * 10)
    (tmp_path / "secret").write_text("x" * 100)
    (wal / "000000020000000000000007").symlink_to(tmp_path / "secret")    # planted: not followed
    return r.Target(str(pgdata), "/pg/bin", "root", r.source_conninfo("10.0.0.1", 5432, "rep"),
                    "/etc/pha/pgpass", str(tmp_path / "keep"))


def test_diverged_segments(node: r.Target) -> None:
    wal = os.path.join(node.pgdata, "pg_wal")
    assert r.diverged_segments(wal, 2, SWITCH, SEG) == ["000000020000000000000005", "000000020000000000000006"]
    assert r.diverged_segments(wal, 2, parse_lsn("0/6000000"), SEG) == ["000000020000000000000006"]
    assert r.diverged_segments(wal, 2, parse_lsn("0/3FFFFFF"), SEG)[0] == "000000020000000000000004"


def test_summarize() -> None:
    commits, aborts = r.summarize(WALDUMP)
    assert commits == [("735", "2026-11-29 21:00:00.123456 UTC", "0/05000120"),
                       ("737", "2026-11-29 21:00:02.5 UTC", "0/06000300")] and aborts == 1


def test_keep_diverged_wal(node: r.Target) -> None:
    run = FakeRun({"pg_waldump": (1, WALDUMP, "pg_waldump: error: could not find a valid record after 0/6000400")})
    kept = r.keep_diverged_wal(node, 2, SWITCH, SEG, run=run, now=0)
    assert kept.directory == f"{node.keep_root}/19700101T000000Z-timeline2-0-50000A0"
    assert sorted(os.listdir(kept.directory)) == ["000000020000000000000005", "000000020000000000000006",
                                                  "summary.txt"]
    assert (kept.segments, kept.bytes, kept.commits, kept.truncated) == (2, 480, 2, False)
    assert os.stat(node.keep_root).st_mode & 0o777 == 0o700 and os.stat(kept.directory).st_mode & 0o777 == 0o700
    summary = Path(kept.summary_path).read_text()
    assert "735\t2026-11-29 21:00:00.123456 UTC\t0/05000120" in summary and "2 commit(s), 1 abort(s)" in summary
    assert "could not find a valid record" in summary
    tool, argv, env, _ = run.calls[0]
    assert argv[1:] == [f"--path={node.pgdata}/pg_wal", "--timeline=2", "--start=0/50000A0", "--rmgr=Transaction"]
    assert env["PGPASSFILE"] == "/etc/pha/pgpass"


def test_a_retried_rewind_keeps_the_wal_once(node: r.Target) -> None:
    run = FakeRun({"pg_waldump": (1, WALDUMP, "")})
    first = r.keep_diverged_wal(node, 2, SWITCH, SEG, run=run, now=0)
    again = r.keep_diverged_wal(node, 2, SWITCH, SEG, run=run, now=60)
    assert again == first and len(run.calls) == 1 and os.listdir(node.keep_root) == [os.path.basename(first.directory)]
    other = r.keep_diverged_wal(node, 2, SWITCH + 1, SEG, run=run, now=60)     # another fork: its own copy
    assert other.directory != first.directory


def test_keep_stops_at_its_limit_and_survives_a_waldump_timeout(node: r.Target) -> None:
    kept = r.keep_diverged_wal(node._replace(keep_max_bytes=100), 2, SWITCH, SEG,
                               run=FakeRun({"pg_waldump": (None, "", "")}), now=0)
    assert (kept.segments, kept.truncated, kept.commits) == (1, True, 0)
    assert "did not finish" in Path(kept.summary_path).read_text()


# --- configuration files --------------------------------------------------------------------------
def test_config_survives_and_no_link_is_followed(node: r.Target, tmp_path: Path) -> None:
    pgdata = Path(node.pgdata)
    (pgdata / "postgresql.conf").write_text("cluster_name = 'node3'\n")
    (pgdata / "pg_hba.conf").write_text("local all all peer\n")
    os.chmod(pgdata / "pg_hba.conf", 0o640)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (pgdata / "pg_ident.conf").symlink_to(victim)          # a link is not kept
    saved = r.save_config(node.pgdata)
    assert sorted(saved) == ["pg_hba.conf", "postgresql.conf"]
    (pgdata / "postgresql.conf").unlink()
    (pgdata / "postgresql.conf").symlink_to(victim)        # planted while pg_rewind ran
    r.restore_config(node.pgdata, saved)
    assert victim.read_text() == "precious"
    assert (pgdata / "postgresql.conf").read_text() == "cluster_name = 'node3'\n"
    assert not (pgdata / "postgresql.conf").is_symlink()
    assert os.stat(pgdata / "pg_hba.conf").st_mode & 0o777 == 0o640
    assert r.config_names(node.pgdata, f"{node.pgdata}/my.conf") == ("my.conf",)
    assert r.config_names(node.pgdata, "/etc/postgresql/15/main/postgresql.conf") == ()


# --- pg_rewind ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, outcome", [
    ((0, "pg_rewind: servers diverged at WAL location 0/50000A0 on timeline 2\npg_rewind: Done!\n", ""), r.DONE),
    ((0, "", "pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required\n"),
     r.SAME_TIMELINE),
    ((0, "", "pg_rewind: servers diverged at WAL location 0/50000A0 on timeline 2\n"
             "pg_rewind: no rewind required\n"), r.NOT_REQUIRED),
    ((1, "", "pg_rewind: fatal: could not connect: password=hunter2 failed"), r.FAILED),
    ((None, "", ""), r.FAILED),
])
def test_run_pg_rewind(node: r.Target, answer, outcome: str) -> None:
    run = FakeRun({"pg_rewind": answer})
    done = r.run_pg_rewind(node, timeout=60, run=run)
    assert done.outcome == outcome and "hunter2" not in done.output
    tool, argv, env, timeout = run.calls[0]
    assert argv[0] == "/pg/bin/pg_rewind" and f"--target-pgdata={node.pgdata}" in argv and timeout == 60
    assert not any("password" in a for a in argv) and env["PGPASSFILE"] == "/etc/pha/pgpass"


def test_pg_rewind_refuses_a_password_in_the_conninfo(node: r.Target) -> None:
    run = FakeRun({})
    done = r.run_pg_rewind(node._replace(source_conninfo="host=x password=hunter2"), run=run)
    assert done.outcome == r.FAILED and "passfile" in done.output and not run.calls


# --- re-clone --------------------------------------------------------------------------------------
def _basebackup_writes(argv: list[str]) -> None:
    target = next(a for a in argv if a.startswith("--pgdata=")).split("=", 1)[1]
    Path(target, "PG_VERSION").write_text("15\n")
    Path(target, "postgresql.conf").write_text("# the primary's\n")


def test_reclone_moves_the_old_data_aside(node: r.Target) -> None:
    Path(node.pgdata, "postgresql.conf").write_text("# mine\n")
    run = FakeRun({}, {"pg_basebackup": _basebackup_writes})
    aside = r.reclone(node, run=run, now=0)
    assert aside == f"{node.pgdata}.pha-old-19700101T000000Z"
    assert Path(aside, "pg_wal", "000000020000000000000005").exists()        # never deleted
    assert Path(node.pgdata, "PG_VERSION").read_text() == "15\n"
    assert Path(node.pgdata, "postgresql.conf").read_text() == "# mine\n"
    assert os.stat(node.pgdata).st_mode & 0o777 == 0o700
    argv = run.calls[0][1]
    assert "--no-password" in argv and not any("password=" in a for a in argv)


def test_a_failed_reclone_leaves_the_data_alone(node: r.Target) -> None:
    run = FakeRun({"pg_basebackup": (1, "", "pg_basebackup: error: connection refused")},
                  {"pg_basebackup": _basebackup_writes})
    with pytest.raises(PgError, match="pg_basebackup failed .*connection refused"):
        r.reclone(node, run=run, now=0)
    assert sorted(os.listdir(os.path.dirname(node.pgdata))) == ["pgdata", "secret"]


# --- the whole of it ---------------------------------------------------------------------------------
def test_perform_keeps_then_rewinds(node: r.Target) -> None:
    Path(node.pgdata, "pha.conf").write_text("primary_conninfo = 'mine'\n")
    Path(node.pgdata, "standby.signal").write_text("")      # a standby stopped in recovery

    def rewinds(argv: list[str]) -> None:     # pg_rewind's single-user recovery refuses standby mode
        assert not Path(node.pgdata, "standby.signal").exists()
        Path(node.pgdata, "pha.conf").write_text("the primary's\n")
    run = FakeRun({"pg_waldump": (0, WALDUMP, ""), "pg_rewind": (0, "pg_rewind: Done!", "")}, {"pg_rewind": rewinds})
    checkpoints = []
    result = r.perform(node, facts(), SEG, run=run, checkpoint=lambda t: checkpoints.append(t))
    assert result.action == r.REWIND and result.kept and result.kept.commits == 2
    assert checkpoints == [node]                     # the source checkpointed before pg_rewind ran
    assert [c[0] for c in run.calls] == ["pg_waldump", "pg_rewind"]
    assert Path(node.pgdata, "pha.conf").read_text() == "primary_conninfo = 'mine'\n"


def test_perform_stops_at_the_dead_end_or_reclones(node: r.Target) -> None:
    run = FakeRun({"pg_rewind": (0, "pg_rewind: no rewind required", "")})
    result = r.perform(node, facts(), SEG, run=run, checkpoint=lambda t: None)
    assert result.action == r.REFUSE and "re-clone it" in result.reason and result.kept
    run = FakeRun({"pg_rewind": (1, "", "pg_rewind: fatal: boom")}, {"pg_basebackup": _basebackup_writes})
    result = r.perform(node, facts(reclone=True), SEG, run=run, checkpoint=lambda t: None)
    assert result.action == r.RECLONE and "pg_rewind failed" in result.reason and "boom" in result.reason
    assert os.path.isdir(result.moved_aside)


class Rewinds:
    """pg_rewind answering "same timeline" until the source checkpointed (`late`: the first
    checkpoint has not reached its control file yet)."""

    def __init__(self, checkpoint_error: Optional[str], late: int = 0) -> None:
        self.checkpoint_error, self.checkpointed, self.late = checkpoint_error, False, late
        self.run = FakeRun({})
        self.run.answers["pg_rewind"] = (0, "", "pg_rewind: source and target cluster are on the same timeline\n"
                                                "pg_rewind: no rewind required")

    def checkpoint(self, target: r.Target) -> Optional[str]:
        if self.checkpoint_error is None:
            self.checkpointed = True
            if self.late:
                self.late -= 1
            else:
                self.run.answers["pg_rewind"] = (0, "pg_rewind: Done!", "")
        return self.checkpoint_error


def test_a_source_not_yet_checkpointed_is_checkpointed_then_rewound(node: r.Target) -> None:
    rewinds = Rewinds(None)
    result = r.perform(node, facts(), SEG, run=rewinds.run, checkpoint=rewinds.checkpoint)
    assert result.action == r.REWIND and rewinds.checkpointed
    assert [c[0] for c in rewinds.run.calls] == ["pg_waldump", "pg_rewind"]
    rewinds = Rewinds(None, late=1)
    result = r.perform(node, facts(), SEG, run=rewinds.run, checkpoint=rewinds.checkpoint)
    assert result.action == r.REWIND and [c[0] for c in rewinds.run.calls] == ["pg_rewind", "pg_rewind"]
    assert result.kept and result.kept.segments == 2      # the first attempt's copy, not made again
    rewinds = Rewinds("permission denied to checkpoint")
    result = r.perform(node, facts(), SEG, run=rewinds.run, checkpoint=rewinds.checkpoint)
    assert result.action == r.REFUSE and "CHECKPOINT on the primary failed (permission denied" in result.reason
    assert "grant pg_checkpoint" in result.reason and not rewinds.run.calls     # nothing touched


def test_perform_does_nothing_without_a_fork_or_the_means(node: r.Target) -> None:
    run = FakeRun({})
    assert r.perform(node, facts(tl=3), SEG, run=run).action == r.NONE
    assert r.perform(node, facts(hints=False), SEG, run=run).action == r.REFUSE
    assert not run.calls and not os.path.exists(node.keep_root)


# --- for real: a primary, its standby promoted, the old primary forked and rewound -------------------------
def test_a_forked_old_primary_is_rewound_for_real() -> None:
    import glob
    import pwd
    import shutil
    import tempfile
    from pha.pgsql import process
    from pha.pgsql.instance import Instance
    servers = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = None
    if os.geteuid() != 0 or not servers or user is None:
        pytest.skip("needs root, a postgres user and PostgreSQL's binaries")
    bindir = os.path.dirname(servers[-1])
    top = Path(tempfile.mkdtemp(prefix="pha-rewind-test-"))
    os.chmod(top, 0o755)
    os.chown(top, user.pw_uid, user.pw_gid)
    base_port = 41000 + os.getpid() % 20000

    def pg(name: str, port: int) -> Instance:
        return Instance("", str(top / name), port, str(top), "postgres", "postgres", None, "", "",
                        str(top / f"{name}.log"))

    def as_pg(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, check=True, capture_output=True, text=True, user=user.pw_uid, group=user.pw_gid,
                              cwd="/", timeout=60)

    old, new = pg("old", base_port), pg("new", base_port + 1)
    try:
        as_pg(f"{bindir}/initdb", "-D", old.pgdata, "-A", "trust", "-U", "postgres", "--no-sync")
        with open(f"{old.pgdata}/postgresql.conf", "a") as f:
            f.write("listen_addresses = ''\nfsync = off\nwal_log_hints = on\nshared_buffers = 1MB\n"
                    "wal_keep_size = 64MB\n")
        subprocess.run(["cp", "-a", old.pgdata, new.pgdata], check=True, timeout=60)   # a cold base backup
        old.start(30)
        new.write_conf({"primary_conninfo": f"host={top} port={old.port} user=postgres application_name=new"})
        new.ensure_included()
        new.set_standby(True)
        new.start(30)
        with old.connect() as conn:
            conn.execute("create table before_fork as select 1 as id")
            written = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
            deadline = time.monotonic() + 20
            while not conn.execute("select count(*) from pg_stat_replication where replay_lsn >= %s",
                                   (written,)).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.05)
        with new.connect() as conn:
            conn.execute("select pg_promote(true, 30)")
        with old.connect() as conn:            # the old primary goes on alone: it forks
            conn.execute("create table written_alone as select generate_series(1, 100) as id")
            conn.execute("insert into written_alone values (101)")
        old.stop(10)
        history = new.history(2)
        switches = __import__("pha.pgsql.decide", fromlist=["parse_history"]).parse_history(history)
        info = ReplInfo("new", 2, switches[1])
        control = old.controldata()
        timeline, lsn, hints, min_recovery = r.facts_from_controldata(control, old.wal_timeline())
        f = r.Facts(timeline, lsn, info, switches, hints, True, False, min_recovery)
        assert r.decide(f).action == r.REWIND, r.decide(f)
        assert not r.reachable(str(top), 1) and r.reachable(str(top), new.port)
        result = r.rewind_instance(old, info, str(top), new.port, "postgres", keep_root=str(top / "keep"),
                                   timeout=120)
        assert result.action == r.REWIND, result
        assert result.kept and result.kept.segments >= 1 and result.kept.commits >= 2
        summary = Path(result.kept.summary_path).read_text()
        assert "commit(s)" in summary and summary.count("\t") >= 4
        assert f"port = {base_port + 1}" not in Path(old.pgdata, "postgresql.conf").read_text().split(
            "wal_keep_size")[0] and "wal_log_hints = on" in Path(old.pgdata, "postgresql.conf").read_text()
        # it now follows the new primary
        old.write_conf({"primary_conninfo": f"host={top} port={new.port} user=postgres application_name=old"})
        old.ensure_included()
        old.set_standby(True)
        old.start(30)
        with old.connect() as conn:
            assert conn.execute("select pg_is_in_recovery(), to_regclass('written_alone') is null").fetchone() == (
                True, True)
    finally:
        for each in (old, new):
            process.kill_all(process.server_processes(each.pgdata, each.postmaster_pid()))
        shutil.rmtree(top, ignore_errors=True)
