"""The OCF runtime: declarations, parameters, meta-data, notify, logging."""
from __future__ import annotations

import importlib
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pha import ocf, ocflog, ocfmetadata
from pha.install import AGENTS

pytestmark = pytest.mark.unit
SCHEMAS = [Path(__file__).parent.parent / "data" / "ocf-1.1.rng",
           Path("/usr/share/pcs/data/ocf-1.1.rng")]


def sample_agent() -> ocf.Agent:
    agent = ocf.Agent(
        name="sample", version="1.0", shortdesc="short", longdesc="long <&> text",
        params=[
            ocf.Param("ip", "string", required=True, unique_group="addr", shortdesc="IP"),
            ocf.Param("port", "integer", default=5432,
                      check=lambda v: None if 0 < int(v) < 65536 else "must be 1-65535"),
            ocf.Param("flag", "boolean", default=False, reloadable=True),
            ocf.Param("mode", "select", options=("async", "sync"), default="async"),
            ocf.Param("old", "string", deprecated=True, replaced_with=("mode",)),
        ],
        actions=[ocf.Action("start", timeout=30), ocf.Action("stop"),
                 ocf.Action("monitor", timeout=10, interval=9, role="Promoted", depth=0)],
    )
    seen: dict[str, ocf.Resource] = {}

    @agent.handler("start")
    def start(res: ocf.Resource) -> int:
        seen["start"] = res
        return ocf.SUCCESS

    @agent.handler("stop")
    def stop(res: ocf.Resource) -> int:
        return ocf.SUCCESS

    @agent.handler("monitor")
    def monitor(res: ocf.Resource) -> int:
        seen["monitor"] = res
        return ocf.NOT_RUNNING if res.is_probe else ocf.RUNNING_PROMOTED

    agent.seen = seen  # type: ignore[attr-defined]
    return agent


def test_params_typed_with_defaults() -> None:
    agent = sample_agent()
    assert agent.run(["start"], {"OCF_RESKEY_ip": "10.0.0.1", "OCF_RESKEY_flag": "yes"}) == 0
    params = agent.seen["start"].params
    assert params == {"ip": "10.0.0.1", "port": 5432, "flag": True, "mode": "async", "old": None}


@pytest.mark.parametrize("env, culprit", [
    ({}, "required parameter(s) not set: ip"),
    ({"OCF_RESKEY_port": "54x"}, "parameter port=54x is not an integer"),
    ({"OCF_RESKEY_port": "70000"}, "parameter port=70000 must be 1-65535"),
    ({"OCF_RESKEY_flag": "maybe"}, "parameter flag=maybe is not a boolean"),
    ({"OCF_RESKEY_mode": "semi"}, "parameter mode=semi must be one of async, sync"),
])
def test_bad_params_are_err_configured_with_reason(env, culprit, capsys) -> None:
    env = {"OCF_RESKEY_ip": "10.0.0.1", **env} if "required" not in culprit else env
    for action in ("start", "validate-all", "monitor"):
        assert sample_agent().run([action], env) == ocf.ERR_CONFIGURED
        err = capsys.readouterr().err
        assert f"ocf-exit-reason:{culprit}" in err


def test_stop_with_bad_params_is_stopped(capsys) -> None:
    assert sample_agent().run(["stop"], {"OCF_RESKEY_port": "x"}) == ocf.SUCCESS
    assert "WARNING" in capsys.readouterr().err


def test_unknown_action_and_usage(capsys) -> None:
    agent = sample_agent()
    assert agent.run(["frobnicate"], {"OCF_RESKEY_ip": "1.2.3.4"}) == ocf.ERR_UNIMPLEMENTED
    assert agent.run([], {}) == ocf.ERR_ARGS
    assert agent.run(["usage"], {}) == ocf.SUCCESS
    assert "usage: sample {meta-data|monitor|start|stop|validate-all}" in capsys.readouterr().out


def test_validators_run_before_actions_but_stop() -> None:
    agent = sample_agent()
    calls = []

    @agent.validator
    def check(res: ocf.Resource) -> None:
        calls.append(res.action)
        if res.params["ip"] == "bad":
            raise ocf.OCFError(ocf.ERR_ARGS, "ip bad on this node")

    env = {"OCF_RESKEY_ip": "bad"}
    assert agent.run(["start"], env) == ocf.ERR_ARGS
    assert agent.run(["validate-all"], env) == ocf.ERR_ARGS
    assert agent.run(["stop"], env) == ocf.SUCCESS
    assert calls == ["start", "validate-all"]


