"""config.ini to Pacemaker: the pcs script of every template (`pha gencfg`) and setup's steps."""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Optional, Sequence

import pytest
from click.testing import CliRunner

from pha import config, crm, deploy
from pha.commands import configure

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
TEMPLATES = ("dual", "muti", "muti_with_lvs", "three_plus_x")
LAB_LIKE = """\
pcs_template=muti
writer_vip=10.82.0.100
reader_vip=10.82.0.101
node1=node1
node2=node2
node3=node3
vip_nic=eth0
pgsql_pgdata=/var/lib/postgresql/15/pha
fencing=none
"""


def sample(name: str) -> config.Config:
    relative = f"templates/{name}/config.ini"
    return config.parse((ROOT / relative).read_text(), relative)


def script(name: str) -> str:
    loaded = sample(name)
    return deploy.render_script(loaded, deploy.pcs_commands(loaded))


def commands(name: str) -> list[list[str]]:
    return deploy.pcs_commands(sample(name))


def find(cmds: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in cmds if c[:len(prefix)] == list(prefix)]


def params(argv: list[str]) -> dict[str, str]:
    out = {}
    for word in argv[5:]:
        if word == "op":
            break
        name, _, value = word.partition("=")
        out[name] = value
    return out


# --- gencfg, per template ---------------------------------------------------------------------
@pytest.mark.parametrize("name", TEMPLATES)
def test_gencfg_matches_the_shipped_script(name: str) -> None:
    assert script(name) == (ROOT / "templates" / name / "config.pcs").read_text(), \
        f"regenerate: pha gencfg templates/{name}/config.ini > templates/{name}/config.pcs"


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_script_is_pcs_calls_against_a_cib_file(name: str) -> None:
    lines = [line for line in script(name).splitlines() if line and not line.startswith("#")]
    assert lines[:3] == ["set -e", "pcs cluster cib pha-cib.orig.xml", "cp pha-cib.orig.xml pha-cib.xml"]
    assert lines[-1] == "pcs cluster cib-push pha-cib.xml diff-against=pha-cib.orig.xml"
    for line in lines[3:-1]:
        assert shlex.split(line)[:3] == ["pcs", "-f", "pha-cib.xml"], line


@pytest.mark.parametrize("name", TEMPLATES)
def test_pacemaker_2_roles_and_the_writer_vip(name: str) -> None:
    text = script(name)
    for old in ("Master", "Slave", "master-pgsql", "msPostgresql", "expgsql", "IPaddr2", "password="):
        assert old not in text
    cmds = commands(name)
    create = find(cmds, "pcs", "resource", "create", "pgsql")[0]
    assert "promotable" in create and "role=Promoted" in create and "role=Unpromoted" in create
    assert ["pcs", "constraint", "colocation", "add", "vip-writer", "with", "Promoted", "pgsql-clone",
            "score=INFINITY"] in cmds
    assert ["pcs", "constraint", "order", "promote", "pgsql-clone", "then", "start", "vip-writer",
            "symmetrical=false", "kind=Mandatory"] in cmds
    rule = find(cmds, "pcs", "constraint", "location", "vip-reader")[0]
    assert rule[4:] == ["rule", "score=200", "pgsql-status", "eq", "HS:sync", "or", "pgsql-status", "eq",
                        "HS:potential", "or", "pgsql-status", "eq", "HS:async"]


def test_dual_has_the_lock_and_ignores_quorum() -> None:
    cmds = commands("dual")
    assert find(cmds, "pcs", "property", "set")[0][3] == "no-quorum-policy=ignore"
    p = params(find(cmds, "pcs", "resource", "create", "pgsql")[0])
    assert p["enable_distlock"] == "true" and p["node_list"] == "node1 node2"
    assert shlex.split(p["distlock_lock_cmd"]) == [
        "pha", "distlock", "--conninfo",
        "host=192.0.2.238 port=5432 dbname=pha user=pha passfile=/etc/pha/lock.pgpass connect_timeout=3",
        "--name", "pgsql_cls1", "--ttl", "10", "lock"]
    assert shlex.split(p["distlock_unlock_cmd"])[-3:] == ["--name", "pgsql_cls1", "unlock"]
    assert "clone-max=2" in find(cmds, "pcs", "resource", "create", "pgsql")[0]


def test_muti_is_n_nodes_with_quorum_and_no_lvs() -> None:
    cmds = commands("muti")
    assert find(cmds, "pcs", "property", "set")[0][3] == "no-quorum-policy=stop"
    assert not find(cmds, "pcs", "resource", "create", "lvsdr")
    p = params(find(cmds, "pcs", "resource", "create", "pgsql")[0])
    assert p["rep_mode"] == "async" and p["max_lag"] == str(64 << 20) and "enable_distlock" not in p


