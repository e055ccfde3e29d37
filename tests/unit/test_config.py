"""config.ini: the schema, pha4pgsql compatibility, and every bad-config message."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pha import config, configschema

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ("dual", "muti", "muti_with_lvs", "three_plus_x")

BASE = """\
pcs_template=muti
writer_vip=192.0.2.10
reader_vip=192.0.2.11
node1=n1
node2=n2
node3=n3
"""

# pha4pgsql's own config_muti.ini.sample, as it shipped (a bash file sourced by its scripts)
PHA4PGSQL_MUTI = """\
pcs_template=muti.pcs.template
OCF_ROOT=/usr/lib/ocf
RESOURCE_LIST="msPostgresql vip-master vip-slave"
pha4pgsql_dir=/opt/pha4pgsql
writer_vip=192.168.0.236
reader_vip=192.168.0.237
node1=node1
node2=node2
node3=node3
othernodes=""
vip_nic=eno16777736
vip_cidr_netmask=24
pgsql_pgctl=/usr/bin/pg_ctl
pgsql_psql=/usr/bin/psql
pgsql_pgdata=/data/postgresql/data
pgsql_pgport=5432
pgsql_restore_command=""
pgsql_rep_mode=sync
pgsql_repuser=replication
pgsql_reppassord=replication"""


def parse(text: str) -> config.Config:
    return config.parse(text, "c.ini")


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        parse(text)
    return [str(p) for p in caught.value.problems]


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --- good files -------------------------------------------------------------------------
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_sample_loads_without_warnings(name: str) -> None:
    loaded = config.load(str(ROOT / "templates" / name / "config.ini"))
    assert loaded.template == name and loaded.warnings == ()


def test_defaults_and_types() -> None:
    loaded = parse(BASE)
    assert loaded.nodes == ("n1", "n2", "n3") and loaded.cluster_nodes == ("n1", "n2", "n3")
    assert loaded["pgsql_pgport"] == 5432 and loaded["vip_cidr_netmask"] == 24
    assert loaded["pgsql_rep_mode"] == "sync" and loaded["pgsql_pgdba"] == "postgres"
    assert loaded["max_lag"] == 0 and loaded["othernodes"] == () and not loaded.lvs and not loaded.distlock
    assert loaded.lines["writer_vip"] == 2 and loaded.is_set("node3") and not loaded.is_set("vip_nic")


def test_pha4pgsql_file_loads_with_warnings_for_what_changed() -> None:
    loaded = config.parse(PHA4PGSQL_MUTI + "\npgsql_passfile=/etc/pha/pgpass\n", "old.ini")
    assert loaded.template == "muti" and loaded["pgsql_reppassword"] == "replication"
    assert loaded["RESOURCE_LIST"] == "msPostgresql vip-master vip-slave" and loaded["pgsql_restore_command"] == ""
    warnings = "\n".join(loaded.warnings)
    assert "old.ini:20: pgsql_reppassord is deprecated (pha4pgsql's spelling): use pgsql_reppassword" in warnings
    for ignored in ("RESOURCE_LIST", "pha4pgsql_dir", "pgsql_psql"):
        assert f"{ignored} is accepted and ignored" in warnings
    assert "`pha setup` copies it into pgsql_passfile" in warnings


def test_values_are_read_as_a_shell_would() -> None:
    loaded = parse(BASE + "othernodes=\"n4 n5\"\npgsql_restore_command='cp /a/%f %p'  # a comment\n"
                          "export vip_nic=eth1\n")
    assert loaded["othernodes"] == ("n4", "n5") and loaded.cluster_nodes[-2:] == ("n4", "n5")
    assert loaded["pgsql_restore_command"] == "cp /a/%f %p" and loaded["vip_nic"] == "eth1"


def test_sizes_booleans_and_networks() -> None:
    loaded = parse(BASE.replace("muti", "muti_with_lvs") + "max_lag=16MB\nlvs_inhibit_on_failure=yes\n"
                   "allowed_networks=\"10.0.0.0/24, 10.1.0.7/16\"\n")
    assert loaded["max_lag"] == 16 << 20 and loaded["lvs_inhibit_on_failure"] is True
    assert loaded["allowed_networks"] == ("10.0.0.0/24", "10.1.0.0/16") and loaded.lvs


def test_empty_value_means_the_default() -> None:
    assert parse(BASE + "pgsql_pgport=\n")["pgsql_pgport"] == 5432


def test_lab_config_takes_the_labs_addresses() -> None:
    from pha.lab import config as lab, ini
    loaded = config.load(str(ROOT / "templates" / "lab.ini"), ini.defaults)
    assert loaded["writer_vip"] == lab.vip(0) and loaded["reader_vip"] == lab.vip(1)
    assert loaded["vip_nic"] == lab.NODE_IFNAME and loaded["lab"] and loaded["lab_node"] == "node1"
    assert loaded["pgsql_pgdata"] == lab.PGDATA


def test_a_lab_config_gets_the_labs_values_only_from_the_lab_side() -> None:
    """pha.config knows nothing of the lab: without the lab's defaults a lab config lacks its VIPs."""
    with pytest.raises(config.ConfigError, match="writer_vip"):
        config.load(str(ROOT / "templates" / "lab.ini"))
    seen: list[dict] = []
    parse_with = config.parse(BASE + "fencing=none\n", "c.ini", lab_defaults=seen.append)
    assert not seen and not parse_with["lab"]                # only a lab = yes config asks the lab side


