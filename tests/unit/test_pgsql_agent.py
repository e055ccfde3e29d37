"""ocf:pha:pgsql through AGENT.run with a fake Pacemaker and a fake PostgreSQL:
start (standby, held primary, fork guard), stop, notify, validate-all, meta-data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pha import ocf
from pha.pgsql import binaries, decide, names, rewind
from pha.pgsql.instance import PgError
from pgsql_fakes import SCORE, WANTED, FakeCluster, Node, primary_node
from pgsql_fakes import cluster  # noqa: F401  (a fixture)

pytestmark = pytest.mark.unit


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> Node:
    """node1, stopped, with node2 the recorded primary."""
    n = Node(tmp_path, monkeypatch, cluster)
    n.pg.running = False
    cluster.props[names.REPL_INFO] = "node2|3|0/3000000"
    return n


# --- start ------------------------------------------------------------------------------------
def test_start_as_a_standby(node: Node, cluster: FakeCluster) -> None:
    assert node.run("start") == ocf.SUCCESS
    assert node.pg.standby_signal is True and node.pg.running
    assert node.pg.conf["synchronous_standby_names"] == "" and "default_transaction_read_only" not in node.pg.conf
    assert "application_name=node1" in node.pg.conf["primary_conninfo"]
    assert "host=10.0.0.100" in node.pg.conf["primary_conninfo"]
    mine = cluster.attrs["node1"]
    assert mine[names.ATTR_STATUS] == decide.HS_ALONE and mine[names.ATTR_TIMELINE] == "3"
    assert mine[names.ATTR_LSN] == decide.lsn_attr(decide.parse_lsn("0/5000060"))
    assert SCORE not in mine
    assert node.state().held is False and node.state().published


def test_start_of_the_recorded_primary_is_held_read_only(node: Node, cluster: FakeCluster) -> None:
    cluster.props[names.REPL_INFO] = "node1|3|0/3000000"
    assert node.run("start") == ocf.SUCCESS
    assert node.pg.standby_signal is False
    assert node.pg.conf["default_transaction_read_only"] == "on"
    assert node.pg.conf["synchronous_standby_names"] == WANTED
    assert cluster.attrs["node1"][SCORE] == str(decide.PRIMARY_SCORE)
    assert names.ATTR_LSN not in cluster.attrs["node1"]
    assert node.state().held is True


def test_a_crashed_recorded_primary_starts_as_a_standby(node: Node, cluster: FakeCluster) -> None:
    cluster.props[names.REPL_INFO] = "node1|3|0/3000000"
    node.pg.control["Database cluster state"] = "in production"
    assert node.run("start") == ocf.SUCCESS
    assert node.pg.standby_signal is True and node.state().held is False


def test_start_when_running(node: Node) -> None:
    node.pg.running = True
    assert node.run("start") == ocf.SUCCESS and ("start",) not in node.pg.calls
    node.pg.connect_error = psycopg.OperationalError("no answer")
    assert node.run("start") == ocf.ERR_GENERIC


def test_start_refuses_a_port_another_server_listens_on(node: Node, capsys: pytest.CaptureFixture) -> None:
    node.pg.port_taken = True
    assert node.run("start") == ocf.ERR_CONFIGURED
    assert "parameter pgport=5432" in capsys.readouterr().err and ("start",) not in node.pg.calls


def test_start_refuses_a_primary_conninfo_in_auto_conf(node: Node, capsys: pytest.CaptureFixture) -> None:
    node.pg.auto_conf = {"primary_conninfo": "'host=old'"}
    assert node.run("start") == ocf.ERR_CONFIGURED
    assert "ALTER SYSTEM RESET" in capsys.readouterr().err


def test_a_pg_ctl_failure_fails_the_start(node: Node, capsys: pytest.CaptureFixture) -> None:
    def broken(timeout: float) -> None:
        raise PgError("pg_ctl start failed: FATAL: could not map anonymous shared memory")
    node.pg.start = broken
    assert node.run("start") == ocf.ERR_GENERIC
    assert "shared memory" in capsys.readouterr().err


def test_the_fork_guard_refuses_and_remembers(node: Node, cluster: FakeCluster,
                                              capsys: pytest.CaptureFixture) -> None:
    node.params["auto_rewind"] = "false"
    cluster.props[names.REPL_INFO] = "node2|4|0/5000000"
    node.pg.control["Latest checkpoint location"] = "0/6000000"     # timeline 3 went past the switch
    assert node.run("start") == ocf.ERR_GENERIC
    assert "repair with cls_repair_by_pg_rewind: timeline 3 forked" in capsys.readouterr().err
    marker = Path(node.ctx.fork_marker)
    assert marker.read_text().startswith("node2|4|0/5000000\n") and ("start",) not in node.pg.calls
    # The checkpoint alone no longer shows it (a restart moved it back): the marker still refuses.
    node.pg.control["Latest checkpoint location"] = "0/4000000"
    assert node.run("start") == ocf.ERR_GENERIC and ("start",) not in node.pg.calls
    # Repaired (pg_rewind brought timeline 4): the marker no longer applies.
    node.pg.timeline = 4
    node.pg.control["Latest checkpoint's TimeLineID"] = "4"
    assert node.run("start") == ocf.SUCCESS


def test_a_node_demoted_and_stopped_while_cut_off_is_seen_forked(node: Node, cluster: FakeCluster,
                                                                capsys: pytest.CaptureFixture) -> None:
    """Its checkpoint is before the switch, its minimum recovery point past it: PostgreSQL
    would refuse to start it ("requested timeline 4 does not contain minimum recovery point")."""
    node.params["auto_rewind"] = "false"
    cluster.props[names.REPL_INFO] = "node2|4|0/5000000"
    node.pg.control.update({"Latest checkpoint location": "0/4FFFFC0", "Minimum recovery ending location": "0/5000038",
                            "Min recovery ending loc's timeline": "3"})
    assert node.run("start") == ocf.ERR_GENERIC and ("start",) not in node.pg.calls
    assert "timeline 3 forked: minimum recovery point 0/5000038, past 0/5000000" in capsys.readouterr().err


def test_a_new_repl_info_lifts_a_remembered_refusal(node: Node, cluster: FakeCluster) -> None:
    node.params["auto_rewind"] = "false"
    cluster.props[names.REPL_INFO] = "node2|4|0/5000000"
    node.pg.control["Latest checkpoint location"] = "0/6000000"
    assert node.run("start") == ocf.ERR_GENERIC
    cluster.props[names.REPL_INFO] = "node1|3|0/3000000"      # this node is the recorded primary now
    node.pg.control["Database cluster state"] = "shut down"
    assert node.run("start") == ocf.SUCCESS and node.state().held is True


# --- start of a forked node: automatic rewind (auto_rewind, on by default) ----------------------------
KEPT = rewind.Kept("/var/lib/pha/rewind/20261129T220000Z-timeline3-0-5000000", 2, 33554432, False,
                   "/var/lib/pha/rewind/20261129T220000Z-timeline3-0-5000000/summary.txt", 3)


@pytest.fixture
def forked(node: Node, cluster: FakeCluster) -> Node:
    """node1, stopped, its timeline 3 past node2's switch to timeline 4."""
    cluster.props[names.REPL_INFO] = "node2|4|0/5000000"
    node.pg.control["Latest checkpoint location"] = "0/6000000"
    node.params.update(passfile="", repuser="rep", pgport="5433")
    return node


