"""crm_mon's XML, `crm_resource --locate` and scores, parsed (pha.crmstatus).

The crm_mon_*.xml files were captured from a real 3-node pacemaker 2.1.5
cluster (the reference namespace lab) with pha.crm.CRM_MON_ARGV; crm_mon_3.0_*.xml
from Pacemaker 3.0.0 (Debian 13, api-version 2.38) running pha's agents.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pha import crmstatus

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "data"


def load(state: str) -> crmstatus.ClusterStatus:
    return crmstatus.parse_crm_mon((DATA / f"crm_mon_{state}.xml").read_text())


def node(st: crmstatus.ClusterStatus, name: str) -> crmstatus.Node:
    found = st.node(name)
    assert found is not None, name
    return found


# --- captured crm_mon XML ----------------------------------------------------------
def test_pacemaker_3_healthy() -> None:
    """Pacemaker 3.0: pacemakerd's state is an attribute of <stack>; the rest reads as on 2.1."""
    st = load("3.0_healthy")
    s = st.summary
    assert (s.stack, s.dc, s.dc_id, s.quorum, s.pacemakerd_state) == ("corosync", "node2", "2", True, "running")
    assert (s.dc_version or "").startswith("3.0.0")
    assert not s.fencing_enabled and s.no_quorum_policy == "stop" and not s.maintenance_mode
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


@pytest.mark.parametrize("capture", ["all_online", "3.0_healthy"])          # 2.1 and 3.0 captures
@pytest.mark.parametrize("attribute", ["stonith-enabled", "fencing-enabled"])  # fencing-enabled: 3.0.2+
@pytest.mark.parametrize("value", ["true", "false"])
def test_fencing_enabled_is_read_from_either_name(capture: str, attribute: str, value: str) -> None:
    """Pacemaker 3.0.2 renamed stonith-enabled; crm_mon reports fencing-enabled. One field either way."""
    xml = (DATA / f"crm_mon_{capture}.xml").read_text().replace('stonith-enabled="false"',
                                                                 f'{attribute}="{value}"')
    assert f'{attribute}="{value}"' in xml
    assert crmstatus.parse_crm_mon(xml).summary.fencing_enabled is (value == "true")


def test_fencing_enabled_defaults_to_pacemakers_default() -> None:
    """No option reported at all: Pacemaker's default, fencing on."""
    xml = (DATA / "crm_mon_3.0_healthy.xml").read_text().replace('stonith-enabled="false" ', "")
    assert crmstatus.parse_crm_mon(xml).summary.fencing_enabled


def test_all_online() -> None:
    st = load("all_online")
    s = st.summary
    assert (s.stack, s.dc, s.dc_id, s.quorum) == ("corosync", "node3", "3", True)
    assert (s.dc_version or "").startswith("2.1.5")
    assert (s.nodes_configured, s.resources_configured, s.resources_disabled) == (3, 7, 1)
    assert not s.maintenance_mode and not s.fencing_enabled and s.no_quorum_policy == "stop"
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
    assert st.bans == [crmstatus.Ban(id="cli-ban-dummy1-on-node3", resource="dummy1", node="node3",
                               weight=-crmstatus.SCORE_INFINITY, promoted_only=False)]
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
    assert st.fail_counts == {"node2": {"bad-ip": crmstatus.SCORE_INFINITY, "dummy-block": 1},
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
    st = crmstatus.parse_crm_mon(path.read_text())
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
    st = crmstatus.parse_crm_mon(text)
    assert st.promoted_nodes("st-clone") == ["node2"]
    assert st.role_nodes("st-clone", "Slave") == ["node1", "node3"]
    assert crmstatus.normalise_role("Started") == "Started"


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
    st = crmstatus.parse_crm_mon(CLONED_GROUP)
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
        crmstatus.parse_crm_mon(text)


# --- scores ----------------------------------------------------------------------
@pytest.mark.parametrize("score, text", [
    (0, "0"), (-100, "-100"), ("5", "5"), ("+7", "7"), ("INFINITY", "INFINITY"),
    ("+INFINITY", "INFINITY"), ("-infinity", "-INFINITY"), (2_000_000, "INFINITY"),
    (-crmstatus.SCORE_INFINITY, "-INFINITY"),
])
def test_format_score(score: crmstatus.Score, text: str) -> None:
    assert crmstatus.format_score(score) == text


@pytest.mark.parametrize("text, score", [
    ("INFINITY", crmstatus.SCORE_INFINITY), ("+INFINITY", crmstatus.SCORE_INFINITY),
    ("-INFINITY", -crmstatus.SCORE_INFINITY), ("10", 10), ("-5", -5), ("99999999", crmstatus.SCORE_INFINITY),
])
def test_parse_score(text: str, score: int) -> None:
    assert crmstatus.parse_score(text) == score


def test_parse_score_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="score: '-I'"):
        crmstatus.parse_score("-I")  # what `crm_attribute -p -v -INFINITY` stores in 2.1.5
