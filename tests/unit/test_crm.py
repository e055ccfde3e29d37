"""The Pacemaker bridge: argument lists, errors, timeouts, crm_mon XML parsing.

The crm_mon_*.xml files were captured from a real 3-node pacemaker 2.1.5
cluster (the reference namespace lab) with pha.crm.CRM_MON_ARGV; crm_mon_3.0_*.xml
from Pacemaker 3.0.0 (Debian 13, api-version 2.38) running pha's agents.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import pytest

from pha import crm

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "data"


def load(state: str) -> crm.ClusterStatus:
    return crm.parse_crm_mon((DATA / f"crm_mon_{state}.xml").read_text())


def node(st: crm.ClusterStatus, name: str) -> crm.Node:
    found = st.node(name)
    assert found is not None, name
    return found


class FakeRunner:
    """Records every (argv, timeout) and answers from a script of results."""

    def __init__(self, *results: crm.CommandResult) -> None:
        self.results = list(results)
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
        self.calls.append((tuple(argv), timeout))
        return self.results.pop(0) if self.results else crm.CommandResult(0, "", "")

    @property
    def argvs(self) -> list[list[str]]:
        return [list(argv) for argv, _ in self.calls]


def ok(stdout: str = "") -> crm.CommandResult:
    return crm.CommandResult(0, stdout, "")


NOT_SET = crm.CommandResult(105, "", "crm_attribute: Error performing operation: "
                                     "No such device or address\n")
UNKNOWN_NODE = crm.CommandResult(105, "", "crm_attribute: Could not map name=nodeX to a UUID\n")


def fake(*results: crm.CommandResult, timeout: Optional[float] = None) -> tuple[crm.Crm, FakeRunner]:
    runner = FakeRunner(*results)
    return crm.Crm(run=runner, timeout=timeout), runner


# --- captured crm_mon XML ----------------------------------------------------------
def test_pacemaker_3_healthy() -> None:
    """Pacemaker 3.0: pacemakerd's state is an attribute of <stack>; the rest reads as on 2.1."""
    st = load("3.0_healthy")
    s = st.summary
    assert (s.stack, s.dc, s.dc_id, s.quorum, s.pacemakerd_state) == ("corosync", "node2", "2", True, "running")
    assert (s.dc_version or "").startswith("3.0.0")
    assert not s.stonith_enabled and s.no_quorum_policy == "stop" and not s.maintenance_mode
    assert st.online_nodes() == ["node1", "node2", "node3"]
    assert st.clones["pgsql-clone"].promotable
    assert st.promoted_nodes("pgsql") == ["node1"]
    assert sorted(st.unpromoted_nodes("pgsql")) == ["node2", "node3"]
    assert st.resource_nodes("vip-writer") == ["node1"]
    assert st.attribute("node2", "pgsql-status") == "HS:sync"
    assert st.attribute("node3", "master-pgsql") == "-INFINITY"
    assert not st.failures and not st.fail_counts


def test_pacemaker_3_failure() -> None:
    st = load("3.0_failed")
    assert st.summary.pacemakerd_state == "running"
    assert st.fail_counts == {"node1": {"pgsql": 1}}
    (failure,) = st.failures
    assert (failure.node, failure.task, failure.rc, failure.interval_ms) == ("node1", "monitor", 7, 2000)
    assert failure.op_key == "pgsql_monitor_2000" and failure.rc_text == "Not running"
    assert [r.failed for r in st.instances("pgsql") if r.role == "Promoted"] == [True]


def test_pacemaker_302_reports_fencing_enabled() -> None:
    """Pacemaker 3.0.2 renamed stonith-enabled; crm_mon reports fencing-enabled."""
    xml = (DATA / "crm_mon_3.0_healthy.xml").read_text().replace(
        'stonith-enabled="false"', 'fencing-enabled="true"')
    assert crm.parse_crm_mon(xml).summary.stonith_enabled
    assert not load("3.0_healthy").summary.stonith_enabled


@pytest.mark.parametrize("version, option", [
    ((2, 1, 5), "stonith-enabled"), ((3, 0, 0), "stonith-enabled"), ((3, 0, 1), "stonith-enabled"),
    ((3, 0, 2), "fencing-enabled"), ((3, 1), "fencing-enabled")])