def test_distlock_psql_cmd_of_pha4pgsql_gives_the_conninfo() -> None:
    text = (BASE.replace("muti", "dual").replace("node3=n3\n", "")
            + "pgsql_distlock_psql_cmd='/usr/bin/psql \\\\\"host=node3 port=5439 dbname=postgres "
              "user=postgres connect_timeout=5\\\\\"'\npgsql_distlock_lockname=pgsql_cls1\n")
    loaded = parse(text)
    assert loaded["pgsql_distlock_conninfo"] == "host=node3 port=5439 dbname=postgres user=postgres connect_timeout=5"
    assert loaded.distlock and any("pgsql_distlock_psql_cmd is deprecated" in w for w in loaded.warnings)


def test_a_password_in_a_world_readable_file_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_text(BASE + "pgsql_reppassword=s3cret\npgsql_passfile=/etc/pha/pgpass\n")
    os.chmod(path, 0o644)
    assert any("readable by group or others (mode 644)" in w for w in config.load(str(path)).warnings)
    os.chmod(path, 0o600)
    assert not any("readable" in w for w in config.load(str(path)).warnings)


def test_describe_documents_every_key() -> None:
    text = configschema.describe()
    for key in configschema.SCHEMA:
        assert (("node1..nodeN" if key.name == "node" else key.name) + " (") in text
    assert "pgsql_reppassord (secret) [pgsql]\n    pha4pgsql's misspelling of pgsql_reppassword. Deprecated: use " \
           "pgsql_reppassword." in text