def test_probe_detection() -> None:
    agent = sample_agent()
    env = {"OCF_RESKEY_ip": "1.2.3.4", "OCF_RESKEY_CRM_meta_interval": "0"}
    assert agent.run(["monitor"], env) == ocf.NOT_RUNNING
    assert agent.seen["monitor"].is_probe
    env["OCF_RESKEY_CRM_meta_interval"] = "9000"
    assert agent.run(["monitor"], env) == ocf.RUNNING_PROMOTED
    assert not agent.seen["monitor"].is_probe


def test_declaration_errors() -> None:
    with pytest.raises(ValueError):
        ocf.Param("x", "float")
    with pytest.raises(ValueError):
        ocf.Param("x", "select")
    with pytest.raises(ValueError):
        ocf.Param("x", required=True, default="a")
    with pytest.raises(ValueError):
        ocf.Action("monitor", role="Master")
    with pytest.raises(ValueError):
        ocf.Agent("a", "1", "s", "l", [ocf.Param("x", deprecated=True, replaced_with=("y",))], [])


def test_return_codes() -> None:
    assert (ocf.RUNNING_PROMOTED, ocf.FAILED_PROMOTED) == (8, 9)
    assert (ocf.DEGRADED, ocf.DEGRADED_PROMOTED) == (190, 191)
    assert ocf.CODE_NAMES[ocf.ERR_CONFIGURED] == "OCF_ERR_CONFIGURED"


