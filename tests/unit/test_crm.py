"""The Pacemaker bridge: argument lists, errors, timeouts (crm_mon's XML: test_crmstatus)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import pytest

from pha import crm, crmstatus

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "data"


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


# --- versions and crm_mon ---------------------------------------------------------
@pytest.mark.parametrize("text, version", [
    ("Pacemaker 2.1.5\nWritten by Andrew Beekhof and the Pacemaker project contributors\n", (2, 1, 5)),
    ("Pacemaker 3.0.0\n", (3, 0, 0)), ("0.12.0.2\n", (0, 12, 0, 2)), ("3.0.0-3.0.0", (3, 0, 0)),
    ("2.1.5-a3f44794f94", (2, 1, 5)), ("", None), ("Pacemaker\n", None)])
def test_parse_version(text: str, version: Optional[tuple]) -> None:
    assert crm.parse_version(text) == version


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
    c.set_promotion_score(-crmstatus.SCORE_INFINITY * 3, resource="pgsql", node="node2")
    c.set_promotion_score(100)
    c.delete_promotion_score(resource="pgsql", node="node2")
    assert c.get_promotion_score(resource="pgsql") == -crmstatus.SCORE_INFINITY
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
        crmstatus.ResourceLocation("node3", False), crmstatus.ResourceLocation("node1", False),
        crmstatus.ResourceLocation("node2", True)]
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


def test_module_imports_stay_light() -> None:
    import subprocess as sp
    code = ("import sys, pha.crm; heavy = {'subprocess', 'xml.etree.ElementTree', "
            "'pyroute2', 'psycopg', 'click'} & set(sys.modules); print(sorted(heavy))")
    out = sp.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