def test_fencing_option(version: tuple, option: str) -> None:
    assert crm.fencing_option(version) == option


@pytest.mark.parametrize("text, version", [
    ("Pacemaker 2.1.5\nWritten by Andrew Beekhof and the Pacemaker project contributors\n", (2, 1, 5)),
    ("Pacemaker 3.0.0\n", (3, 0, 0)), ("0.12.0.2\n", (0, 12, 0, 2)), ("3.0.0-3.0.0", (3, 0, 0)),
    ("2.1.5-a3f44794f94", (2, 1, 5)), ("", None), ("Pacemaker\n", None)])
def test_parse_version(text: str, version: Optional[tuple]) -> None:
    assert crm.parse_version(text) == version


def test_all_online() -> None:
    st = load("all_online")
    s = st.summary
    assert (s.stack, s.dc, s.dc_id, s.quorum) == ("corosync", "node3", "3", True)
    assert (s.dc_version or "").startswith("2.1.5")
    assert (s.nodes_configured, s.resources_configured, s.resources_disabled) == (3, 7, 1)
    assert not s.maintenance_mode and not s.stonith_enabled and s.no_quorum_policy == "stop"
    assert s.pacemakerd_state == "running"
    assert st.online_nodes() == ["node1", "node2", "node3"]
    node3 = node(st, "node3")
    assert node3.is_dc and node3.id == "3" and node3.type == "member"
    assert node3.resources_running == 1 and node3.expected_up
    assert not any(n.standby or n.maintenance or n.pending or n.unclean for n in st.nodes)
    assert st.node("nodeX") is None

    assert st.resource_nodes("dummy1") == ["node1"]
    dummy1 = st.instances("dummy1")[0]
    assert (dummy1.agent, dummy1.role, dummy1.clone, dummy1.group) == (
        "ocf:heartbeat:Dummy", "Started", None, None)
    assert dummy1.active and dummy1.managed and not dummy1.failed and not dummy1.blocked

    assert st.clones["st-clone"].promotable and not st.clones["st-clone"].unique
    assert st.promoted_nodes("st-clone") == st.promoted_nodes("st") == ["node2"]
    assert st.unpromoted_nodes("st-clone") == ["node1", "node3"]
    assert sorted(st.resource_nodes("st-clone")) == ["node1", "node2", "node3"]
    assert all(r.clone == "st-clone" and r.promotable for r in st.instances("st-clone"))

    assert st.groups["grp"].members == ("d-a", "d-b")
    assert st.resource_nodes("grp") == ["node2"]
    assert [r.group for r in st.instances("grp")] == ["grp", "grp"]

    off = st.inactive_resources()
    assert [(r.id, r.role, r.target_role, r.nodes) for r in off] == [
        ("dummy-off", "Stopped", "Stopped", ())]

    assert st.node_attributes["node2"] == {"master-st": "10", "pgsql-status": "HS:sync",
                                           "site": "east"}
    assert st.attribute("node1", "pgsql-status") == "PRI"
    assert st.attribute("node1", "site") is None
    assert st.bans == [crm.Ban(id="cli-ban-dummy1-on-node3", resource="dummy1", node="node3",
                               weight=-crm.SCORE_INFINITY, promoted_only=False)]
    assert st.failures == [] and st.fail_counts == {}


def test_node_in_standby() -> None:
    st = load("standby")
    node2 = node(st, "node2")
    assert node2.standby and node2.online and node2.resources_running == 0
    assert not node(st, "node1").standby
    assert "node2" not in st.resource_nodes("st-clone")
    assert [(r.id, r.role) for r in st.inactive_resources()] == [("st", "Stopped"),
                                                                  ("dummy-off", "Stopped")]


def test_node_in_maintenance() -> None:
    st = load("node_maintenance")
    assert node(st, "node3").maintenance and not node(st, "node1").maintenance
    on_node3 = [r for r in st.resources if "node3" in r.nodes]
    assert {r.id for r in on_node3} == {"st", "d-a", "d-b"}
    assert all(not r.managed for r in on_node3)
    assert st.instances("dummy1")[0].managed


def test_cluster_maintenance_mode() -> None:
    st = load("cluster_maintenance")
    assert st.summary.maintenance_mode
    assert all(not r.managed for r in st.resources)
    assert not st.clones["st-clone"].managed and not st.groups["grp"].managed
    assert st.promoted_nodes("st-clone") == ["node1"]