def test_muti_with_lvs_puts_the_director_with_the_reader_vip_and_real_servers_on_standbys() -> None:
    cmds = commands("muti_with_lvs")
    director = params(find(cmds, "pcs", "resource", "create", "lvsdr")[0])
    assert director["vip"] == "192.0.2.237" and director["scheduler"] == "wrr"
    assert director["realserver_dependent_resource"] == "lvsdr-realsvr-clone"
    assert director["realserver_dependent_attribute_name"] == "pgsql-status"
    assert director["realserver_dependent_attribute_value"] == "HS:sync|HS:potential|HS:async"
    assert director["lag_attribute_name"] == "pgsql-replay-lag" and director["max_lag"] == str(16 << 20)
    assert director["allowed_networks"] == "192.0.2.0/24"
    realsvr = find(cmds, "pcs", "resource", "create", "lvsdr-realsvr")[0]
    assert realsvr[-3:] == ["clone", "lvsdr-realsvr-clone", "clone-node-max=1"] and "nic_lo=lo:0" in realsvr
    assert ["pcs", "constraint", "colocation", "add", "lvsdr", "with", "vip-reader", "score=INFINITY"] in cmds
    assert ["pcs", "constraint", "colocation", "add", "lvsdr-realsvr-clone", "with", "Unpromoted", "pgsql-clone",
            "score=INFINITY", "influence=false"] in cmds
    # sync mode: max_lag drains readers but never makes the sync standby unpromotable
    assert "max_lag" not in params(find(cmds, "pcs", "resource", "create", "pgsql")[0])


def test_three_plus_x_keeps_the_readers_out_of_pacemaker() -> None:
    cmds = commands("three_plus_x")
    p = params(find(cmds, "pcs", "resource", "create", "pgsql")[0])
    assert p["node_list"] == "node1 node2 node3"
    assert "clone-max=3" in find(cmds, "pcs", "resource", "create", "pgsql")[0]
    director = params(find(cmds, "pcs", "resource", "create", "lvsdr")[0])
    assert director["realserver_discovery_conninfo"] == (
        "host=192.0.2.236 port=5432 user=replication dbname=postgres connect_timeout=3 "
        "passfile=/var/lib/postgresql/.pgpass")
    assert "realserver_dependent_resource" not in director
    assert "# readers outside the cluster (stream from the writer VIP): reader1 reader2" in script("three_plus_x")


def test_a_password_in_config_ini_never_reaches_the_script() -> None:
    loaded = config.parse(LAB_LIKE + "pgsql_reppassword='s3cr:et'\npgsql_passfile=/etc/pha/pgpass\n", "c.ini")
    text = deploy.render_script(loaded, deploy.pcs_commands(loaded))
    assert "s3cr" not in text and "passfile=/etc/pha/pgpass" in text


def test_gencfg_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    done = CliRunner().invoke(configure.gencfg_cmd, ["--pcs-version", "0.11", "templates/muti/config.ini"])
    assert done.exit_code == 0 and done.stdout == (ROOT / "templates/muti/config.pcs").read_text()
    bad = tmp_path / "bad.ini"
    bad.write_text("pcs_template=muti\nnode1=a\n")
    done = CliRunner().invoke(configure.gencfg_cmd, [str(bad)])
    assert done.exit_code == 2 and f"2 problems in {bad}:\n{bad}: writer_vip: missing (required)" in done.output
    keys = CliRunner().invoke(configure.gencfg_cmd, ["--list-keys"])
    assert keys.exit_code == 0 and "pgsql_passfile (path) [pgsql]" in keys.stdout


# --- reading CIBs and patches ------------------------------------------------------------------
CIB = """<cib><configuration><resources>
  <clone id="pgsql-clone"><primitive id="pgsql" class="ocf" provider="pha" type="pgsql"/></clone>
  <primitive id="vip-writer" class="ocf" provider="pha" type="vip"/>
  <primitive id="other" class="ocf" provider="heartbeat" type="Dummy"/>
</resources><constraints>
  <rsc_location id="cli-ban-pgsql-clone-on-node2" rsc="pgsql-clone" role="Promoted" node="node2" score="-INFINITY"/>
  <rsc_location id="cli-prefer-other" rsc="other" node="node1" score="INFINITY"/>
  <rsc_colocation id="colocation-vip-writer-pgsql-clone-INFINITY" rsc="vip-writer" with-rsc="pgsql-clone"
                  score="INFINITY"/>
</constraints></configuration></cib>"""


