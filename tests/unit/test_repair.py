"""cls_repair_by_pg_rewind: it always ends, says why a rewind cannot help, and touches
nothing when it refuses up front (a fake Pacemaker from captured XML, fake PostgreSQL facts)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pytest
from click.testing import CliRunner

from pha import crm
from pha.commands import common, repair
from pha.commands.common import EXIT_REFUSED
from pha.pgsql import rewind
from pha.pgsql.decide import ReplInfo, parse_lsn
from test_commands import FakeRunner

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parent / "data"
INFO = ReplInfo("node2", 3, parse_lsn("0/40001B8"))


class FakePacemaker(FakeRunner):
    """crm_mon shows node1 refused by the fork guard until it leaves standby; then `after`."""

    def __init__(self, after: str) -> None:
        super().__init__("forked", repl_info=INFO.render())
        self.after = after
        self.then: list[str] = []          # states the following crm_mon calls go through

    def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
        if argv[0] == "crm_mon" and "--output-as=xml" in argv:
            if self.ran("--name=standby", "--delete") and self.then:
                self.state = self.then.pop(0)
            if self.state == "failed-again":     # a new start failure, after the cleanup
                self.argvs.append(list(argv))
                text = (DATA / "commands_crm_mon_forked.xml").read_text()
                return crm.CommandResult(0, text.replace('call="49"', 'call="77"').replace(
                    'last-rc-change="2026-11-21 07:18:30Z"', 'last-rc-change="2026-11-21 07:30:00Z"'), "")
        if argv[0] == "crm_attribute" and "--name=standby" in argv and "--delete" in argv:
            self.state = self.after
        return super().__call__(argv, timeout)

    def ran(self, *words: str) -> bool:
        return any(all(w in argv for w in words) for argv in self.argvs)


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch):
    """Set up the fake cluster and this node's facts; returns (pacemaker, calls to rewind.perform)."""
    def use(facts: rewind.Facts, result: Optional[rewind.Result] = None, after: str = "healthy"):
        pacemaker = FakePacemaker(after)
        monkeypatch.setattr(common.Cluster, "__init__",
                            lambda self, bridge=None: setattr(self, "bridge", crm.Crm(pacemaker, 5.0)))
        monkeypatch.setattr(repair.LocalPostgres, "bindir", property(lambda self: "/pg/bin"))
        monkeypatch.setattr(repair.LocalPostgres, "facts", lambda self, info, reclone: (
            facts._replace(info=info, reclone=reclone), 16 << 20))
        monkeypatch.setattr(repair.LocalPostgres, "running", lambda self: False)
        monkeypatch.setattr(repair, "standby_node", lambda cluster, me, timeout: pacemaker.argvs.append(
            ["standby", me]) or 0.0)
        performed = []

        def perform(target, f, segment_size, config_extra=(), timeout=0, run=None):
            performed.append((target, f))
            return result or rewind.Result(rewind.REWIND, "rewound")
        monkeypatch.setattr(rewind, "perform", perform)
        monkeypatch.setattr(rewind, "run_pg_rewind", lambda target, timeout=0, dry_run=False, run=None:
                            rewind.ToolRun(rewind.DONE, "pg_rewind: servers diverged at WAL location 0/40001B8"))
        return pacemaker, performed
    return use


FORKED = rewind.Facts(2, parse_lsn("0/5000028"), None)


@pytest.mark.parametrize("facts, words", [
    (FORKED._replace(hints=False), "wal_log_hints=on or data checksums"),
    (FORKED._replace(source_reachable=False), "cannot be reached"),
    (FORKED._replace(local_timeline=4), "ahead of the cluster"),
])
def test_a_repair_that_cannot_help_is_refused_before_anything_changes(node, facts, words) -> None:
    pacemaker, performed = node(facts)
    done = CliRunner().invoke(repair.repair_cmd, [])
    assert done.exit_code == EXIT_REFUSED and words in done.output
    assert not pacemaker.ran("standby", "node1") and not performed
    assert "re-clone" in done.output or "cls_reset_master" in done.output or "retry" in done.output


def test_without_hints_reclone_is_offered_and_done(node) -> None:
    pacemaker, performed = node(FORKED._replace(hints=False),
                                rewind.Result(rewind.RECLONE, "copied", moved_aside="/data.pha-old-x"))
    done = CliRunner().invoke(repair.repair_cmd, ["--reclone", "--json"])
    assert done.exit_code == 0, done.output
    assert performed[0][1].reclone and '"moved_aside": "/data.pha-old-x"' in done.output