def test_a_forked_node_is_rewound_then_starts_as_a_standby(forked: Node, cluster: FakeCluster,
                                                           capsys: pytest.CaptureFixture) -> None:
    forked.rewind_result = rewind.Result(rewind.REWIND, "timeline 3 forked", KEPT, "pg_rewind: Done!")
    assert forked.run("start", timeout=300000) == ocf.SUCCESS
    [call] = forked.rewinds
    assert (call["host"], call["port"], call["repuser"], call["passfile"]) == ("10.0.0.100", 5433, "rep", "")
    assert call["reclone_allowed"] is False and call["keep_root"] == "/var/lib/pha/rewind"
    assert 200 < call["timeout"] <= 260            # the start's 300 s less 10, less 30 kept for PostgreSQL
    assert forked.pg.standby_signal is True and ("start",) in forked.pg.calls
    assert forked.pg.conf["primary_conninfo"].startswith("host=10.0.0.100 port=5433 user=rep")
    assert not Path(forked.ctx.fork_marker).exists()
    value = cluster.attrs["node1"][names.ATTR_REWOUND]
    assert value.endswith(f" 33554432 {KEPT.directory}") and cluster.lifetimes[("node1", names.ATTR_REWOUND)] == "forever"
    err = capsys.readouterr().err
    assert "rewinding from node2 (10.0.0.100:5433)" in err and KEPT.summary_path in err and "3 commit(s)" in err
    assert cluster.attrs["node1"][names.ATTR_TIMELINE] == "4"


