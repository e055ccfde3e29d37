"""Pure lab logic: addresses, rendered config files, crm_mon views."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pha.lab import config
from pha.lab.config import LabConfigError

pytestmark = pytest.mark.unit
NET = config.SUBNET.removesuffix(".0/24")     # 10.78.0 for lab instance 0 (PHA_LAB_INSTANCE=N: 10.(78+N).0)

# Captured from the real lab (`pha lab exec node2 crm_mon --output-as=xml`), node1 cut.
# A node whose pacemaker has not found a DC yet (shape of crm_mon during start-up).
def test_addresses_and_names():
    assert config.node_names(3) == ["node1", "node2", "node3"]
    assert [config.node_ip(n) for n in config.node_names(3)] == [f"{NET}.11", f"{NET}.12", f"{NET}.13"]
    assert config.node_ip("node39") == f"{NET}.49"          # stays below the client address
    assert config.vip(0) == f"{NET}.100" and config.vip(99) == f"{NET}.199"
    assert config.node_netns("node2") == config.NETNS_PREFIX + "node2" and config.switch_port("node2") == "sw-node2"


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
    assert f"ring0_addr: {NET}.12\n        name: node2\n        nodeid: 2" in conf
    assert conf.count("{") == conf.count("}")
    with pytest.raises(LabConfigError, match="--token"):
        config.render_corosync_conf(["node1"], 50)
    assert "two_node" not in conf


def test_corosync_conf_two_node():
    conf = config.render_corosync_conf(["node1", "node2"], 3000, two_node=True)
    assert "quorum {\n    provider: corosync_votequorum\n    two_node: 1\n}" in conf
    with pytest.raises(LabConfigError, match="--two-node: needs exactly 2 nodes, not 3"):
        config.render_corosync_conf(["node1", "node2", "node3"], 3000, two_node=True)


def test_hosts():
    hosts = config.render_hosts(["node1", "node2"])
    assert f"{NET}.11\tnode1\n" in hosts and f"{NET}.12\tnode2\n" in hosts
    assert f"{NET}.50\tclient\n" in hosts and hosts.startswith("127.0.0.1\tlocalhost\n")


def test_seed_cib():
    cib = ET.fromstring(config.render_seed_cib("2s"))
    options = {nv.get("name"): nv.get("value") for nv in cib.iter("nvpair")}
    assert options == {"stonith-enabled": "false", "dc-deadtime": "2s"}
    renamed = ET.fromstring(config.render_seed_cib("2s", fencing="fencing-enabled"))   # Pacemaker 3.0.2
    assert {nv.get("name") for nv in renamed.iter("nvpair")} == {"fencing-enabled", "dc-deadtime"}
    assert cib.get("crm_feature_set") is None      # pacemaker refuses a newer feature set than its own
    assert [child.tag for child in cib.find("configuration")] == ["crm_config", "nodes", "resources", "constraints"]


def test_patch_ocf_shellfuncs():
    text = 'ocf_promotion_score() {\n\t\t${HA_SBIN_DIR}/crm_attribute -p $@\n}\n'
    assert config.patch_ocf_shellfuncs(text) == (
        'ocf_promotion_score() {\n\t\t${HA_SBIN_DIR}/crm_attribute --promotion $@\n}\n')
    with pytest.raises(LabConfigError, match="ocf-shellfuncs"):
        config.patch_ocf_shellfuncs("nothing to patch")


def test_ocf_shellfuncs_of_resource_agents_4_16_need_no_patch():
    """Debian 13: the call names the resource itself, and Pacemaker 3.0 parses `-p -v -INFINITY`."""
    text = 'ocf_promotion_score() {\n\t${HA_SBIN_DIR}/crm_attribute -p ${OCF_RESOURCE_INSTANCE} $@\n}\n'
    assert config.patch_ocf_shellfuncs(text) == text
    patched = config.patch_ocf_shellfuncs('x\n${HA_SBIN_DIR}/crm_attribute -p $@\n')
    assert config.patch_ocf_shellfuncs(patched) == patched          # patching twice changes nothing


def test_pg_versions_are_the_installed_ones_newest_last(tmp_path, monkeypatch):
    for version, tools in (("9", config.PG_TOOLS), ("15", config.PG_TOOLS), ("17", config.PG_TOOLS),
                           ("18", ("initdb",)), ("common", config.PG_TOOLS)):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for tool in tools:
            (bindir / tool).write_text("#!/bin/sh\n")
            (bindir / tool).chmod(0o755)
    assert config.pg_versions(str(tmp_path)) == ["9", "15", "17"]     # 18 lacks pg_ctl: not usable
    assert config.pg_versions(str(tmp_path / "none")) == []
    assert config.pg_bin("17") == "/usr/lib/postgresql/17/bin"
    monkeypatch.setenv(config.PG_ENV, "16")
    assert config.default_pg_version() == "16"
    monkeypatch.setenv(config.PG_ENV, "x")
    with pytest.raises(LabConfigError, match="--pg: 'x' is not a PostgreSQL major version"):
        config.default_pg_version()


def test_lab_paths_name_no_postgresql_version():
    assert "/" not in config.PGDATA.removeprefix("/var/lib/postgresql/")
    assert not any(c.isdigit() for c in config.PGDATA + config.PG_LOG)


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
    assert f"host all all {NET}.0/24 trust" in hba
    assert f"host replication all {NET}.0/24 trust" in hba


def test_primary_conninfo_rewrite():
    auto = ("# Do not edit this file manually!\n"
            "primary_conninfo = 'user=postgres passfile=''/var/lib/postgresql/.pgpass'' host=10.78.0.11'\n")
    stripped = config.set_primary_conninfo(auto, None)
    assert "primary_conninfo" not in stripped and stripped.startswith("# Do not edit")
    conninfo = config.primary_conninfo("10.78.0.11", "node2")
    assert conninfo == "host=10.78.0.11 port=5432 user=postgres application_name=node2"
    replaced = config.set_primary_conninfo(auto, conninfo)
    assert replaced.count("primary_conninfo") == 1 and f"primary_conninfo = '{conninfo}'" in replaced