# --- every bad-config message -------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    ("pgsql_pgport=70000", "c.ini:7: pgsql_pgport='70000': must be from 1 to 65535"),
    ("pgsql_pgport=54x", "c.ini:7: pgsql_pgport='54x': is not an integer"),
    ("vip_cidr_netmask=0", "c.ini:7: vip_cidr_netmask='0': must be from 1 to 128"),
    ("pgsql_rep_mode=semi", "c.ini:7: pgsql_rep_mode='semi': must be one of sync, async"),
    ("pgsql_pgdata=data/pg", "c.ini:7: pgsql_pgdata='data/pg': is not an absolute path"),
    ("pgsql_repuser='re pl'", "c.ini:7: pgsql_repuser='re pl': is not a node or user name "
                              "(letters, digits, '_', '.', '-')"),
    ("vip_nic=eth0/1", "c.ini:7: vip_nic='eth0/1': is not a network interface name "
                       "(1-15 of A-Z a-z 0-9 _ . -)"),
    ("max_lag=lots", "c.ini:7: max_lag='lots': is not a size (examples: 1048576, 512kB, 16MB, "
                     "1GB)"),
    ("lab=maybe", "c.ini:7: lab='maybe': is not a boolean (true/false, yes/no, on/off, 1/0)"),
    ("lvs_realsvr_nic_lo=eth0", "c.ini:7: lvs_realsvr_nic_lo='eth0': must be lo or lo:SUFFIX "
                                "(at most 15 characters)"),
    ("lvs_weight_of_realservers='n1,heavy'", "c.ini:7: lvs_weight_of_realservers='n1,heavy': 'n1,heavy' is "
                                             "not NAME or NAME,WEIGHT (weight 0-65535)"),
    ("allowed_networks=10.0.0.0/33", "c.ini:7: allowed_networks='10.0.0.0/33': '10.0.0.0/33' is not a network "
                                     "(e.g. 10.0.0.0/24)"),
    ("allowed_networks=fd00::/8", "c.ini:7: allowed_networks='fd00::/8': 'fd00::/8' is not an IPv4 network"),
    ("pgsql_distlock_conninfo='host=x password=hunter2'",
     "c.ini:7: pgsql_distlock_conninfo='host=x password=***': holds a password: put it in a passfile "
     "(passfile=... or PGPASSFILE)"),
    ("pgsql_distlock_conninfo='postgresql://u:hunter2@x/db'",
     "c.ini:7: pgsql_distlock_conninfo='postgresql://u:***@x/db': holds a password: put it in a passfile "
     "(passfile=... or PGPASSFILE)"),
    ("writer_vpi=192.0.2.1", "c.ini:7: writer_vpi='192.0.2.1': unknown key (did you mean writer_vip?)"),
    ("colour=blue", "c.ini:7: colour='blue': unknown key"),
    ("pgsql_pgport=5432 5433", "c.ini:7: pgsql_pgport='5432 5433': holds several words: quote the value (\"a b\")"),
    ("pgsql_restore_command=\"cp", "c.ini:7: pgsql_restore_command='\"cp': cannot be read: No closing quotation"),
    ("just some words", "c.ini:7: 'just some words' is not a key=value line"),
    ("writer_vip=192.0.2.12", "c.ini:7: writer_vip='192.0.2.12': writer_vip is already set on line 2"),
    ("node4=n1", "c.ini:7: node4='n1': names the same node as node1"),
    ("node5=n5", "c.ini:7: node5='n5': node4 is missing: number the nodes from 1 without gaps"),
    ("node4=", "c.ini:7: node4='': is not a node or user name (letters, digits, '_', '.', '-')"),
    ("enable_lvs=true", "c.ini:7: enable_lvs='true': muti has no LVS: use muti_with_lvs or three_plus_x"),
    ("pgsql_reppassword=s3cret", "c.ini:7: pgsql_reppassword='***': needs pgsql_passfile: the password is "
                                 "written there, never into the CIB or a command line"),
    ("pgsql_reppassord=s3cret", "c.ini:7: pgsql_reppassord='***': needs pgsql_passfile: the password is "
                                "written there, never into the CIB or a command line"),
    ("pgsql_enable_distlock=true", "c.ini: pgsql_distlock_conninfo: missing: the lock needs the lock "
                                   "server's conninfo"),
])
def test_bad_value_names_file_line_key_and_value(extra: str, message: str) -> None:
    assert only_problem(BASE + extra + "\n") == message


def test_the_shown_value_of_othernodes_is_the_text() -> None:
    assert only_problem(BASE + "othernodes='n4 n2'\n") == \
        "c.ini:7: othernodes='n4 n2': names the same node as node2"