def test_a_recloned_node_says_where_the_old_data_went(forked: Node, cluster: FakeCluster,
                                                      capsys: pytest.CaptureFixture) -> None:
    forked.params["rewind_reclone"] = "true"
    forked.rewind_result = rewind.Result(rewind.RECLONE, "no wal_log_hints", moved_aside="/data.pha-old-T")
    assert forked.run("start") == ocf.SUCCESS
    assert forked.rewinds[0]["reclone_allowed"] is True
    assert cluster.attrs["node1"][names.ATTR_REWOUND].endswith(" 0 /data.pha-old-T")
    assert "the old data directory is in /data.pha-old-T" in capsys.readouterr().err


def test_a_rewind_that_finds_nothing_to_do_starts_normally(forked: Node, cluster: FakeCluster) -> None:
    forked.rewind_result = rewind.Result(rewind.NONE, "not forked: this node can follow the cluster's history")
    assert forked.run("start") == ocf.SUCCESS
    assert names.ATTR_REWOUND not in cluster.attrs["node1"] and ("start",) in forked.pg.calls


@pytest.mark.parametrize("result, reason", [
    (rewind.Result(rewind.REFUSE, "timeline 3 forked; the primary (node2) cannot be reached to rewind or copy "
                                  "from: retry once it answers"),
     "repair: timeline 3 forked; the primary (node2) cannot be reached to rewind or copy from: retry once it "
     "answers; repair with cls_repair_by_pg_rewind"),
    (rewind.Result(rewind.REFUSE, "timeline 3 forked; pg_rewind failed: re-clone it (cls_repair_by_pg_rewind "
                                  "--reclone, or cls_rebuild_slave)"),
     "repair: timeline 3 forked; pg_rewind failed: re-clone it (cls_repair_by_pg_rewind --reclone, or "
     "cls_rebuild_slave)\n"),
    (PgError("pg_basebackup failed (exit 1): connection refused"),
     "repair: pg_basebackup failed (exit 1): connection refused; repair with cls_repair_by_pg_rewind"),
    (PermissionError(13, "Permission denied", "/var/lib/pha/rewind"),
     "repair: [Errno 13] Permission denied: '/var/lib/pha/rewind'"),
])
def test_a_refused_rewind_fails_the_start_naming_why(forked: Node, cluster: FakeCluster, capsys: pytest.CaptureFixture,
                                                    result: object, reason: str) -> None:
    forked.rewind_result = result
    assert forked.run("start") == ocf.ERR_GENERIC
    assert ("start",) not in forked.pg.calls and names.ATTR_REWOUND not in cluster.attrs["node1"]
    assert "ocf-exit-reason:" + reason in capsys.readouterr().err
    assert Path(forked.ctx.fork_marker).exists()       # still refused until repaired


def test_without_auto_rewind_a_forked_node_is_refused_with_the_repair_named(forked: Node,
                                                                            capsys: pytest.CaptureFixture) -> None:
    forked.params["auto_rewind"] = "false"
    assert forked.run("start") == ocf.ERR_GENERIC
    assert not forked.rewinds
    assert "ocf-exit-reason:repair with cls_repair_by_pg_rewind: timeline 3 forked" in capsys.readouterr().err


def test_the_rewind_waits_a_little_for_the_writer_vip(forked: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, False, True])
    monkeypatch.setattr(rewind, "reachable", lambda host, port, timeout=5.0: next(answers))
    monkeypatch.setattr("pha.pgsql.rejoin.time.sleep", lambda s: None)
    forked.rewind_result = rewind.Result(rewind.REWIND, "timeline 3 forked", KEPT)
    assert forked.run("start") == ocf.SUCCESS
    assert next(answers, "used up") == "used up" and len(forked.rewinds) == 1


def test_a_node_that_did_not_fork_is_never_rewound(node: Node) -> None:
    assert node.run("start") == ocf.SUCCESS and not node.rewinds