def test_failed_resources_with_exit_reason() -> None:
    st = load("failed")
    bad = [f for f in st.failures if f.op_key == "bad-ip_start_0"]
    assert len(bad) == 1
    f = bad[0]
    assert (f.node, f.task, f.interval_ms, f.rc, f.rc_text) == ("node2", "start", 0, 6,
                                                                "not configured")
    assert f.exit_reason == "[findif] failed"
    assert f.status == "complete" and f.call_id == 60
    assert f.last_rc_change == "2026-11-21 06:06:25Z"
    mon = next(f for f in st.failures if f.op_key == "dummy1_monitor_5000")
    assert (mon.rc, mon.rc_text, mon.interval_ms, mon.exit_reason) == (
        7, "not running", 5000, "No process state file found")
    assert st.fail_counts == {"node2": {"bad-ip": crm.SCORE_INFINITY, "dummy-block": 1},
                              "node1": {"dummy1": 1}}
    block = st.instances("dummy-block")[0]
    assert block.failed and block.blocked and not block.managed and block.nodes == ("node2",)
    assert [r.id for r in st.inactive_resources()] == ["dummy-off", "bad-ip"]


def test_node_cut_seen_from_majority() -> None:
    st = load("node_cut_majority")
    assert st.summary.quorum and st.summary.dc == "node3"
    node1 = node(st, "node1")
    assert not node1.online and not node1.unclean and node1.resources_running == 0
    assert st.online_nodes() == ["node2", "node3"]
    assert st.resource_nodes("dummy1") == ["node2"]
    assert st.promoted_nodes("st-clone") == ["node2"]


def test_isolated_node_view_has_no_quorum() -> None:
    st = load("node_cut_isolated")
    assert not st.summary.quorum and st.summary.dc == "node1"
    assert st.online_nodes() == ["node1"]
    assert st.promoted_nodes("st-clone") == []
    assert all(not r.active for r in st.resources)
    assert st.resource_nodes("grp") == []


@pytest.mark.parametrize("path", sorted(DATA.glob("crm_mon_*.xml")), ids=lambda p: p.stem)
def test_every_capture_parses_consistently(path: Path) -> None:
    st = crm.parse_crm_mon(path.read_text())
    assert len(st.nodes) == st.summary.nodes_configured == 3
    for r in st.resources:
        assert r.role in ("Started", "Stopped", "Promoted", "Unpromoted")
        assert r.active == bool(r.nodes)
    for n in st.nodes:
        assert n.resources_running == sum(1 for r in st.resources if n.name in r.nodes)


# --- synthetic XML for what the captures cannot show ------------------------------
def test_master_slave_roles_are_normalised() -> None:
    text = (DATA / "crm_mon_all_online.xml").read_text()
    text = text.replace('role="Promoted"', 'role="Master"').replace('role="Unpromoted"',
                                                                    'role="Slave"')
    st = crm.parse_crm_mon(text)
    assert st.promoted_nodes("st-clone") == ["node2"]
    assert st.role_nodes("st-clone", "Slave") == ["node1", "node3"]
    assert crm.normalise_role("Started") == "Started"


CLONED_GROUP = """<pacemaker-result api-version="2.25" request="crm_mon">
  <summary><stack type="corosync"/><current_dc present="false"/></summary>
  <nodes><node name="a" id="1" online="true" resources_running="1"/></nodes>
  <resources>
    <clone id="g-clone" multi_state="false" unique="true" managed="true" disabled="false" failed="false">
      <group id="g:0" number_resources="1" managed="true" disabled="false">
        <resource id="p:0" resource_agent="ocf:heartbeat:Dummy" role="Started" active="true" managed="true">
          <node name="a" id="1" cached="true"/>
        </resource>
      </group>
      <group id="g:1" number_resources="1" managed="true" disabled="false">
        <resource id="p:1" resource_agent="ocf:heartbeat:Dummy" role="Stopped" active="false" managed="true"/>
      </group>
    </clone>
  </resources>
  <status code="0" message="OK"/>
</pacemaker-result>"""


