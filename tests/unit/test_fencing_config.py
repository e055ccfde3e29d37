"""Fencing: config.ini's fence devices, their pcs commands, the refusals, option-name detection,
the status warning, and the lab BMC's chassis control (pha.fencing, pha.fencekeys, pha.lab.fence,
pha.lab.power)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest
from click.testing import CliRunner

from pha import cluster, config, crm, deploy, fencing
from pha.commands import configure
from test_config import BASE, parse, problems

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
IPMI = """\
fencing=fence_ipmilan
fence_options="username=admin lanplus=1"
fence_password_script=/etc/pha/fence-password
fence_node1="ip=192.0.2.21"
fence_node2="ip=192.0.2.22"
fence_node3="ip=192.0.2.23"
"""


def dual(extra: str = "") -> config.Config:
    text = (BASE.replace("muti", "dual").replace("node3=n3\n", "")
            + "pgsql_distlock_conninfo='host=lock dbname=pha user=pha'\n"
            + IPMI.replace('fence_node3="ip=192.0.2.23"\n', "") + extra)
    return parse(text)


# --- config.ini -------------------------------------------------------------------------------
def test_one_device_per_node_with_its_level_and_no_secret_in_the_cib() -> None:
    commands = fencing.pcs_commands(parse(BASE + IPMI))
    assert commands[0] == ["pcs", "stonith", "create", "fence-n1", "fence_ipmilan", "username=admin", "lanplus=1",
                           "ip=192.0.2.21", "password_script=/etc/pha/fence-password", "pcmk_host_list=n1",
                           "op", "monitor", "interval=60s"]
    assert [c[3] for c in commands[:3]] == ["fence-n1", "fence-n2", "fence-n3"]
    assert commands[3:] == [["pcs", "stonith", "level", "add", "1", n, f"fence-{n}", "--force"]
                            for n in ("n1", "n2", "n3")]
    assert not any("pcmk_delay_base" in word for argv in commands for word in argv)   # 3 nodes: no race


def test_gencfg_turns_fencing_on_and_setup_owns_the_devices() -> None:
    loaded = parse(BASE + IPMI)
    commands = deploy.pcs_commands(loaded)
    assert ["pcs", "property", "set", "no-quorum-policy=stop", "stonith-enabled=true"] in commands
    assert deploy.managed_ids(loaded)[-3:] == ("fence-n1", "fence-n2", "fence-n3")
    assert fencing.delete_command("fence-n1") == ["pcs", "stonith", "delete", "fence-n1"]
    assert fencing.delete_command("pgsql") == ["pcs", "resource", "delete", "pgsql"]


def test_two_nodes_get_a_static_delay_on_node1s_device() -> None:
    devices = fencing.devices(dual())
    assert devices[0].options["pcmk_delay_base"] == "10s" and "pcmk_delay_base" not in devices[1].options
    assert "pcmk_delay_base" not in fencing.devices(dual("fence_delay=0\n"))[0].options


def test_a_config_without_fencing_is_refused_unless_it_says_none() -> None:
    with pytest.raises(fencing.FencingError, match=r"c\.ini: fencing: missing: .*fencing=none on purpose"):
        deploy.pcs_commands(parse(BASE))
    loaded = parse(BASE + "fencing=none\n")
    commands = deploy.pcs_commands(loaded)
    assert ["pcs", "property", "set", "no-quorum-policy=stop", "stonith-enabled=false"] in commands
    assert not [c for c in commands if c[:2] == ["pcs", "stonith"]]


def test_gencfg_refuses_a_config_without_fencing(tmp_path: Path) -> None:
    path = tmp_path / "c.ini"
    path.write_text(BASE)
    done = CliRunner().invoke(configure.gencfg_cmd, [str(path)])
    assert done.exit_code != 0 and "fencing: missing" in done.output and "fencing=none" in done.output


@pytest.mark.parametrize("line, message", [
    ('fence_options="username=admin password=s3cret"', "holds a secret (password=)"),
    ('fence_node1="ip=192.0.2.21 passwd=x"', "holds a secret (passwd=)"),
    ('fence_options="secret_key=abc"', "holds a secret (secret_key=)"),
    ('fence_options="pcmk_host_list=n1"', "pcmk_host_list is set by pha"),
    ('fence_options="lanplus"', "'lanplus' is not NAME=VALUE"),
    ("fencing=ipmi", "is not a fence agent"),
    ("fence_password_script='/etc/pha/pw; rm -rf /'", "is not a plain absolute path"),
    ("fence_password_script=relative/pw", "is not a plain absolute path"),
])
def test_bad_fencing_values_are_refused_without_echoing_a_secret(line: str, message: str) -> None:
    agent = "" if line.startswith("fencing=") else "fencing=fence_ipmilan\n"
    found = "\n".join(problems(BASE + agent + line + "\n"))
    assert message in found and "s3cret" not in found


def test_each_node_needs_its_address_and_the_agent_its_secret() -> None:
    found = problems(BASE + IPMI.replace('fence_node3="ip=192.0.2.23"\n', ""))
    assert any("fence_ipmilan needs ip= for n3's device" in p for p in found)
    found = problems(BASE + IPMI.replace("fence_password_script=/etc/pha/fence-password\n", ""))
    assert any("fence_ipmilan needs its secret from fence_password_script" in p for p in found)
    virsh = BASE + "fencing=fence_virsh\nfence_options=\"ip=hv1 username=root identity_file=/root/.ssh/id\"\n" + \
        "".join(f'fence_node{i}="plug=vm{i}"\n' for i in (1, 2, 3))
    assert fencing.devices(parse(virsh))[2].options == {"ip": "hv1", "username": "root",
                                                        "identity_file": "/root/.ssh/id", "plug": "vm3"}
    assert any("there are 3 Pacemaker nodes" in p for p in problems(BASE + IPMI + 'fence_node4="ip=x"\n'))


def test_sbd_and_other_agents() -> None:
    sbd = parse(BASE + 'fencing=fence_sbd\nfence_options="devices=/dev/disk/by-id/shared"\n')
    assert [d.options for d in fencing.devices(sbd)] == [{"devices": "/dev/disk/by-id/shared"}] * 3
    assert any("watchdog" in note for note in fencing.notes(sbd))
    any_agent = parse(BASE + 'fencing=fence_kdump\n')      # not in pha's table: pcs checks its options
    assert [d.agent for d in fencing.devices(any_agent)] == ["fence_kdump"] * 3


def test_fencing_none_warns_about_ignored_keys() -> None:
    loaded = parse(BASE + IPMI.replace("fencing=fence_ipmilan", "fencing=none"))
    assert any("fence_options is ignored: fencing=none" in w for w in loaded.warnings)


@pytest.mark.parametrize("name", ["dual", "muti", "muti_with_lvs", "three_plus_x"])
def test_every_template_fences(name: str) -> None:
    loaded = config.load(str(ROOT / "templates" / name / "config.ini"))
    assert fencing.enabled(loaded) and len(fencing.devices(loaded)) == len(loaded.cluster_nodes)


# --- the installed Pacemaker's names --------------------------------------------------------------
CLUSTER_OPTIONS_3 = """<pacemaker-result api-version="2.38" request="crm_attribute --list-options=cluster">
  <resource-agent name="cluster-options"><parameters>
    <parameter name="fencing-enabled" advanced="0"/><parameter name="no-quorum-policy"/>
  </parameters></resource-agent><status code="0" message="OK"/></pacemaker-result>"""
SCHEDULERD_2 = """<resource-agent name="pacemaker-schedulerd"><parameters>
  <parameter name="stonith-enabled"/><parameter name="stonith-timeout"/></parameters></resource-agent>"""


class Node:
    """Answers the detection's commands like a node with the given tools."""

    def __init__(self, answers: dict[str, crm.CommandResult]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, argv: Sequence[str]) -> crm.CommandResult:
        self.asked.append(list(argv))
        for prefix, result in self.answers.items():
            if argv[0].endswith(prefix):
                return result
        raise FileNotFoundError(argv[0])