def test_start_fails_cleanly_when_pg_controldata_fails(node: Node, capsys: pytest.CaptureFixture) -> None:
    def broken() -> dict:
        raise PgError("pg_controldata failed: could not open file global/pg_control")
    node.pg.controldata = broken
    assert node.run("start") == ocf.ERR_GENERIC
    assert "ocf-exit-reason:pg_controldata failed" in capsys.readouterr().err


def test_a_pha_conf_that_cannot_be_written_fails_the_start(node: Node, capsys: pytest.CaptureFixture) -> None:
    def broken(settings: dict) -> bool:
        raise PgError("setting primary_conninfo: its value holds a newline or NUL")
    node.pg.write_conf = broken
    assert node.run("start") == ocf.ERR_GENERIC
    assert "ocf-exit-reason:setting primary_conninfo" in capsys.readouterr().err


# --- stop ------------------------------------------------------------------------------------
def test_stop_with_quorum_is_fast_and_withdraws_the_score(node: Node, cluster: FakeCluster) -> None:
    node.pg.running = True
    cluster.attrs["node1"][SCORE] = "100"
    node.save_state(held=True)
    assert node.run("stop") == ocf.SUCCESS
    assert node.pg.calls[-1] == ("stop", 10, False)
    assert SCORE not in cluster.attrs["node1"] and cluster.attrs["node1"][names.ATTR_STATUS] == decide.STOP
    assert node.state().held is False


def test_stop_without_quorum_is_immediate(node: Node, cluster: FakeCluster) -> None:
    node.pg.running = True
    cluster.corosync_quorum = False
    assert node.run("stop") == ocf.SUCCESS and node.pg.calls[-1] == ("stop", 10, True)


def test_an_unanswered_quorum_question_counts_as_none_and_says_so(node: Node, cluster: FakeCluster,
                                                                 capsys: pytest.CaptureFixture) -> None:
    node.pg.running = True
    cluster.broken.add("has_quorum")
    assert node.run("stop") == ocf.SUCCESS and node.pg.calls[-1] == ("stop", 10, True)
    assert "cannot tell whether this partition has quorum, assuming not" in capsys.readouterr().err


def test_stop_succeeds_while_pacemaker_goes_away(node: Node, cluster: FakeCluster,
                                                 capsys: pytest.CaptureFixture) -> None:
    node.pg.running = True
    cluster.broken.update({"delete_promotion_score", "set_node_attr", "has_quorum"})
    assert node.run("stop") == ocf.SUCCESS and not node.pg.running
    err = capsys.readouterr().err
    assert "could not delete this node's promotion score" in err and "could not publish pgsql-status" in err


def test_a_failed_stop_fails(node: Node, capsys: pytest.CaptureFixture) -> None:
    node.pg.running = True
    node.pg.stop_error = PgError("pg_ctl stop failed: timed out")
    assert node.run("stop") == ocf.ERR_GENERIC and "timed out" in capsys.readouterr().err


def test_stop_of_the_primary_releases_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              cluster: FakeCluster) -> None:
    released = tmp_path / "released"
    node = primary_node(tmp_path, monkeypatch, cluster, enable_distlock="true", distlock_lock_cmd="/bin/true",
                        distlock_unlock_cmd=f"touch {released}")
    assert node.run("stop") == ocf.SUCCESS and released.exists()


# --- notify ----------------------------------------------------------------------------------
def notify_meta(kind: str, operation: str, **lists: str) -> dict[str, str]:
    meta = {"notify_type": kind, "notify_operation": operation}
    meta.update({f"notify_{name}_uname": hosts for name, hosts in lists.items()})
    return meta


def test_pre_demote_notification_remembers_that_a_stop_follows(node: Node) -> None:
    node.pg.running = True
    assert node.run("notify", **notify_meta("pre", "demote", demote="node1", stop="node1")) == ocf.SUCCESS
    assert node.state().stop_follows is True
    assert node.run("notify", **notify_meta("pre", "demote", demote="node1")) == ocf.SUCCESS
    assert node.state().stop_follows is False


def test_post_promote_notification_restarts_the_wal_receiver(node: Node) -> None:
    node.pg.running = True
    receiver = subprocess.Popen(["sleep", "30"])
    node.pg.receiver_pid = receiver.pid
    assert node.run("notify", **notify_meta("post", "promote", promote="node2")) == ocf.SUCCESS
    assert receiver.wait(timeout=5) == -15


