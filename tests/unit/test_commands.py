"""The cluster commands' pure logic and their CLI, on crm_mon / CIB XML captured from
the lab's pha cluster (pacemaker 2.1.5, `pha setup templates/lab.ini`):

- commands_cib.xml: the CIB configuration of that cluster; commands_cib_lvs.xml: the
  muti_with_lvs template's, built with pcs -f;
- commands_crm_mon_healthy.xml: node1 primary, node2 sync, node3 potential;
- commands_crm_mon_standby.xml: node3 in standby;
- commands_crm_mon_forked.xml: node1 killed, then written alone, refused by the fork guard.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import click
import pytest
from click.testing import CliRunner

from pha import cib as cib_xml
from pha import crm, crmstatus
from pha.agents import pgsql as pgsql_agent
from pha.commands import common, control, registry, repair, status, switch
from pha.commands.common import EXIT_REFUSED, EXIT_TIMEOUT, EXIT_USAGE, Failed

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parent / "data"


def view(state: str) -> crmstatus.ClusterStatus:
    return crmstatus.parse_crm_mon((DATA / f"commands_crm_mon_{state}.xml").read_text())


def cib(name: str = "commands_cib") -> common.Cib:
    return common.parse_cib((DATA / f"{name}.xml").read_text())


def with_params(base: common.Cib, **params: str) -> common.Cib:
    pgsql = base.pgsql()
    changed = pgsql._replace(params={**pgsql.params, **params})
    return base._replace(primitives={**base.primitives, pgsql.id: changed})


def without_primary(v: crmstatus.ClusterStatus) -> crmstatus.ClusterStatus:
    return v._replace(resources=[r._replace(role="Unpromoted") if r.role == "Promoted" else r
                                 for r in v.resources])


# --- the CIB ---------------------------------------------------------------------------------
def test_the_pgsql_resource_and_what_depends_on_it() -> None:
    c = cib()
    pgsql = c.pgsql()
    assert (pgsql.id, pgsql.top, pgsql.agent) == ("pgsql", "pgsql-clone", "ocf:pha:pgsql")
    assert pgsql.params["rep_mode"] == "sync" and common.node_list(pgsql) == ["node1", "node2", "node3"]
    assert pgsql.clone_meta["promotable"] == "true"
    assert c.dependents("pgsql-clone") == ["vip-writer", "vip-reader"]
    assert c.target_role("pgsql-clone") is None
    settings = common.pgsql_settings(pgsql, cib_xml.agent_defaults(pgsql_agent.AGENT.metadata()))
    assert settings["pgdata"] == "/var/lib/postgresql/15/pha" and settings["passfile"] == ""
    assert settings["pgdba"] == "postgres"   # the agent's default: not in the CIB
    assert settings["check_wal_receiver"] == "true" and settings["monitor_sql"] == "select 1"


def test_the_agents_defaults_come_from_its_meta_data(fake) -> None:
    runner = fake("healthy")
    settings = common.pgsql_settings(cib().pgsql())
    assert settings["pgdba"] == "postgres" and settings["node_list"] == "node1 node2 node3"
    assert ["crm_resource", "--show-metadata=ocf:pha:pgsql"] in runner.argvs


def test_lvs_resources_follow_the_clone() -> None:
    c = cib("commands_cib_lvs")
    assert c.dependents("pgsql-clone") == ["vip-writer", "vip-reader", "lvsdr-realsvr-clone", "lvsdr"]
    assert [p.id for p in c.by_agent("ocf:pha:lvsdr")] == ["lvsdr"]
    assert c.primitives["lvsdr-realsvr"].top == "lvsdr-realsvr-clone"
    roles = {(x.rsc, x.with_rsc): x.with_role for x in c.colocations}
    assert roles[("vip-writer", "pgsql-clone")] == "Promoted"
    assert roles[("lvsdr-realsvr-clone", "pgsql-clone")] == "Unpromoted"


def test_a_disabled_clone_is_seen() -> None:
    text = (DATA / "commands_cib.xml").read_text().replace(
        '<nvpair id="pgsql-clone-meta_attributes-promotable"',
        '<nvpair id="t" name="target-role" value="Stopped"/><nvpair id="pgsql-clone-meta_attributes-promotable"')
    assert common.parse_cib(text).target_role("pgsql-clone") == "Stopped"


@pytest.mark.parametrize("xml, message", [
    ("<configuration><resources/></configuration>", "no PostgreSQL resource"),
    ("<configuration><resources>"
     "<clone id='a'><primitive id='p1' class='ocf' provider='pha' type='pgsql'/></clone>"
     "<clone id='b'><primitive id='p2' class='ocf' provider='pha' type='pgsql'/></clone>"
     "</resources></configuration>", "several PostgreSQL clones in the CIB (a, b)"),
])
def test_the_pgsql_resource_must_be_there_once(xml: str, message: str, fake, monkeypatch) -> None:
    with pytest.raises(cib_xml.NoPgsqlResource, match=re.escape(message)):
        common.parse_cib(xml).pgsql()
    fake("healthy")
    monkeypatch.setattr(common.Cluster, "cib", lambda self: common.parse_cib(xml))
    with pytest.raises(Failed, match=re.escape(message)) as caught:
        common.Cluster().pgsql()
    assert caught.value.exit_code == EXIT_REFUSED


def test_a_broken_cib_is_a_clear_error() -> None:
    with pytest.raises(Failed, match="the CIB is not XML"):
        common.parse_cib("<cib")


# --- status -----------------------------------------------------------------------------------
def test_healthy_summary() -> None:
    report = status.summarize(view("healthy"), cib(), "node1|2|0/40000A0")
    assert report["healthy"] and report["verdict"] == "healthy" and report["problems"] == []
    assert report["primary"] == "node1" and report["rep_mode"] == "sync"
    assert [(s["node"], s["pgsql_status"], s["data_status"], s["lag_bytes"]) for s in report["standbys"]] == [
        ("node2", "HS:sync", "STREAMING|SYNC", 0), ("node3", "HS:potential", "STREAMING|POTENTIAL", 0)]
    assert report["repl_info"] == {"raw": "node1|2|0/40000A0", "primary": "node1", "timeline": 2,
                                   "switch_lsn": "0/40000A0"}
    assert report["vips"]["vip-writer"]["nodes"] == ["node1"] and report["vips"]["vip-writer"]["role"] == "writer"
    assert report["vips"]["vip-reader"]["nodes"] == ["node2"] and report["vips"]["vip-reader"]["role"] == "reader"
    json.dumps(report)
    text = status.render(report)
    assert "primary:    node1   (vip-writer 10.82.0.100 on node1)" in text
    assert "node3      HS:potential  STREAMING|POTENTIAL  lag 0 B" in text and text.endswith("verdict:    healthy")


def test_vips_are_told_by_their_colocation_with_the_clone() -> None:
    base = cib()
    reader = base.primitives["vip-reader"]
    # a stopped IPaddr2 of something else, and a pha4pgsql-style reader VIP with the Unpromoted role
    other = reader._replace(id="smoke-vip", agent="ocf:heartbeat:IPaddr2", params={"ip": "10.82.0.50"})
    slave = reader._replace(id="vip-slave", params={"ip": "10.82.0.102"})
    colocation = next(c for c in base.colocations if c.rsc == "vip-reader")
    c = base._replace(primitives={**base.primitives, "smoke-vip": other, "vip-slave": slave},
                      colocations=[*base.colocations, colocation._replace(id="x", rsc="vip-slave",
                                                                           with_role="Unpromoted")])
    report = status.summarize(view("healthy"), c, None)
    assert "smoke-vip" not in report["vips"] and "10.82.0.50" not in status.render(report)
    assert report["vips"]["vip-slave"]["role"] == "reader" and report["vips"]["vip-writer"]["role"] == "writer"
    assert report["problems"] == ["reader VIP vip-slave (10.82.0.102) is not running"]


def test_a_node_in_standby_is_named() -> None:
    report = status.summarize(view("standby"), cib(), None)
    assert not report["healthy"] and report["problems"] == ["node3 is in standby (cls_unstandby_node node3)"]
    assert report["verdict"] == "UNHEALTHY: node3 is in standby (cls_unstandby_node node3)"
    assert report["repl_info"] is None and report["nodes"]["node3"]["role"] == "Stopped"


def test_a_refused_node_shows_why() -> None:
    report = status.summarize(view("forked"), cib(), "node2|3|0/40001B8")
    assert report["problems"][0].startswith("PostgreSQL is not started on node1 (timeline 2 forked: this node's WAL")
    assert any(w.startswith("failed start of pgsql on node1: timeline 2 forked") for w in report["warnings"])


def test_maintenance_no_primary_and_misplaced_vips_are_problems() -> None:
    v = view("healthy")
    v = v._replace(summary=v.summary._replace(maintenance_mode=True, quorum=False))
    v = without_primary(v)
    report = status.summarize(v, cib(), None)
    assert report["problems"][:2] == [
        "no quorum: this node's partition cannot run resources",
        "the cluster is in maintenance mode: nothing fails over (cls_unmaintenance)"]
    assert "no primary" in report["problems"]
    assert "node1 is not streaming (pgsql-data-status=LATEST)" in report["problems"]


def test_async_mode_needs_no_sync_standby() -> None:
    v = view("healthy")
    attrs = dict(v.node_attributes)
    attrs["node2"] = {**attrs["node2"], "pgsql-data-status": "STREAMING|ASYNC"}
    attrs["node3"] = {**attrs["node3"], "pgsql-data-status": "STREAMING|ASYNC"}
    v = v._replace(node_attributes=attrs)
    assert status.summarize(v, cib(), None)["problems"] == ["rep_mode is sync but no standby is STREAMING|SYNC"]
    assert status.summarize(v, with_params(cib(), rep_mode="async"), None)["healthy"]


def test_lvs_weights_come_from_ipvs_on_the_director_only(monkeypatch: pytest.MonkeyPatch) -> None:
    c = cib("commands_cib_lvs")
    v = view("healthy")
    v = v._replace(resources=[*v.resources, crmstatus.Resource("lvsdr", "ocf:pha:lvsdr", "Started", None, True, False,
                                                          False, True, False, False, ("node2",))])
    elsewhere = status.lvs_summary(v, c, "node1")
    assert elsewhere["director"] == "node2" and elsewhere["real_servers"] is None
    assert elsewhere["note"] == "weights are in node2's kernel: run cls_status there"
    monkeypatch.setattr(status, "read_ipvs", lambda vip, port: {
        "real_servers": [{"address": "192.0.2.12", "port": port, "weight": 1}]})
    here = status.lvs_summary(v, c, "node2")
    assert here["service"] == "192.0.2.237:5432" and here["real_servers"][0]["weight"] == 1
    report = status.summarize(v, c, None, here)
    assert "LVS:        192.0.2.237:5432 director node2; real servers: 192.0.2.12 weight 1" in status.render(report)


# --- switchover target ---------------------------------------------------------------------------
def test_without_to_the_sync_standby_is_chosen() -> None:
    assert switch.choose_target(view("healthy"), cib().pgsql(), None) == ("node1", "node2")
    assert switch.candidates(view("healthy"), cib().pgsql()) == ["node2"]


def test_a_non_sync_target_is_refused_in_sync_mode() -> None:
    with pytest.raises(Failed) as caught:
        switch.choose_target(view("healthy"), cib().pgsql(), "node3")
    assert caught.value.exit_code == EXIT_REFUSED
    assert caught.value.message == (
        "--to node3: refused, the switch could lose data: it is STREAMING|POTENTIAL, not the synchronous "
        "standby: commits the primary acknowledged may be missing there (rep_mode=sync); node2 can take over")


def test_in_async_mode_any_streaming_standby_may_be_the_target() -> None:
    pgsql = with_params(cib(), rep_mode="async").pgsql()
    assert switch.choose_target(view("healthy"), pgsql, "node3") == ("node1", "node3")
    assert switch.candidates(view("healthy"), pgsql) == ["node2", "node3"]   # by promotion score


@pytest.mark.parametrize("state, to, code, message", [
    ("healthy", "node1", EXIT_USAGE, "--to node1: already the primary"),
    ("healthy", "node9", EXIT_USAGE, "--to node9: not a node of pgsql's node_list (node1 node2 node3)"),
    ("standby", "node3", EXIT_REFUSED, "--to node3: refused, the switch could lose data: it is in standby or "
                                       "maintenance; node2 can take over"),
    ("forked", "node1", EXIT_REFUSED, "--to node1: refused, the switch could lose data: PostgreSQL does not run "
                                      "there"),
])
def test_a_bad_target_is_refused(state: str, to: str, code: int, message: str) -> None:
    with pytest.raises(Failed) as caught:
        switch.choose_target(view(state), cib().pgsql(), to)
    assert (caught.value.exit_code, caught.value.message) == (code, message)


def test_no_switch_without_a_primary_or_a_candidate() -> None:
    with pytest.raises(Failed, match="there is no primary to switch over from"):
        switch.choose_target(without_primary(view("healthy")), cib().pgsql(), None)
    v = view("standby")
    attrs = {**v.node_attributes, "node2": {**v.node_attributes["node2"], "pgsql-data-status": "DISCONNECT"}}
    with pytest.raises(Failed, match="none is the streaming synchronous standby"):
        switch.choose_target(v._replace(node_attributes=attrs), cib().pgsql(), None)


def test_switch_progress_checks() -> None:
    pgsql = cib().pgsql()
    assert switch.switched(view("healthy"), pgsql, "vip-writer", "node1") == []
    assert switch.switched(view("healthy"), pgsql, "vip-writer", "node2") == [
        "node2 promoted (Promoted: node1)", "vip-writer on node2"]
    assert switch.streaming_again(view("healthy"), pgsql, "node3") == []
    assert switch.streaming_again(view("standby"), pgsql, "node3") == ["node3 running as a standby"]
    assert switch.writer_vip(cib(), pgsql) == "vip-writer"
    assert switch.settled(view("healthy"), pgsql, "node1") == []
    assert switch.settled(view("healthy"), pgsql, "node2") == ["node2 promoted (Promoted: node1)"]
    v = view("healthy")
    stale = {**v.node_attributes, "node2": {**v.node_attributes["node2"], "master-pgsql": "1000"}}
    assert switch.settled(v._replace(node_attributes=stale), pgsql, "node1") == ["node2 to score below node1"]
    assert switch.promotion_score(v, pgsql, "node3") == -1_000_000


# --- start / stop / standby --------------------------------------------------------------------
def test_start_and_stop_checks() -> None:
    pgsql = cib().pgsql()
    assert control.start_missing(view("healthy"), cib(), pgsql) == []
    assert control.start_missing(view("standby"), cib(), pgsql) == []          # standby nodes do not count
    assert control.start_missing(without_primary(view("healthy")), cib(), pgsql)[0] == "a primary"
    assert control.start_missing(view("forked"), cib(), pgsql) == ["PostgreSQL on node1"]
    assert control.stop_remaining(view("healthy"), ["pgsql-clone", "vip-writer"]) == [
        "pgsql-clone on node1, node2, node3", "vip-writer on node1"]


def test_standby_checks() -> None:
    pgsql = cib().pgsql()
    assert control.standby_missing(view("standby"), "node3", "pgsql-clone", True) == []
    assert control.standby_missing(view("healthy"), "node3", "pgsql-clone", True) == ["pgsql-clone still on node3"]
    assert control.unstandby_missing(view("standby"), "node3", pgsql) == ["PostgreSQL on node3"]
    assert control.unstandby_missing(view("healthy"), "node3", pgsql) == []
    assert control.resources_on(view("healthy"), "node1") == ["pgsql-clone", "vip-writer"]


# --- waiting ---------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_shows_progress_and_returns_the_time() -> None:
    clock, lines = Clock(), []
    answers = iter([(False, "a"), (False, "b")] * 4 + [(True, "")])
    seconds = common.wait("x", lambda: next(answers), timeout=60, echo=lines.append, clock=clock,
                          sleep=clock.sleep)
    assert seconds == 8.0
    assert lines == ["waiting for x (up to 60s)", "      5s  still waiting: b", "x: done after 8.0s"]


def test_wait_times_out_naming_what_is_missing() -> None:
    clock = Clock()

    def check() -> tuple[bool, str]:
        raise Failed("crm_mon is busy")
    with pytest.raises(Failed) as caught:
        common.wait("a primary", check, timeout=3, echo=lambda _: None, clock=clock, sleep=clock.sleep)
    assert caught.value.exit_code == EXIT_TIMEOUT
    assert caught.value.message == "a primary: not reached within 3s: crm_mon is busy"


# --- the CLI ------------------------------------------------------------------------------------------
class FakeRunner:
    """Answers Pacemaker CLIs from the captured XML; records what it ran."""

    def __init__(self, state: str, repl_info: Optional[str] = "node1|2|0/40000A0") -> None:
        self.state, self.repl_info, self.argvs = state, repl_info, []

    def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
        self.argvs.append(list(argv))
        if argv[0] == "crm_mon" and "--output-as=xml" in argv:
            return crm.CommandResult(0, (DATA / f"commands_crm_mon_{self.state}.xml").read_text(), "")
        if argv[0] == "crm_mon":
            return crm.CommandResult(0, "crm_mon text\n", "")
        if argv[0] == "cibadmin":
            return crm.CommandResult(0, (DATA / "commands_cib.xml").read_text(), "")
        if argv[0] == "crm_resource" and argv[1] == "--show-metadata=ocf:pha:pgsql":
            return crm.CommandResult(0, pgsql_agent.AGENT.metadata(), "")
        if argv[0] == "crm_node":
            return crm.CommandResult(0, "node1\n", "")
        if argv[0] == "crm_attribute" and "--query" in argv:
            if self.repl_info is None:
                return crm.CommandResult(105, "", "Error performing operation: No such device or address")
            return crm.CommandResult(0, self.repl_info + "\n", "")
        return crm.CommandResult(0, "", "")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    def use(state: str, **kw: object) -> FakeRunner:
        runner = FakeRunner(state, **kw)  # type: ignore[arg-type]
        monkeypatch.setattr(common.Cluster, "__init__",
                            lambda self, bridge=None: setattr(self, "bridge", crm.Crm(runner, 5.0)))
        return runner
    return use


def test_status_command_exit_codes_and_json(fake) -> None:
    fake("healthy")
    done = CliRunner().invoke(status.status_cmd, ["--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["primary"] == "node1"
    fake("standby", repl_info=None)
    done = CliRunner().invoke(status.status_cmd, [])
    assert done.exit_code == 1
    assert done.stdout.startswith("crm_mon text\n--- pha ---")
    assert "verdict:    UNHEALTHY: node3 is in standby" in done.stdout


def test_master_command(fake) -> None:
    fake("healthy")
    assert CliRunner().invoke(status.master_cmd, []).stdout == "node1\n"
    assert json.loads(CliRunner().invoke(status.master_cmd, ["--json"]).stdout) == {"primary": "node1"}


def test_online_switch_refusal_changes_nothing(fake) -> None:
    runner = fake("healthy")
    done = CliRunner().invoke(switch.online_switch_cmd, ["--to", "node3"])
    assert done.exit_code == EXIT_REFUSED and "not the synchronous standby" in done.output
    assert not any("--move" in argv for argv in runner.argvs)


def test_reset_master_needs_no_primary_and_yes(fake) -> None:
    fake("healthy")
    done = CliRunner().invoke(switch.reset_master_cmd, ["--yes"])
    assert done.exit_code == EXIT_REFUSED and "node1 is the primary" in done.output


def test_repair_refuses_on_the_primary(fake) -> None:
    fake("healthy")
    done = CliRunner().invoke(repair.repair_cmd, ["--dry-run"])
    assert done.exit_code == EXIT_REFUSED and "node1 is the primary: nothing to repair here" in done.output


def test_node_commands_check_the_node(fake) -> None:
    fake("healthy")
    done = CliRunner().invoke(control.standby_node_cmd, ["node9"])
    assert done.exit_code == EXIT_USAGE and "node9 is not a node of this cluster (node1 node2 node3)" in done.output


@pytest.mark.parametrize("name", sorted(registry.COMMANDS))
def test_every_registered_command_loads_and_has_help(name: str) -> None:
    import importlib
    module, _, attr = registry.COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command) and command.name == name
    done = CliRunner().invoke(command, ["--help"])
    assert done.exit_code == 0 and "Usage:" in done.output


def test_every_cls_script_has_a_command() -> None:
    from pha import cli
    assert set(cli.CLS_COMMANDS.values()) <= set(registry.COMMANDS)


# --- local PostgreSQL files (repair) --------------------------------------------------------------------
def test_config_files_survive_a_wipe(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    (pgdata / "base").mkdir(parents=True)
    (pgdata / "postgresql.conf").write_text("cluster_name = 'node3'\n")
    (pgdata / "pg_hba.conf").write_text("local all all peer\n")
    os.chmod(pgdata / "pg_hba.conf", 0o640)
    settings = {"pgdata": str(pgdata), "pgctl": "/usr/lib/postgresql/15/bin/pg_ctl", "pgdba": "root",
                "tmpdir": str(tmp_path), "config": str(pgdata / "postgresql.conf"), "master_ip": "192.0.2.1",
                "pgport": "5432", "repuser": "rep", "passfile": "/etc/pha/pgpass"}
    local = repair.LocalPostgres(settings, "pgsql")
    saved = local.save_config()
    assert sorted(saved) == ["pg_hba.conf", "postgresql.conf"]
    local.wipe()
    assert local.is_empty() and pgdata.is_dir()
    local.restore_config(saved)
    assert (pgdata / "postgresql.conf").read_text() == "cluster_name = 'node3'\n"
    assert os.stat(pgdata / "pg_hba.conf").st_mode & 0o777 == 0o640
    assert local.env()["PGPASSFILE"] == "/etc/pha/pgpass"
    assert "password" not in local.source_conninfo() and "host=192.0.2.1 port=5432 user=rep" in local.source_conninfo()
    (tmp_path / "pgsql.state.forked").write_text("x")
    assert local.forget_fork() and not local.forget_fork()