def test_names_come_from_what_pacemaker_lists() -> None:
    newer = Node({"crm_attribute": crm.CommandResult(0, CLUSTER_OPTIONS_3, "")})
    assert fencing.detect_names(newer) == fencing.FENCING_NAMES and len(newer.asked) == 1
    older = Node({"crm_attribute": crm.CommandResult(64, "", "Unknown option --list-options=cluster"),
                  "pacemaker-schedulerd": crm.CommandResult(0, SCHEDULERD_2, "")})
    assert fencing.detect_names(older) == fencing.STONITH_NAMES
    assert fencing.detect_names(Node({})) == fencing.STONITH_NAMES          # nothing answers
    assert fencing.known_options("not xml") == set()


def test_the_detected_name_reaches_the_property() -> None:
    versions = cluster.Versions(fencing_enabled="fencing-enabled")
    commands = deploy.pcs_commands(parse(BASE + IPMI), versions)
    assert ["pcs", "property", "set", "no-quorum-policy=stop", "fencing-enabled=true"] in commands


@pytest.mark.parametrize("flag, option", [([], "stonith-enabled"), (["--fencing-option", "fencing-enabled"],
                                                                     "fencing-enabled")])
def test_gencfg_takes_the_detected_name_or_the_flag(monkeypatch: pytest.MonkeyPatch, flag: list, option: str) -> None:
    """Without a Pacemaker to ask, gencfg writes stonith-enabled unless --fencing-option says otherwise."""
    monkeypatch.setattr(cluster, "detect_versions", lambda: cluster.Versions())
    done = CliRunner().invoke(configure.gencfg_cmd, [*flag, str(ROOT / "templates" / "muti" / "config.ini")])
    assert done.exit_code == 0, done.output
    assert f"no-quorum-policy=stop {option}=true" in done.output