def test_notify_leaves_a_stopped_instance_alone(node: Node) -> None:
    assert node.run("notify", **notify_meta("pre", "demote", demote="node1", stop="node1")) == ocf.SUCCESS
    assert node.state().stop_follows is False


def test_a_failed_receiver_restart_is_only_a_warning(node: Node, capsys: pytest.CaptureFixture) -> None:
    node.pg.running = True
    node.pg.receiver_pid = 2 ** 22 + 12345       # no such process
    assert node.run("notify", **notify_meta("post", "promote", promote="node2")) == ocf.SUCCESS
    assert "could not restart the WAL receiver" in capsys.readouterr().err


# --- validate-all and meta-data -------------------------------------------------------------------
def test_validate_accepts_good_parameters(node: Node) -> None:
    assert node.run("validate-all") == ocf.SUCCESS


@pytest.mark.parametrize("params, rc, reason", [
    ({"pgctl": "/nonexistent/pg_ctl"}, ocf.ERR_INSTALLED, "parameter pgctl="),
    ({"pgdba": "no-such-user-here"}, ocf.ERR_CONFIGURED, "parameter pgdba=no-such-user-here: no such user"),
    ({"pgdata": "/nonexistent"}, ocf.ERR_INSTALLED, "no such directory"),
    ({"node_list": "node2 node3"}, ocf.ERR_CONFIGURED, "does not hold this node (node1)"),
    ({"master_ip": "writer"}, ocf.ERR_CONFIGURED, "parameter master_ip=writer is not an address"),
    ({"enable_distlock": "true"}, ocf.ERR_CONFIGURED, "distlock_lock_cmd is required"),
    ({"passfile": "/nonexistent/pgpass"}, ocf.ERR_CONFIGURED, "parameter passfile="),
    ({"pgport": "70000"}, ocf.ERR_CONFIGURED, "pgport"),
    ({"enable_distlock": "true", "distlock_lock_cmd": "pha distlock 'lock"}, ocf.ERR_CONFIGURED,
     "parameter distlock_lock_cmd="),
    ({"distlock_unlock_cmd": 'pha distlock "unlock'}, ocf.ERR_CONFIGURED, "parameter distlock_unlock_cmd="),
])
def test_validate_refuses(node: Node, capsys: pytest.CaptureFixture, params: dict, rc: int, reason: str) -> None:
    node.params.update(params)
    assert node.run("validate-all") == rc
    assert reason in capsys.readouterr().err