@pytest.mark.parametrize("text, message", [
    (BASE.replace("pcs_template=muti\n", ""), "c.ini: pcs_template: missing (required)"),
    (BASE.replace("writer_vip=192.0.2.10\n", ""), "c.ini: writer_vip: missing (required)"),
    (BASE.replace("pcs_template=muti", "pcs_template=trio"),
     "c.ini:1: pcs_template='trio': must be one of dual, muti, muti_with_lvs, three_plus_x"),
    (BASE.replace("writer_vip=192.0.2.10", "writer_vip=192.0.2"),
     "c.ini:2: writer_vip='192.0.2': is not an IP address"),
    (BASE.replace("reader_vip=192.0.2.11", "reader_vip=192.0.2.10"),
     "c.ini:3: reader_vip='192.0.2.10': is also the writer_vip"),
    ("pcs_template=muti\nwriter_vip=192.0.2.10\n", "c.ini: node1: missing: name the nodes node1=..., node2=..."),
    (BASE.replace("pcs_template=muti", "pcs_template=dual"),
     "c.ini:1: pcs_template='dual': dual is for exactly 2 nodes (node1, node2), this file names 3"),
    (BASE.replace("node3=n3\n", ""),
     "c.ini:1: pcs_template='muti': muti needs 3 nodes or more (with 2, losing one stops both): use dual for 2"),
    (BASE.replace("pcs_template=muti", "pcs_template=three_plus_x") + "node4=n4\n",
     "c.ini:1: pcs_template='three_plus_x': three_plus_x has exactly 3 Pacemaker nodes (node1..node3), this file "
     "names 4; put the readers outside the cluster in othernodes"),
    (BASE.replace("pcs_template=muti", "pcs_template=muti_with_lvs") + "enable_lvs=no\n",
     "c.ini:7: enable_lvs='no': muti_with_lvs always balances reads with LVS: use muti for no LVS"),
    (BASE.replace("pcs_template=muti", "pcs_template=muti_with_lvs").replace("reader_vip=192.0.2.11\n", ""),
     "c.ini: reader_vip: missing: LVS balances reads on the reader VIP"),
    (BASE.replace("pcs_template=muti", "pcs_template=dual").replace("node3=n3\n", ""),
     "c.ini: pgsql_distlock_conninfo: missing: dual needs the lock server's conninfo"),
    (BASE.replace("pcs_template=muti", "pcs_template=dual").replace("node3=n3\n", "")
     + "pgsql_enable_distlock=false\npgsql_distlock_conninfo='host=lock'\n",
     "c.ini:6: pgsql_enable_distlock='false': dual needs the lock: without quorum, only the lock stops both "
     "nodes from being primary"),
    (BASE + "pgsql_distlock_conninfo='host=a'\npgsql_distlock_psql_cmd='psql \"host=b\"'\n",
     "c.ini:8: pgsql_distlock_psql_cmd='psql \"host=b\"': set pgsql_distlock_conninfo or this, not both"),
    (BASE + "pgsql_distlock_psql_cmd=/usr/bin/psql\n",
     "c.ini:7: pgsql_distlock_psql_cmd='/usr/bin/psql': has no psql \"CONNINFO\" to take the lock server's "
     "conninfo from"),
    (BASE + "lab=yes\npgsql_reppassword=x\npgsql_passfile=/p\n",
     "c.ini:7: lab='yes': the lab trusts its subnet: drop pgsql_reppassword"),
])
def test_bad_combination_names_the_key(text: str, message: str) -> None:
    assert message in problems(text)


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    found = problems("pcs_template=trio\nwriter_vpi=1\nnode1=a\nnode3=c\npgsql_pgport=0\n")
    assert found == [
        "c.ini: writer_vip: missing (required)",
        "c.ini:1: pcs_template='trio': must be one of dual, muti, muti_with_lvs, three_plus_x",
        "c.ini:2: writer_vpi='1': unknown key (did you mean writer_vip?)",
        "c.ini:4: node3='c': node2 is missing: number the nodes from 1 without gaps",
        "c.ini:5: pgsql_pgport='0': must be from 1 to 65535",
    ]


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"missing\.ini: cannot be read: No such file or directory"):
        config.load(str(tmp_path / "missing.ini"))
    bad = tmp_path / "latin1.ini"
    bad.write_bytes(b"pcs_template=muti\nnode1=n\xe9\n")
    with pytest.raises(config.ConfigError, match=r"latin1\.ini: is not UTF-8 text"):
        config.load(str(bad))


def test_secrets_never_appear_in_messages() -> None:
    text = BASE + "pgsql_reppassword='p w'\n" + "pgsql_reppassord=other\n"
    joined = "\n".join(problems(text))
    assert "p w" not in joined and "other" not in joined and "'***'" in joined