def test_cloned_group_and_no_dc() -> None:
    st = crm.parse_crm_mon(CLONED_GROUP)
    assert st.summary.dc is None and not st.summary.quorum
    assert set(st.groups) == {"g:0", "g:1"} and st.groups["g:0"].clone == "g-clone"
    assert [r.id for r in st.instances("g")] == ["p:0", "p:1"]
    assert st.resource_nodes("g") == st.resource_nodes("g-clone") == st.resource_nodes("p") == ["a"]
    assert not st.instances("p")[0].promotable


@pytest.mark.parametrize("text, message", [
    ("not xml", "not XML"),
    ("<cib/>", "root element is <cib>"),
    ('<pacemaker-result><status code="102" message="Not connected">'
     "<errors><error>crm_mon: Connection to cluster failed</error></errors></status>"
     "</pacemaker-result>", "Not connected: crm_mon: Connection to cluster failed"),
    ("<pacemaker-result/>", "no <summary>"),
])
def test_bad_crm_mon_output_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crm.parse_crm_mon(text)


def test_crm_mon_runs_the_documented_command() -> None:
    c, runner = fake(ok((DATA / "crm_mon_all_online.xml").read_text()), timeout=7)
    st = crm.crm_mon(c)
    assert runner.calls == [(crm.CRM_MON_ARGV, 7)]
    assert runner.argvs[0] == ["crm_mon", "--one-shot", "--inactive", "--include=all",
                               "--output-as=xml"]
    assert st.summary.dc == "node3"


# --- argument lists ----------------------------------------------------------------
def test_node_attribute_arguments() -> None:
    c, runner = fake(ok("PRI\n"), NOT_SET)
    assert c.get_node_attr("pgsql-status", node="node1", lifetime="reboot") == "PRI"
    assert c.get_node_attr("site") is None
    c.set_node_attr("site", "-east", node="node2")
    c.delete_node_attr("pgsql-status", lifetime="reboot")
    assert runner.argvs == [
        ["crm_attribute", "--node=node1", "--name=pgsql-status", "--lifetime=reboot",
         "--query", "--quiet"],
        ["crm_attribute", "--name=site", "--lifetime=forever", "--query", "--quiet"],
        ["crm_attribute", "--node=node2", "--name=site", "--lifetime=forever", "--update=-east"],
        ["crm_attribute", "--name=pgsql-status", "--lifetime=reboot", "--delete"],
    ]


def test_query_keeps_the_value_exactly() -> None:
    c, _ = fake(ok("\n"), ok(" a b \n"))
    assert c.get_node_attr("x") == ""
    assert c.get_node_attr("x") == " a b "


def test_transient_batch_sets_and_deletes_after_validating_all() -> None:
    c, runner = fake()
    c.set_transient_attrs({"a": 1, "b": "x y", "c": None}, node="node3")
    assert runner.argvs == [
        ["crm_attribute", "--node=node3", "--name=a", "--lifetime=reboot", "--update=1"],
        ["crm_attribute", "--node=node3", "--name=b", "--lifetime=reboot", "--update=x y"],
        ["crm_attribute", "--node=node3", "--name=c", "--lifetime=reboot", "--delete"],
    ]
    c, runner = fake()
    with pytest.raises(ValueError, match="attribute b"):
        c.set_transient_attrs({"a": 1, "b": "two\nlines"})
    assert runner.calls == []


def test_promotion_arguments_never_use_short_p() -> None:
    c, runner = fake(ok(), ok(), ok(), ok(), ok("-INFINITY\n"), NOT_SET)
    c.set_promotion_score("-INFINITY", resource="pgsql")
    c.set_promotion_score(-crm.SCORE_INFINITY * 3, resource="pgsql", node="node2")
    c.set_promotion_score(100)
    c.delete_promotion_score(resource="pgsql", node="node2")
    assert c.get_promotion_score(resource="pgsql") == -crm.SCORE_INFINITY
    assert c.get_promotion_score() is None
    assert runner.argvs == [
        ["crm_attribute", "--promotion=pgsql", "--update=-INFINITY"],
        ["crm_attribute", "--node=node2", "--promotion=pgsql", "--update=-INFINITY"],
        ["crm_attribute", "--promotion", "--update=100"],
        ["crm_attribute", "--node=node2", "--promotion=pgsql", "--delete"],
        ["crm_attribute", "--promotion=pgsql", "--query", "--quiet"],
        ["crm_attribute", "--promotion", "--query", "--quiet"],
    ]
    assert all("-p" not in argv and "-v" not in argv for argv in runner.argvs)