def test_existing_resources_and_kept_constraints() -> None:
    ids = ("pgsql", "vip-writer", "vip-reader")
    assert deploy.existing_primitives(CIB, ids) == ["pgsql", "vip-writer"]
    kept = deploy.kept_constraints(CIB, ids)
    assert len(kept) == 1 and kept[0].startswith('<rsc_location id="cli-ban-pgsql-clone-on-node2"')


def test_patch_changes() -> None:
    patch = """<diff format="2">
      <change operation="create" path="/cib/configuration/resources" position="0">
        <primitive id="vip-reader"/></change>
      <change operation="modify" path="/cib/configuration/resources/primitive[@id='vip-writer']"/>
      <change operation="create" path="/cib/configuration"><rsc_defaults/></change>
    </diff>"""
    assert deploy.patch_changes(patch) == [
        "create /cib/configuration/resources/primitive[@id='vip-reader']",
        "modify /cib/configuration/resources/primitive[@id='vip-writer']",
        "create /cib/configuration/rsc_defaults"]
    assert deploy.patch_changes("") == []


# --- setup's steps -------------------------------------------------------------------------------
class FakeNode:
    """A cluster node's commands, answered from captured XML."""

    def __init__(self, live_cib: str = "<cib><configuration><resources/><constraints/></configuration></cib>",
                 diff_rc: int = 1, missing: Optional[str] = None) -> None:
        self.live_cib, self.diff_rc, self.missing = live_cib, diff_rc, missing
        self.argvs: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
        argv = list(argv)
        self.argvs.append(argv)
        if argv[0] == "crm_mon":
            return crm.CommandResult(0, (DATA / "commands_crm_mon_healthy.xml").read_text(), "")
        if argv[:2] == ["test", "-x"]:
            return crm.CommandResult(1 if argv[2] == self.missing else 0, "", "")
        if argv[0] == "mktemp":
            return crm.CommandResult(0, "/tmp/pha-setup.abc\n", "")
        if argv[0] == "cat":
            return crm.CommandResult(0, self.live_cib, "")
        if argv[0] == "crm_diff":
            patch = '<diff format="2"><change operation="modify" path="/cib/x"/></diff>'
            return crm.CommandResult(self.diff_rc, patch if self.diff_rc else "", "")
        return crm.CommandResult(0, "", "")

    def ran(self, *prefix: str) -> list[list[str]]:
        return [a for a in self.argvs if a[:len(prefix)] == list(prefix)]


def lab_like() -> config.Config:
    return config.parse(LAB_LIKE, "c.ini")


def test_setup_builds_a_copy_and_pushes_the_difference() -> None:
    node = FakeNode()
    result = deploy.setup(lab_like(), node, "node1")
    assert result.pushed and result.changes == ["modify /cib/x"]
    edits = node.ran("pcs", "-f", "/tmp/pha-setup.abc/cib.xml")
    assert len(edits) == len(deploy.pcs_commands(lab_like()))
    assert not node.ran("pcs", "-f", "/tmp/pha-setup.abc/cib.xml", "resource", "delete")
    assert node.ran("pcs", "cluster", "cib-push") == [
        ["pcs", "cluster", "cib-push", "/tmp/pha-setup.abc/cib.xml", "diff-against=/tmp/pha-setup.abc/original.xml"]]
    assert node.argvs[-1] == ["rm", "-rf", "--", "/tmp/pha-setup.abc"]


def test_setup_again_rebuilds_pha_resources_keeps_bans_and_pushes_nothing() -> None:
    node = FakeNode(live_cib=CIB, diff_rc=0)
    result = deploy.setup(lab_like(), node, "node1")
    assert not result.pushed and result.changes == []
    assert node.ran("pcs", "-f", "/tmp/pha-setup.abc/cib.xml", "resource", "delete") == [
        ["pcs", "-f", "/tmp/pha-setup.abc/cib.xml", "resource", "delete", "pgsql"],
        ["pcs", "-f", "/tmp/pha-setup.abc/cib.xml", "resource", "delete", "vip-writer"]]
    kept = node.ran("env", "CIB_file=/tmp/pha-setup.abc/cib.xml", "cibadmin", "--create")
    assert len(kept) == 1 and kept[0][-1].startswith('--xml-text=<rsc_location id="cli-ban-pgsql-clone-on-node2"')
    assert not node.ran("pcs", "cluster", "cib-push")


def test_dry_run_pushes_nothing() -> None:
    node = FakeNode()
    result = deploy.setup(lab_like(), node, "node1", dry_run=True)
    assert result.changes == ["modify /cib/x"] and not result.pushed and not node.ran("pcs", "cluster", "cib-push")


