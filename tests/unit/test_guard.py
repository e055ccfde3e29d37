"""pha guard (pha.pgsql.guard, pha.commands.guard): the records, the decisions, the loop through fakes."""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Optional

import pytest

from pha.commands.guard import Guard
from pha.pgsql import guard
from pha.pgsql.guard import Record, Stack

RECORD = Record("pgsql", "node1", "/var/lib/postgresql/15/main", "", 5432, "/run/postgresql", "postgres")


def cib(props: str = "", nodes: str = "", clone_meta: str = "", primitive_meta: str = "", defaults: str = "") -> str:
    return f"""<cib><configuration>
  <crm_config><cluster_property_set id="cib-bootstrap-options">{props}</cluster_property_set></crm_config>
  <nodes><node id="1" uname="node1">{nodes}</node><node id="2" uname="node2"/></nodes>
  <resources><clone id="pgsql-clone"><meta_attributes id="m">{clone_meta}</meta_attributes>
    <primitive id="pgsql" class="ocf" provider="pha" type="pgsql">
      <meta_attributes id="pm">{primitive_meta}</meta_attributes></primitive></clone></resources>
  <rsc_defaults><meta_attributes id="d">{defaults}</meta_attributes></rsc_defaults>
</configuration><status/></cib>"""


def nv(name: str, value: str) -> str:
    return f'<nvpair id="{name}" name="{name}" value="{value}"/>'


# --- records ---------------------------------------------------------------------------------------
def test_a_record_is_written_once_read_back_and_removed(tmp_path: Path) -> None:
    directory = str(tmp_path / "guard")
    guard.write_record(RECORD, directory)
    path = Path(guard.record_path("pgsql", directory))
    assert os.stat(directory).st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o777 == 0o600
    before = path.stat().st_mtime_ns, path.stat().st_ino
    guard.write_record(RECORD, directory)                     # unchanged: not rewritten
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert guard.read_records(directory) == ([RECORD], [])
    guard.remove_record("pgsql", directory)
    guard.remove_record("pgsql", directory)                   # idempotent
    assert guard.read_records(directory) == ([], [])
    assert guard.read_records(str(tmp_path / "missing")) == ([], [])


def test_an_unreadable_record_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "link.json").symlink_to(tmp_path / "bad.json")
    guard.write_record(RECORD, str(tmp_path))
    records, problems = guard.read_records(str(tmp_path))
    assert records == [RECORD] and len(problems) == 2 and all("json" in p for p in problems)


# --- decisions -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack, policy, expect", [
    (Stack(True), "stop", 0.0),
    (Stack(False), "stop", 3.0),
    (Stack(False), "demote", 3.0),
    (Stack(False), "ignore", 0.0),            # the cluster keeps resources running without quorum
    (Stack(False), "freeze", 0.0),
    (Stack(None, "crm_node: timed out"), "stop", 3.0),
    (Stack(None, "crm_node: no controller"), "freeze", 3.0),  # no stack at all: the policy cannot apply
])
def test_unheard_grows_only_without_a_cluster_managing_the_primary(stack: Stack, policy: str, expect: float) -> None:
    assert guard.unheard_after(2.0, stack, policy, 1.0) == expect


def test_must_stop_only_after_the_grace_and_never_in_maintenance() -> None:
    for unheard, grace, maintenance in itertools.product((0.0, 4.0, 5.0, 9.0), (5.0,), (None, "cluster maintenance-mode")):
        assert guard.must_stop(unheard, grace, maintenance) == (unheard >= grace and maintenance is None)


@pytest.mark.parametrize("text, expect", [
    (cib(), ("stop", None)),
    (cib(props=nv("no-quorum-policy", "freeze")), ("freeze", None)),
    (cib(props=nv("maintenance-mode", "true")), ("stop", "cluster maintenance-mode")),
    (cib(props=nv("maintenance-mode", "false")), ("stop", None)),
    (cib(nodes=f'<instance_attributes id="n1">{nv("maintenance", "on")}</instance_attributes>'),
     ("stop", "node node1 in maintenance")),
    (cib(clone_meta=nv("is-managed", "false")), ("stop", "pgsql unmanaged")),
    (cib(defaults=nv("is-managed", "false")), ("stop", "pgsql unmanaged")),
    (cib(defaults=nv("is-managed", "false"), clone_meta=nv("is-managed", "true")), ("stop", None)),
    (cib(primitive_meta=nv("maintenance", "true")), ("stop", "pgsql in maintenance")),
    (None, ("stop", "the CIB on disk cannot be read")),
    ("<cib", ("stop", "the CIB on disk does not parse")),
    ("<cib/>", ("stop", "the CIB on disk has no configuration")),
])
def test_cib_facts(text: Optional[str], expect: tuple[str, Optional[str]]) -> None:
    facts = guard.cib_facts(text, "pgsql", "node1")
    assert facts.no_quorum_policy == expect[0]
    assert (facts.maintenance is None) if expect[1] is None else expect[1] in facts.maintenance


def test_another_nodes_maintenance_is_not_ours() -> None:
    text = cib(nodes="").replace('uname="node2"/>', f'uname="node2"><instance_attributes id="n2">'
                                                     f'{nv("maintenance", "true")}</instance_attributes></node>')
    assert guard.cib_facts(text, "pgsql", "node1").maintenance is None