def test_property_arguments() -> None:
    c, runner = fake(ok("node1|0/3000000|2\n"), NOT_SET)
    assert c.get_property("REPL_INFO", set_name="pha-pgsql") == "node1|0/3000000|2"
    assert c.get_property("REPL_INFO", set_name="pha-pgsql") is None
    c.set_property("REPL_INFO", "node2|0/4000000|3", set_name="pha-pgsql")
    c.delete_property("REPL_INFO", set_name="pha-pgsql")
    c.set_property("maintenance-mode", "true")
    base = ["crm_attribute", "--type=crm_config", "--set-name=pha-pgsql", "--name=REPL_INFO"]
    assert runner.argvs == [
        base + ["--query", "--quiet"], base + ["--query", "--quiet"],
        base + ["--update=node2|0/4000000|3"], base + ["--delete"],
        ["crm_attribute", "--type=crm_config", "--name=maintenance-mode", "--update=true"],
    ]


def test_crm_node_calls() -> None:
    c, runner = fake(ok("node1\n"), ok("node1 node2 node3 \n"), ok("1\n"),
                     crm.CommandResult(106, "0\n", ""))
    assert c.local_node_name() == "node1"
    assert c.partition_members() == ["node1", "node2", "node3"]
    assert c.has_quorum() is True
    assert c.has_quorum() is False  # 2.1.5 prints 0 and exits 106 without quorum
    assert runner.argvs == [["crm_node", "--name"], ["crm_node", "--partition"],
                            ["crm_node", "--quorum"], ["crm_node", "--quorum"]]


def test_crm_node_odd_output_is_an_error() -> None:
    c, _ = fake(ok("\n"), ok("maybe\n"))
    with pytest.raises(crm.CrmError, match="printed no node name"):
        c.local_node_name()
    with pytest.raises(crm.CrmError, match="printed 'maybe', expected 0 or 1"):
        c.has_quorum()


LOCATE_CLONE = """<pacemaker-result api-version="2.25" request="crm_resource --locate">
  <nodes resource="st-clone">
    <node>node3</node>
    <node>node1</node>
    <node state="promoted">node2</node>
  </nodes>
  <status code="0" message="OK"/>
</pacemaker-result>"""
LOCATE_STOPPED = """<pacemaker-result api-version="2.25" request="crm_resource --locate">
  <nodes resource="dummy1"/>
  <status code="0" message="OK"/>
</pacemaker-result>"""


def test_locate_resource() -> None:
    c, runner = fake(ok(LOCATE_CLONE), ok(LOCATE_STOPPED))
    assert c.locate_resource("st-clone") == [
        crm.ResourceLocation("node3", False), crm.ResourceLocation("node1", False),
        crm.ResourceLocation("node2", True)]
    assert c.locate_resource("dummy1") == []
    assert runner.argvs[0] == ["crm_resource", "--locate", "--resource=st-clone",
                               "--output-as=xml"]


# --- errors and timeouts -----------------------------------------------------------
def test_failure_shows_command_exit_code_and_stderr() -> None:
    c, _ = fake(UNKNOWN_NODE)
    with pytest.raises(crm.CrmError) as info:
        c.get_node_attr("x", node="nodeX")
    err = info.value
    assert str(err) == ("`crm_attribute --node=nodeX --name=x --lifetime=forever --query "
                        "--quiet` failed with exit code 105: crm_attribute: Could not map "
                        "name=nodeX to a UUID")
    assert err.returncode == 105 and "Could not map" in err.stderr and not err.timed_out
    assert isinstance(err, RuntimeError)


def test_failure_quotes_arguments_with_spaces() -> None:
    c, _ = fake(crm.CommandResult(1, "", "boom"))
    with pytest.raises(crm.CrmError, match=r"`crm_attribute --name=a --lifetime=reboot "
                                           r"'--update=x y'` failed with exit code 1: boom"):
        c.set_node_attr("a", "x y", lifetime="reboot")