def test_validate_finds_the_programs_of_pgdatas_version(node: Node, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    node.params["pgctl"] = ""
    layout = str(Path(node.params["pgdata"]).parent / "pg{major}")
    monkeypatch.setattr(binaries.bindir_for, "__kwdefaults__",
                        {"layouts": (layout,), "search_path": "", "run": lambda argv: None})
    assert node.run("validate-all") == ocf.ERR_INSTALLED
    err = capsys.readouterr().err
    assert "PostgreSQL 15 (PG_VERSION of" in err and "set the pgctl parameter" in err
    bindir = Path(node.params["pgdata"]).parent / "pg15"
    bindir.mkdir()
    (bindir / "postgres").write_text("#!/bin/sh\n")
    (bindir / "postgres").chmod(0o755)
    assert node.run("validate-all") == ocf.SUCCESS


@pytest.mark.parametrize("params, rc, reason", [
    ({"start_opt": "-c 'unbalanced"}, ocf.ERR_CONFIGURED, "parameter start_opt=-c 'unbalanced"),
    ({"ctl_opt": "\"open"}, ocf.ERR_CONFIGURED, "parameter ctl_opt="),
    ({"rewind_keep_dir": "rewind"}, ocf.ERR_CONFIGURED, "parameter rewind_keep_dir=rewind: must be an absolute"),
])
def test_validate_refuses_options_that_do_not_split(node: Node, capsys: pytest.CaptureFixture, params: dict,
                                                    rc: int, reason: str) -> None:
    node.params.update(params)
    assert node.run("validate-all") == rc
    assert reason in capsys.readouterr().err


def test_meta_data_names_no_version() -> None:
    from pha.agents import pgsql
    by_name = {p.name: p for p in pgsql.AGENT.params}
    assert by_name["pgctl"].default == "" and by_name["pgdata"].required and by_name["pgdata"].default in (None, "")
    assert by_name["auto_rewind"].default is True and by_name["rewind_reclone"].default is False
    import re
    assert not re.search(r"postgresql/1[0-9]", pgsql.AGENT.metadata())


def test_validate_refuses_an_old_or_open_data_directory(node: Node, capsys: pytest.CaptureFixture) -> None:
    pgdata = Path(node.params["pgdata"])
    (pgdata / "PG_VERSION").write_text("11\n")
    assert node.run("validate-all") == ocf.ERR_CONFIGURED and "pha needs 12+" in capsys.readouterr().err
    (pgdata / "PG_VERSION").unlink()
    assert node.run("validate-all") == ocf.ERR_INSTALLED
    (pgdata / "PG_VERSION").write_text("16\n")
    os.chmod(pgdata, 0o770)
    assert node.run("validate-all") == ocf.ERR_CONFIGURED and "mode 0700 or 0750" in capsys.readouterr().err


def test_meta_data_imports_neither_pacemakers_bridge_nor_psycopg() -> None:
    code = ("import sys, io, contextlib\n"
            "from pha.agents import pgsql\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    assert pgsql.AGENT.run(['meta-data']) == 0\n"
            "assert 'ocf:pha:pgsql' in out.getvalue() or 'pgsql' in out.getvalue()\n"
            "heavy = [m for m in ('pha.crm', 'psycopg', 'pha.pgsql.context', 'pha.pgsql.decide') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


# --- the state file --------------------------------------------------------------------------------
def test_an_unreadable_state_file_starts_afresh(node: Node, capsys: pytest.CaptureFixture) -> None:
    node.tmpdir.mkdir(mode=0o700)
    (node.tmpdir / "pgsql.state").write_text("{not json")
    node.pg.running = True
    assert node.run("monitor") == ocf.SUCCESS
    assert "unreadable, starting afresh" in capsys.readouterr().err
    assert node.state().receiver_seen == "streaming"


def test_state_keeps_known_fields_of_the_right_type() -> None:
    from pha.pgsql.context import State
    state = State.from_json({"primary": True, "rounds": "3", "promoted_at": 12, "baseline": "0/1",
                             "published": {"node1/pgsql-status/reboot": "PRI"}, "gone": 1})
    assert state == State(primary=True, promoted_at=12, baseline="0/1",
                          published={"node1/pgsql-status/reboot": "PRI"})
    assert State.from_json(["not", "a", "dict"]) == State()


def test_production_wiring(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    from pha.crm import Crm
    from pha.pgsql import context
    from pha.pgsql.instance import Instance
    monkeypatch.undo()      # the real context.build
    node.params.update(pgport="5433", socketdir="/run/pg")
    seen = {}
    from pha.agents import pgsql

    def capture(res) -> int:
        seen["ctx"] = pgsql.ctx_of(res)
        return ocf.SUCCESS
    monkeypatch.setitem(pgsql.AGENT.handlers, "notify", capture)
    assert node.run("notify") == ocf.SUCCESS
    ctx = seen["ctx"]
    assert isinstance(ctx.crm, Crm) and isinstance(ctx.pg, Instance)
    assert (ctx.pg.pgdata, ctx.pg.port, ctx.pg.socketdir) == (node.params["pgdata"], 5433, "/run/pg")
    assert (ctx.rsc, ctx.me, ctx.nodes, ctx.sync) == ("pgsql", "node1", ["node1", "node2", "node3"], True)


def test_pha_status_says_what_was_rewound_and_where() -> None:
    from pha.commands import status
    from test_commands import cib, view
    shown = view("healthy")
    shown.node_attributes.setdefault("node2", {})[names.ATTR_REWOUND] = f"2026-11-29T22:00:00Z 33554432 {KEPT.directory}"
    report = status.summarize(shown, cib(), "node1|2|0/40000A0")
    assert report["healthy"] and report["nodes"]["node2"]["rewound"].startswith("2026-11-29T22:00:00Z")
    assert (f"rewound:    node2 at 2026-11-29T22:00:00Z: 33554432 bytes of WAL kept in {KEPT.directory}"
            in status.render(report))