# --- the loop --------------------------------------------------------------------------------------
class Fakes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.answers: list[Stack] = []
        self.asked = 0
        self.cib: Optional[str] = cib()
        self.stopped: list[Record] = []
        self.stop_error: Optional[Exception] = None
        self.said: list[str] = []
        self.now, self.step = 100.0, 1.0          # each question takes `step` seconds

    def guard(self, grace: float = 3.0) -> Guard:
        return Guard(interval=1.0, grace=grace, directory=str(self.directory), stack=self.stack,
                     cib=lambda: self.cib, stop=self.stop, say=self.said.append, clock=self.clock)

    def clock(self) -> float:
        self.now += self.step
        return self.now

    def stack(self) -> Stack:
        self.asked += 1
        return self.answers.pop(0) if self.answers else Stack(True)

    def stop(self, record: Record) -> None:
        if self.stop_error:
            raise self.stop_error
        self.stopped.append(record)


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path / "guard")


def test_no_primary_here_costs_no_question(fakes: Fakes) -> None:
    g = fakes.guard()
    for _ in range(3):
        g.check()
    assert fakes.asked == 0 and fakes.stopped == [] and fakes.said == []


def test_a_primary_without_its_cluster_is_stopped_after_the_grace(fakes: Fakes) -> None:
    guard.write_record(RECORD, str(fakes.directory))
    g = fakes.guard(grace=3.0)
    fakes.answers = [Stack(True), Stack(None, "crm_node: connection refused")] + [Stack(None, "gone")] * 5
    for _ in range(3):
        g.check()
    assert fakes.stopped == []                     # 2 s unheard
    g.check()
    assert fakes.stopped == [RECORD]
    assert guard.read_records(str(fakes.directory)) == ([], [])
    g.check()                                      # nothing left to guard: nothing asked
    assert fakes.stopped == [RECORD] and fakes.asked == 4
    assert "connection refused" in fakes.said[0] and "shutting down the primary pgsql" in fakes.said[1]


def test_a_hung_crm_node_counts_in_wall_clock_time(fakes: Fakes) -> None:
    """crm_node timing out after 2 s at each check: the grace is still 3 s, not 3 checks."""
    guard.write_record(RECORD, str(fakes.directory))
    g = fakes.guard(grace=3.0)
    fakes.step = 2.0
    fakes.answers = [Stack(None, "crm_node: timed out after 2s")] * 3
    g.check()
    assert fakes.stopped == [] and g.unheard == 1.0       # the first check counts one interval
    g.check()
    assert fakes.stopped == [RECORD]                      # 1 + 2 s: the third check never came


def test_a_cluster_that_answers_again_resets_the_count(fakes: Fakes) -> None:
    guard.write_record(RECORD, str(fakes.directory))
    g = fakes.guard(grace=3.0)
    fakes.answers = [Stack(None, "x"), Stack(None, "x"), Stack(True), Stack(None, "x"), Stack(None, "x")]
    for _ in range(5):
        g.check()
    assert fakes.stopped == [] and g.unheard == 2.0 and "the cluster answers again" in fakes.said


def test_maintenance_leaves_the_primary_running_and_says_so_once(fakes: Fakes) -> None:
    guard.write_record(RECORD, str(fakes.directory))
    fakes.cib = cib(props=nv("maintenance-mode", "true"))
    g = fakes.guard(grace=1.0)
    fakes.answers = [Stack(None, "stopped on purpose")] * 4
    for _ in range(4):
        g.check()
    assert fakes.stopped == []
    assert sum("leaving pgsql" in line and "maintenance-mode" in line for line in fakes.said) == 1


def test_no_quorum_under_freeze_leaves_the_primary_running(fakes: Fakes) -> None:
    guard.write_record(RECORD, str(fakes.directory))
    fakes.cib = cib(props=nv("no-quorum-policy", "freeze"))
    g = fakes.guard(grace=1.0)
    fakes.answers = [Stack(False)] * 3
    for _ in range(3):
        g.check()
    assert fakes.stopped == [] and g.unheard == 0.0


def test_a_failed_stop_is_said_and_retried(fakes: Fakes) -> None:
    from pha.pgsql.instance import PgError
    guard.write_record(RECORD, str(fakes.directory))
    fakes.stop_error = PgError("processes 12 survive SIGKILL")
    g = fakes.guard(grace=1.0)
    fakes.answers = [Stack(None, "gone")] * 3
    g.check()
    assert any("could not stop pgsql" in line for line in fakes.said)
    fakes.stop_error = None
    g.check()
    assert fakes.stopped == [RECORD]


def test_ask_stack_turns_every_failure_into_no_answer() -> None:
    from pha import crm
    from pha.commands.guard import ask_stack

    def answering(out: str, code: int = 0):
        return crm.Crm(run=lambda argv, timeout: crm.CommandResult(code, out, ""))

    def raising(exc: Exception):
        def run(argv, timeout):
            raise exc
        return crm.Crm(run=run)
    assert ask_stack(answering("1\n"), 2) == Stack(True)
    assert ask_stack(answering("0\n", crm.EXIT_NO_QUORUM), 2) == Stack(False)
    for cli in (answering("", 102), answering("garbage"), raising(TimeoutError("timed out")),
                raising(FileNotFoundError(2, "No such file or directory"))):
        stack = ask_stack(cli, 2)
        assert stack.quorate is None and "crm_node" in stack.why


def test_stop_primary_shuts_the_recorded_instance_down_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pha.commands import guard as command
    calls = []
    monkeypatch.setattr(command.Instance, "stop", lambda self, escalate, immediate=False:
                        calls.append((self.pgdata, self.port, self.user, escalate, immediate)))
    command.stop_primary(RECORD)
    assert calls == [(RECORD.pgdata, 5432, "postgres", 0.0, True)]


def test_the_guard_command_is_registered() -> None:
    from click.testing import CliRunner
    from pha.commands.registry import COMMANDS
    from pha.commands.guard import guard_cmd
    assert COMMANDS["guard"][0] == "pha.commands.guard:guard_cmd"
    result = CliRunner().invoke(guard_cmd, ["--grace", "0"])
    assert result.exit_code == 2 and "--grace" in result.output