def test_metadata_content() -> None:
    root = ET.fromstring(sample_agent().metadata())
    assert root.get("name") == "sample" and root.findtext("version") == "1.1"
    assert root.findtext("longdesc") == "long <&> text"
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert params["ip"].get("required") == "1" and params["ip"].get("unique-group") == "addr"
    assert params["flag"].get("reloadable") == "1"
    assert params["port"].find("content").get("default") == "5432"
    assert params["flag"].find("content").get("default") == "false"
    assert [o.get("value") for o in params["mode"].iter("option")] == ["async", "sync"]
    assert params["old"].find("deprecated/replaced-with").get("name") == "mode"
    monitor = root.find("actions/action[@name='monitor']")
    assert monitor.attrib == {"name": "monitor", "timeout": "10s", "interval": "9s",
                              "depth": "0", "role": "Promoted"}


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("schema", SCHEMAS, ids=["strict-ocf-1.1", "pcs-ocf-1.1"])
def test_every_agent_metadata_validates(agent: str, schema: Path, tmp_path: Path) -> None:
    module = importlib.import_module("pha.agents." + agent.replace("-", "_"))
    doc = tmp_path / f"{agent}.xml"
    doc.write_text(module.AGENT.metadata())
    out = subprocess.run(["xmllint", "--noout", "--relaxng", str(schema), str(doc)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("agent", AGENTS)
def test_ocf10_compatible_agents_conform_to_resource_agents_schemas(agent: str) -> None:
    """What ocf-tester (ra-api-1.dtd) and resource-agents' metadata.rng accept."""
    module = importlib.import_module("pha.agents." + agent.replace("-", "_"))
    if not ocfmetadata.ocf10_compatible(module.AGENT):
        pytest.skip(f"{agent} uses OCF 1.1 features (select, deprecated, reloadable...)")
    xml = module.AGENT.metadata()
    dtd = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, text=True,
                         capture_output=True, cwd="/usr/share/resource-agents")
    assert dtd.returncode == 0, dtd.stderr
    rng = subprocess.run(["xmllint", "--noout", "--relaxng",
                          "/usr/share/resource-agents/metadata.rng", "-"],
                         input=xml, text=True, capture_output=True, cwd="/usr/share/resource-agents")
    assert rng.returncode == 0, rng.stderr


def test_ocf10_compatibility_is_detected() -> None:
    assert not ocfmetadata.ocf10_compatible(sample_agent())
    plain = ocf.Agent("p", "1", "s", "l", [ocf.Param("x", unique=True)], [ocf.Action("start")])
    assert ocfmetadata.ocf10_compatible(plain)
    assert "<!DOCTYPE" in plain.metadata() and "<!DOCTYPE" not in sample_agent().metadata()


def test_sample_metadata_validates(tmp_path: Path) -> None:
    doc = tmp_path / "sample.xml"
    doc.write_text(sample_agent().metadata())
    for schema in SCHEMAS:
        out = subprocess.run(["xmllint", "--noout", "--relaxng", str(schema), str(doc)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


NOTIFY_ENV = {
    "OCF_RESKEY_CRM_meta_notify_type": "post",
    "OCF_RESKEY_CRM_meta_notify_operation": "promote",
    "OCF_RESKEY_CRM_meta_notify_promote_uname": "node2 ",
    "OCF_RESKEY_CRM_meta_notify_promote_resource": "pgsql:1 ",
    "OCF_RESKEY_CRM_meta_notify_master_uname": "node2",
    "OCF_RESKEY_CRM_meta_notify_slave_uname": "node1 node3",
    "OCF_RESKEY_CRM_meta_notify_active_uname": "node1 node2 node3",
    "OCF_RESKEY_CRM_meta_notify_stop_uname": " ",
    "OCF_RESKEY_CRM_meta_notify_all_uname": "node1 node2 node3",
}


def test_notify_parsing_legacy_names() -> None:
    n = ocf.parse_notify(NOTIFY_ENV)
    assert n is not None and n.is_post and not n.is_pre and n.operation == "promote"
    assert n["promote"] == ("node2",) and n.resources["promote"] == ("pgsql:1",)
    assert n["promoted"] == n["master"] == ("node2",)
    assert n["unpromoted"] == n["slave"] == ("node1", "node3")
    assert n["stop"] == () and n["demote"] == ()
    assert n["all"] == ("node1", "node2", "node3")


def test_notify_parsing_new_names_win() -> None:
    env = {"OCF_RESKEY_CRM_meta_notify_type": "pre", "OCF_RESKEY_CRM_meta_notify_operation": "demote",
           "OCF_RESKEY_CRM_meta_notify_promoted_uname": "node1",
           "OCF_RESKEY_CRM_meta_notify_master_uname": "node1",
           "OCF_RESKEY_CRM_meta_notify_unpromoted_uname": "node2 node3",
           "OCF_RESKEY_CRM_meta_notify_demote_uname": "node1"}
    n = ocf.parse_notify(env)
    assert n.is_pre and n["master"] == ("node1",) and n["slave"] == ("node2", "node3")
    assert ocf.parse_notify({}) is None


def test_clone_info() -> None:
    env = {"OCF_RESKEY_CRM_meta_clone": "1", "OCF_RESKEY_CRM_meta_clone_max": "3",
           "OCF_RESKEY_CRM_meta_clone_node_max": "1", "OCF_RESKEY_CRM_meta_master_max": "1",
           "OCF_RESKEY_CRM_meta_master_node_max": "1", "OCF_RESKEY_CRM_meta_notify": "true"}
    info = ocf.clone_info(env)
    assert info == ocf.CloneInfo(clone="1", clone_max=3, clone_node_max=1, promotable=True,
                                 promoted_max=1, promoted_node_max=1, notify=True)
    assert ocf.clone_info({}) is None


def test_logging_like_ocf_shellfuncs(tmp_path: Path, capsys) -> None:
    logfile = tmp_path / "ha.log"
    env = {"OCF_RESOURCE_INSTANCE": "vip1", "HA_LOGFILE": str(logfile)}
    log = ocflog.Log("vip", env)
    log.debug("hidden")
    log.info("hello")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "vip(vip1)[" in err and "]: INFO: hello" in err
    assert "INFO: hello" in logfile.read_text()
    ocflog.Log("vip", {**env, "HA_debug": "1"}).debug("shown")
    assert "DEBUG: shown" in capsys.readouterr().err


def test_exit_reason_is_one_line(capsys) -> None:
    ocflog.exit_reason("two\nlines")
    assert capsys.readouterr().err == "ocf-exit-reason:two lines\n"


def test_a_value_cannot_forge_a_log_line(tmp_path: Path, capsys) -> None:
    logfile = tmp_path / "ha.log"
    forged = "10.0.0.1\nsample(x)[1]: INFO: all is well\r\x1b[2J"
    env = {"OCF_RESKEY_ip": "10.0.0.1", "OCF_RESKEY_port": forged, "HA_LOGFILE": str(logfile)}
    assert sample_agent().run(["start"], env) == ocf.ERR_CONFIGURED
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 2  # the exit reason and the error, one line each
    assert "ocf-exit-reason:parameter port=10.0.0.1\\nsample(x)[1]: INFO: all is well\\r\\x1b[2J is not an integer" in err
    assert len(logfile.read_text().splitlines()) == 1
    ocflog.Log("sample", env).warning("line one\nline two")
    assert capsys.readouterr().err.count("\n") == 1


def test_huge_values_are_truncated_and_secrets_masked(capsys) -> None:
    env = {"OCF_RESKEY_ip": "10.0.0.1", "OCF_RESKEY_port": "9" * 1_000_000}
    assert sample_agent().run(["start"], env) == ocf.ERR_CONFIGURED
    err = capsys.readouterr().err
    assert len(err) < 1000 and "...(1000000 characters) is not an integer" in err
    ocflog.Log("sample", {}).info("conninfo host=a password=hunter2 " + "x" * 10_000)
    err = capsys.readouterr().err
    assert "hunter2" not in err and "password=***" in err and len(err) < ocflog.MAX_LINE + 100
    err = ocf.bad_param("monitor_password", "hunter2", "is wrong", secret=True).reason
    assert err == "parameter monitor_password=*** is wrong"
    secret = ocf.Param("token", "integer", secret=True)
    with pytest.raises(ocf.OCFError) as raised:
        secret.parse("hunter2")
    assert raised.value.reason == "parameter token=*** is not an integer"


@pytest.mark.parametrize("raw, value", [("12", 12), (" 12 ", 12), ("+80", 80), ("1_0", None),
                                        ("\u0661\u0662", None), ("1.5", None), ("0x10", None),
                                        ("", 5432)])
def test_integer_parameters_are_ascii_digits(raw: str, value, capsys) -> None:
    agent = sample_agent()
    env = {"OCF_RESKEY_ip": "10.0.0.1", "OCF_RESKEY_port": raw}
    if value is None:
        assert agent.run(["start"], env) == ocf.ERR_CONFIGURED
        assert "is not an integer" in capsys.readouterr().err
    else:
        assert agent.run(["start"], env) == ocf.SUCCESS
        assert agent.seen["start"].params["port"] == value


def test_check_may_raise_value_error(capsys) -> None:
    def check(value) -> None:
        raise ValueError("is not a network interface name")
    param = ocf.Param("nic", check=check)
    with pytest.raises(ocf.OCFError) as raised:
        param.parse("eth0;reboot")
    assert raised.value.reason == "parameter nic=eth0;reboot is not a network interface name"


@pytest.mark.parametrize("error", [RuntimeError("boom\nforged line"), RecursionError("deep"),
                                   MemoryError(), KeyError("k")])
@pytest.mark.parametrize("where", ["handler", "validator", "stop"])
def test_unexpected_exceptions_are_internal_errors(error: Exception, where: str, capsys) -> None:
    agent = sample_agent()

    def explode(res: ocf.Resource) -> int:
        raise error
    if where == "validator":
        agent.validator(explode)
    else:
        agent.handler("start" if where == "handler" else "stop")(explode)
    action = "stop" if where == "stop" else "start"
    assert agent.run([action], {"OCF_RESKEY_ip": "10.0.0.1"}) == ocf.ERR_GENERIC
    err = capsys.readouterr().err
    reasons = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert reasons == [f"ocf-exit-reason:internal error: {type(error).__name__}: "
                       + str(error).replace("\n", "\\n")]
    assert "ERROR: Traceback (most recent call last):" in err
    assert all(line.startswith(("ocf-exit-reason:", "sample(sample)[")) for line in err.splitlines())


def test_dead_code_is_gone() -> None:
    assert not hasattr(ocf.Agent, "main") and not hasattr(ocf, "LEVELS")