def test_dry_run_says_what_it_would_do(node) -> None:
    pacemaker, performed = node(FORKED)
    done = CliRunner().invoke(repair.repair_cmd, ["--dry-run", "--json"])
    assert done.exit_code == 0, done.output
    assert '"action": "rewind"' in done.output and "servers diverged" in done.output
    assert "keep the diverged WAL" in done.output
    assert not pacemaker.ran("standby", "node1") and not performed


def test_a_forked_node_is_rewound_and_streams(node) -> None:
    kept = rewind.Kept("/var/lib/pha/rewind/x", 2, 480, False, "/var/lib/pha/rewind/x/summary.txt", 3)
    pacemaker, performed = node(FORKED, rewind.Result(rewind.REWIND, "timeline 2 forked", kept))
    done = CliRunner().invoke(repair.repair_cmd, ["--json", "--keep-dir", "/srv/keep"])
    assert done.exit_code == 0, done.output
    target, facts = performed[0]
    assert target.keep_root == "/srv/keep" and facts.info == INFO and not facts.reclone
    assert "password" not in target.source_conninfo and "target_session_attrs=read-write" in target.source_conninfo
    assert "3 commits" in done.output and '"commits": 3' in done.output
    assert pacemaker.ran("crm_resource", "--cleanup") and pacemaker.ran("--name=standby", "--delete")


def test_the_dead_end_is_named_and_the_node_left_in_standby(node) -> None:
    pacemaker, _ = node(FORKED, rewind.Result(rewind.REFUSE, rewind.decide(
        FORKED._replace(info=INFO, last_rewind=rewind.NOT_REQUIRED)).reason))
    done = CliRunner().invoke(repair.repair_cmd, [])
    assert done.exit_code == EXIT_REFUSED
    assert "found nothing to rewind" in done.output and "--reclone" in done.output
    assert "left in standby" in done.output and not pacemaker.ran("--name=standby", "--delete")


def test_a_start_that_fails_after_the_repair_ends_the_wait_at_once(node) -> None:
    pacemaker, _ = node(FORKED, after="failed-again")   # Pacemaker reports a new failed start
    done = CliRunner().invoke(repair.repair_cmd, ["--timeout", "180"])
    assert done.exit_code == 1
    assert "PostgreSQL failed to start on node1: pgsql_start_0: timeline 2 forked" in done.output
    assert sum(1 for argv in pacemaker.argvs if argv[0] == "crm_mon") < 10   # no 180 s of polling


def test_an_unforked_node_still_gets_a_plain_pg_rewind(node, monkeypatch: pytest.MonkeyPatch) -> None:
    pacemaker, performed = node(FORKED._replace(local_timeline=3), rewind.Result(rewind.NONE, "not forked"))
    monkeypatch.setattr(repair.LocalPostgres, "save_config", lambda self: {})
    monkeypatch.setattr(repair.LocalPostgres, "restore_config", lambda self, saved: None)
    monkeypatch.setattr(rewind, "run_pg_rewind", lambda target, timeout=0, dry_run=False, run=None:
                        rewind.ToolRun(rewind.FAILED, "pg_rewind: fatal: could not connect"))
    done = CliRunner().invoke(repair.repair_cmd, [])
    assert done.exit_code == EXIT_REFUSED and "pg_rewind failed: pg_rewind: fatal: could not connect" in done.output


def test_the_old_failure_still_shown_after_the_cleanup_is_not_a_new_one(node, monkeypatch) -> None:
    pacemaker, _ = node(FORKED, after="forked")
    pacemaker.then = ["forked", "healthy"]          # the cleanup shows up a moment later
    done = CliRunner().invoke(repair.repair_cmd, ["--json"])
    assert done.exit_code == 0, done.output
    assert not pacemaker.then


def test_the_tools_come_from_pgdatas_version_without_pgctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """repair and reset-master find pg_rewind/pg_controldata from PG_VERSION (pha.pgsql.binaries)."""
    from pha.commands import switch
    from pha.commands.common import Failed
    from pha.pgsql import binaries
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    bindir = tmp_path / "pg16"
    bindir.mkdir()
    (bindir / "postgres").write_text("#!/bin/sh\n")
    (bindir / "postgres").chmod(0o755)
    monkeypatch.setattr(binaries.bindir_for, "__kwdefaults__",
                        {"layouts": (str(tmp_path / "pg{major}"),), "search_path": "", "run": lambda argv: None})
    settings = {"pgdata": str(pgdata), "pgdba": "root", "tmpdir": str(tmp_path), "master_ip": "192.0.2.1",
                "pgport": "5432", "repuser": "rep"}
    assert repair.LocalPostgres(settings, "pgsql").bindir == str(bindir)
    (pgdata / "PG_VERSION").write_text("17\n")
    with pytest.raises(Failed, match=r"PostgreSQL 17 \(PG_VERSION of .*set the pgctl parameter"):
        switch.controldata_position(settings)
