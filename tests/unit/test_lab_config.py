"""Pure lab logic: addresses, rendered config files, crm_mon views."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pha.lab import config
from pha.lab.config import LabConfigError

pytestmark = pytest.mark.unit

# Captured from the real lab (`pha lab exec node2 crm_mon --output-as=xml`), node1 cut.
CRM_MON_NODE1_CUT = """<pacemaker-result api-version="2.25" request="crm_mon --output-as=xml">
  <pacemakerd sys_from="pacemakerd" state="running" last_updated="2026-11-21 06:11:02Z"/>
  <summary>
    <stack type="corosync"/>
    <current_dc present="true" version="2.1.5-a3f44794f94" name="node2" id="2" with_quorum="true" mixed_version="false"/>
    <last_update time="Sat Nov 21 06:11:02 2026"/>
    <last_change time="Sat Nov 21 06:10:52 2026" user="hacluster" client="crmd" origin="node2"/>
    <nodes_configured number="3"/>
    <resources_configured number="0" disabled="0" blocked="0"/>
    <cluster_options stonith-enabled="false" symmetric-cluster="true" no-quorum-policy="stop" maintenance-mode="false" stop-all-resources="false" stonith-timeout-ms="60000" priority-fencing-delay-ms="0"/>
  </summary>
  <nodes>
    <node name="node1" id="1" online="false" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false" health="green" shutdown="false" expected_up="true" is_dc="false" resources_running="0" type="member"/>
    <node name="node2" id="2" online="true" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false" health="green" feature_set="3.16.1" shutdown="false" expected_up="true" is_dc="true" resources_running="0" type="member"/>
    <node name="node3" id="3" online="true" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false" health="green" feature_set="3.16.1" shutdown="false" expected_up="true" is_dc="false" resources_running="0" type="member"/>
  </nodes>
  <node_history/>
  <status code="0" message="OK"/>
</pacemaker-result>
"""

# A node whose pacemaker has not found a DC yet (shape of crm_mon during start-up).
CRM_MON_NO_DC = """<pacemaker-result api-version="2.25" request="crm_mon --output-as=xml">
  <summary><stack type="unknown"/><current_dc present="false"/></summary>
  <nodes/>
  <status code="0" message="OK"/>
</pacemaker-result>
"""


def test_addresses_and_names():
    assert config.node_names(3) == ["node1", "node2", "node3"]
    assert [config.node_ip(n) for n in config.node_names(3)] == ["10.78.0.11", "10.78.0.12", "10.78.0.13"]
    assert config.node_ip("node39") == "10.78.0.49"          # stays below the client address
    assert config.vip(0) == "10.78.0.100" and config.vip(99) == "10.78.0.199"
    assert config.node_netns("node2") == "pha-node2" and config.switch_port("node2") == "sw-node2"


@pytest.mark.parametrize("bad", [0, 40, -1, "3"])
def test_node_count_is_checked(bad):
    with pytest.raises(LabConfigError, match="--nodes"):
        config.node_names(bad)


@pytest.mark.parametrize("bad", ["node0", "node40", "nodeX", "client", "node01"])
def test_node_names_are_checked(bad):
    with pytest.raises(LabConfigError, match=repr(bad)):
        config.node_ip(bad)


@pytest.mark.parametrize("bad", [-1, 100, "1"])
def test_vip_numbers_are_checked(bad):
    with pytest.raises(LabConfigError, match="vip"):
        config.vip(bad)


def test_corosync_conf():
    conf = config.render_corosync_conf(["node1", "node2"], 1000)
    assert "transport: knet" in conf and "crypto_cipher: aes256" in conf and "crypto_hash: sha256" in conf
    assert "token: 1000" in conf
    assert "ring0_addr: 10.78.0.12\n        name: node2\n        nodeid: 2" in conf
    assert conf.count("{") == conf.count("}")
    with pytest.raises(LabConfigError, match="--token"):
        config.render_corosync_conf(["node1"], 50)


def test_hosts():
    hosts = config.render_hosts(["node1", "node2"])
    assert "10.78.0.11\tnode1\n" in hosts and "10.78.0.12\tnode2\n" in hosts
    assert "10.78.0.50\tclient\n" in hosts and hosts.startswith("127.0.0.1\tlocalhost\n")


def test_seed_cib():
    cib = ET.fromstring(config.render_seed_cib("2s"))
    options = {nv.get("name"): nv.get("value") for nv in cib.iter("nvpair")}
    assert options == {"stonith-enabled": "false", "dc-deadtime": "2s"}
    assert cib.get("crm_feature_set") is None      # pacemaker refuses a newer feature set than its own
    assert [child.tag for child in cib.find("configuration")] == ["crm_config", "nodes", "resources", "constraints"]


def test_patch_ocf_shellfuncs():
    text = 'ocf_promotion_score() {\n\t\t${HA_SBIN_DIR}/crm_attribute -p $@\n}\n'
    assert config.patch_ocf_shellfuncs(text) == (
        'ocf_promotion_score() {\n\t\t${HA_SBIN_DIR}/crm_attribute --promotion $@\n}\n')
    with pytest.raises(LabConfigError, match="ocf-shellfuncs"):
        config.patch_ocf_shellfuncs("nothing to patch")


def test_pg_settings_block_is_replaced_per_node():
    conf = config.set_pg_settings("# stock\nmax_connections = 100\n", "node1")
    assert "cluster_name = 'node1'" in conf and "wal_log_hints = on" in conf
    assert "unix_socket_directories = '/run/postgresql'" in conf
    standby = config.set_pg_settings(conf + "# after\n", "node2")
    assert "cluster_name = 'node2'" in standby and "node1" not in standby
    assert standby.startswith("# stock\nmax_connections = 100\n") and standby.endswith("# after\n")
    assert standby.count(config.PG_BLOCK_BEGIN) == 1


def test_pg_hba_trusts_only_the_lab_subnet():
    hba = config.render_pg_hba()
    assert "host all all 10.78.0.0/24 trust" in hba
    assert "host replication all 10.78.0.0/24 trust" in hba


def test_primary_conninfo_rewrite():
    auto = ("# Do not edit this file manually!\n"
            "primary_conninfo = 'user=postgres passfile=''/var/lib/postgresql/.pgpass'' host=10.78.0.11'\n")
    stripped = config.set_primary_conninfo(auto, None)
    assert "primary_conninfo" not in stripped and stripped.startswith("# Do not edit")
    conninfo = config.primary_conninfo("10.78.0.11", "node2")
    assert conninfo == "host=10.78.0.11 port=5432 user=postgres application_name=node2"
    replaced = config.set_primary_conninfo(auto, conninfo)
    assert replaced.count("primary_conninfo") == 1 and f"primary_conninfo = '{conninfo}'" in replaced


def test_parse_crm_mon():
    view = config.parse_crm_mon(CRM_MON_NODE1_CUT)
    assert (view.online, view.offline, view.dc, view.quorum) == (["node2", "node3"], ["node1"], "node2", True)
    assert view.to_dict() == {"online": ["node2", "node3"], "offline": ["node1"], "dc": "node2", "quorum": True}
    pending = config.parse_crm_mon(CRM_MON_NO_DC)
    assert (pending.online, pending.dc, pending.quorum) == ([], None, False)
    with pytest.raises(LabConfigError, match="not XML"):
        config.parse_crm_mon("Error: not connected")