def test_xml_errors_on_stdout_are_shown() -> None:
    out = ('<pacemaker-result api-version="2.25" request="crm_resource">\n'
           '  <status code="105" message="No such object">\n'
           "    <errors><error>crm_resource: Resource 'nope' not found</error></errors>\n"
           "  </status>\n</pacemaker-result>\n")
    c, _ = fake(crm.CommandResult(105, out, ""))
    with pytest.raises(crm.CrmError, match="exit code 105: crm_resource: Resource 'nope' not"):
        c.locate_resource("nope")


def test_timeout_from_runner() -> None:
    def slow(argv: Sequence[str], timeout: float) -> crm.CommandResult:
        raise TimeoutError
    c = crm.Crm(run=slow, timeout=2.5)
    with pytest.raises(crm.CrmError, match=r"`crm_node --quorum` timed out after 2.5s") as info:
        c.has_quorum()
    assert info.value.timed_out


def test_timeouts_per_call_instance_and_module(monkeypatch: pytest.MonkeyPatch) -> None:
    c, runner = fake()
    c.delete_node_attr("a")
    c.delete_node_attr("a", timeout=3)
    monkeypatch.setattr(crm, "DEFAULT_TIMEOUT", 42.0)
    c.delete_node_attr("a")
    c.timeout = 5
    c.delete_node_attr("a")
    assert [t for _, t in runner.calls] == [10.0, 3, 42.0, 5]


def test_real_runner_times_out_and_reports_it() -> None:
    c = crm.Crm()
    with pytest.raises(crm.CrmError, match=r"timed out after 0.3s"):
        c.call([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)


def test_real_runner_captures_stderr_in_c_locale() -> None:
    result = crm.run_command([sys.executable, "-c",
                              "import os, sys; print(os.environ['LC_ALL']); "
                              "sys.stderr.write('bad\\n'); sys.exit(3)"], 5)
    assert result == crm.CommandResult(3, "C\n", "bad\n")


def test_missing_binary_is_a_crm_error() -> None:
    with pytest.raises(crm.CrmError, match="`no-such-crm-tool --x` could not be run"):
        crm.Crm().call(["no-such-crm-tool", "--x"])


# --- input validation --------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda c: c.get_node_attr("a", lifetime="session"), "lifetime: 'session'"),
    (lambda c: c.set_node_attr("a", "x\ny"), "must be a single line"),
    (lambda c: c.set_node_attr("a b", "x"), "attribute name: 'a b'"),
    (lambda c: c.get_node_attr("a", node="--all"), "node: '--all'"),
    (lambda c: c.set_promotion_score("lots", resource="r"), "score: 'lots'"),
    (lambda c: c.set_promotion_score(True, resource="r"), "score: True"),
    (lambda c: c.get_promotion_score(resource=""), "resource: ''"),
    (lambda c: c.set_property("p", 1, set_name="my set"), "property set: 'my set'"),
])
def test_bad_input_names_the_value(call, message: str) -> None:
    c, runner = fake()
    with pytest.raises(ValueError, match=message):
        call(c)
    assert runner.calls == []


@pytest.mark.parametrize("score, text", [
    (0, "0"), (-100, "-100"), ("5", "5"), ("+7", "7"), ("INFINITY", "INFINITY"),
    ("+INFINITY", "INFINITY"), ("-infinity", "-INFINITY"), (2_000_000, "INFINITY"),
    (-crm.SCORE_INFINITY, "-INFINITY"),
])
def test_format_score(score: crm.Score, text: str) -> None:
    assert crm.format_score(score) == text


@pytest.mark.parametrize("text, score", [
    ("INFINITY", crm.SCORE_INFINITY), ("+INFINITY", crm.SCORE_INFINITY),
    ("-INFINITY", -crm.SCORE_INFINITY), ("10", 10), ("-5", -5), ("99999999", crm.SCORE_INFINITY),
])
def test_parse_score(text: str, score: int) -> None:
    assert crm.parse_score(text) == score


def test_parse_score_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="score: '-I'"):
        crm.parse_score("-I")  # what `crm_attribute -p -v -INFINITY` stores in 2.1.5


def test_module_imports_stay_light() -> None:
    import subprocess as sp
    code = ("import sys, pha.crm; heavy = {'subprocess', 'xml.etree.ElementTree', "
            "'pyroute2', 'psycopg', 'click'} & set(sys.modules); print(sorted(heavy))")
    out = sp.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