# --- pha status ------------------------------------------------------------------------------------
def test_status_warns_about_a_cluster_that_cannot_fence() -> None:
    assert "fencing is disabled" in fencing.cluster_warnings(False, [])[0]
    assert "no fence device" in fencing.cluster_warnings(True, ["ocf:pha:pgsql"])[0]
    assert fencing.cluster_warnings(True, ["ocf:pha:pgsql", "stonith:fence_ipmilan"]) == []


@pytest.mark.parametrize("attribute", ["stonith-enabled", "fencing-enabled"])   # fencing-enabled: 3.0.2+
def test_status_reads_the_fencing_option_under_either_name(attribute: str) -> None:
    from pha import crmstatus
    from pha.commands import common, status
    data = ROOT / "tests" / "unit" / "data"
    cib = common.parse_cib((data / "commands_cib.xml").read_text())
    for value, warning in (("false", "fencing is disabled"), ("true", "no fence device")):
        xml = (data / "commands_crm_mon_healthy.xml").read_text().replace(
            'stonith-enabled="false"', f'{attribute}="{value}"')
        warnings = status.summarize(crmstatus.parse_crm_mon(xml), cib, None)["warnings"]
        found = [w for w in warnings if w.startswith(("fencing is disabled", "fencing is enabled"))]
        assert len(found) == 1 and warning in found[0]


# --- the lab's BMCs ----------------------------------------------------------------------------------
def test_lab_config_takes_the_labs_bmcs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pha.lab import config as lab, fence, ini
    monkeypatch.setenv("PHA_LAB_STATE", str(tmp_path / "nolab"))
    loaded = config.load(str(ROOT / "templates" / "lab.ini"), ini.defaults)
    devices = fencing.devices(loaded)
    assert [d.options["ip"] for d in devices] == [fence.bmc_ip(n) for n in ("node1", "node2", "node3")]
    assert all(d.options["password_script"] == fence.PASSWORD_SCRIPT for d in devices)
    assert fence.bmc_ip("node2").rsplit(".", 1)[1] == "202" and fence.bmc_ip("node2").startswith(
        lab.SUBNET.rsplit(".", 2)[0])
    state = tmp_path / "nofence"
    state.mkdir()
    (state / "lab.json").write_text(json.dumps({"nodes": {}, "fencing": None}))
    monkeypatch.setenv("PHA_LAB_STATE", str(state))
    assert config.load(str(ROOT / "templates" / "lab.ini"), ini.defaults)["fencing"] == "none"   # pha lab up --no-fencing


def test_lab_bmc_config_refuses_a_path_the_shell_would_read(tmp_path: Path) -> None:
    from pha.lab import fence
    text = fence._render_lan_conf("node1", "0123abcd", tmp_path)
    assert f"addr {fence.bmc_ip('node1')} 623" in text and '"admin" "0123abcd" admin' in text
    assert f"pha.lab.power power {tmp_path} node1\"" in text
    with pytest.raises(fence.FenceError, match="not a plain path"):
        fence._render_lan_conf("node1", "x", tmp_path / "a b")


def test_chassis_control_answers_get_and_refuses_nonsense(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pha.lab import power
    (tmp_path / "lab.json").write_text(json.dumps({"nodes": {"node1": {"pid": 0}}}))
    assert power.chassis_control(str(tmp_path), "node1", ["get", "power", "boot"]) == 0
    assert capsys.readouterr().out == "power:0\nboot:default\n"
    assert power.chassis_control(str(tmp_path), "node1", ["get", "colour"]) == 1
    assert power.chassis_control(str(tmp_path), "node9", ["get", "power"]) == 1
    assert power.chassis_control(str(tmp_path), "node1", ["reboot"]) == 1