def test_setup_refuses_strange_nodes_and_missing_agents() -> None:
    strange = config.parse(LAB_LIKE.replace("node3=node3", "node3=node4"), "c.ini")
    with pytest.raises(deploy.SetupError, match=r"c\.ini: node4 is not a node of this cluster \(node1 node2 node3\)"):
        deploy.setup(strange, FakeNode(), "node1")
    node = FakeNode(missing="/usr/lib/ocf/resource.d/pha/vip")
    with pytest.raises(deploy.SetupError, match=r"node1: /usr/lib/ocf/resource.d/pha/vip is missing "
                                                r"\(OCF_ROOT=/usr/lib/ocf\): run `pha install-agents`"):
        deploy.setup(lab_like(), node, "node1")
    assert not node.ran("mktemp")


def test_a_lab_config_without_a_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHA_LAB_STATE", str(tmp_path / "nolab"))
    with pytest.raises(deploy.SetupError, match="lab = yes, but no lab under"):
        from pha.lab import ini
        ini.runner(config.load(str(ROOT / "templates" / "lab.ini"), ini.defaults))


def test_the_passfile_gets_the_password(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("otherhost:5432:*:x:y\n*:5432:*:rep:old\n")
    loaded = config.parse(LAB_LIKE + f"pgsql_repuser=rep\npgsql_reppassword='n:ew'\npgsql_passfile={path}\n"
                                     "pgsql_pgdba=root\n", "c.ini")
    assert deploy.write_passfile(loaded) == str(path)
    assert path.read_text() == "otherhost:5432:*:x:y\n*:5432:*:rep:n\\:ew\n"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert deploy.write_passfile(loaded) is None    # unchanged: not rewritten
    assert deploy.write_passfile(lab_like()) is None


# --- the health user's read-only ACL -------------------------------------------------------------------------
ACL_CIB = """<cib><configuration><resources/><constraints/><acls>
  <acl_target id="pha_health"><role id="pha-health-read"/></acl_target>
  <acl_role id="pha-health-read"><acl_permission id="p" kind="read" xpath="/cib"/></acl_role>
</acls></configuration></cib>"""


def test_a_health_user_gets_a_read_only_role_and_acls_are_enabled() -> None:
    cmds = deploy.pcs_commands(config.parse(LAB_LIKE + "health_user=pha_health\n", "c.ini"))
    assert cmds[-3:] == [
        ["pcs", "acl", "role", "create", "pha-health-read", "description=pha health: read the CIB only",
         "read", "xpath", "/cib"],
        ["pcs", "acl", "user", "create", "pha_health", "pha-health-read"],
        ["pcs", "property", "set", "enable-acl=true"]]
    assert not find(deploy.pcs_commands(lab_like()), "pcs", "acl")


def test_setup_rebuilds_the_health_acl_and_names_haclient_members_left_without_access() -> None:
    class Node(FakeNode):
        def __call__(self, argv: Sequence[str], timeout: float) -> crm.CommandResult:
            if list(argv[:2]) == ["getent", "group"]:
                return crm.CommandResult(0, "haclient:x:113:hacluster,pha_health,alice\n", "")
            return super().__call__(argv, timeout)
    node, said = Node(live_cib=ACL_CIB), []
    deploy.setup(config.parse(LAB_LIKE + "health_user=pha_health\n", "c.ini"), node, "node1", progress=said.append)
    edits = node.ran("pcs", "-f", "/tmp/pha-setup.abc/cib.xml", "acl")
    assert [e[4:] for e in edits[:2]] == [["user", "delete", "pha_health"], ["role", "delete", "pha-health-read"]]
    assert any("alice (in haclient, no ACL) will have no access" in line for line in said)



def _leaderless_then(*statuses):
    """crm.Crm's status() answering a DC-less capture, then `statuses`, the last one for ever."""
    from pathlib import Path
    from pha import crmstatus
    elected = crmstatus.parse_crm_mon((Path(__file__).parent / "data" / "crm_mon_all_online.xml").read_text())
    leaderless = elected._replace(summary=elected.summary._replace(dc=None))
    answers = [leaderless] + [elected if s == "elected" else leaderless for s in statuses]

    class Bridge:
        def status(self):
            return answers.pop(0) if len(answers) > 1 else answers[0]
    return Bridge()


def test_setup_waits_for_a_dc_before_it_pushes():
    slept = []
    status = deploy.elected_status(_leaderless_then("leaderless", "elected"), "node1", sleep=slept.append)
    assert status.summary.dc and slept == [1.0, 1.0]


def test_setup_says_when_no_dc_comes():
    now = iter(range(0, 1000, 30))
    with pytest.raises(deploy.SetupError, match="no DC after 60s"):
        deploy.elected_status(_leaderless_then(), "node1", clock=lambda: next(now), sleep=lambda _s: None)
