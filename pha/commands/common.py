"""What the cluster commands share: the CIB as pha reads it, the live cluster,
waiting with progress, output, errors and exit codes.

Commands run on a cluster node and learn everything from Pacemaker: the pgsql
resource (an `ocf:pha:pgsql` promotable clone) and its parameters come from
the CIB, so no config.ini is needed on the node. Exit codes keep pha4pgsql's
meaning where it had one.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Iterable, NamedTuple, Optional

import click

from pha import crm

EXIT_OK = 0
EXIT_FAILED = 1        # the operation failed, or the cluster is unhealthy (status)
EXIT_USAGE = 2         # bad arguments (click's own code too)
EXIT_REFUSED = 10      # the cluster is not in a state that allows the operation
EXIT_TIMEOUT = 11      # the operation was started but did not complete in time
EXIT_NO_CLUSTER = 101  # Pacemaker cannot be asked
EXIT_NO_QUORUM = 102   # this node's partition has no quorum

PGSQL_AGENTS = ("ocf:pha:pgsql", "ocf:heartbeat:pgsql")
PROPERTY_SET = "pha-pgsql"      # where ocf:pha:pgsql keeps REPL_INFO
REPL_INFO = "REPL_INFO"
ATTR_STATUS = "pgsql-status"
ATTR_DATA = "pgsql-data-status"
ATTR_LAG = "pgsql-replay-lag"
ATTR_RECEIVER = "pgsql-receiver"
STREAMING = ("STREAMING|SYNC", "STREAMING|POTENTIAL", "STREAMING|ASYNC")
HEALTHY_DATA = ("LATEST", *STREAMING)
PROGRESS_EVERY = 5.0


class Failed(click.ClickException):
    """Ends a command with `message` on stderr and `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def say(text: str) -> None:
    """Progress and notes: stderr, so that stdout holds only the result (and --json stays JSON)."""
    click.echo(text, err=True)


def emit(result: dict, as_json: bool, text: str) -> None:
    """The command's result: JSON, or text for people."""
    click.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else text)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def timeout_option(default: int) -> Callable:
    return click.option("--timeout", type=click.IntRange(1, 3600), default=default, show_default=True,
                        help="Seconds to wait for the cluster.")


# --- the CIB, as pha reads it (pure) -------------------------------------------------
class Primitive(NamedTuple):
    """A primitive resource of the CIB."""

    id: str
    agent: str                      # class:provider:type
    params: dict[str, str]          # instance attributes
    meta: dict[str, str]            # meta attributes
    clone: Optional[str] = None     # id of the clone around it
    clone_meta: dict[str, str] = {}

    @property
    def top(self) -> str:
        """The id Pacemaker manages it by: its clone's, or its own."""
        return self.clone or self.id


class Colocation(NamedTuple):
    id: str
    rsc: str
    with_rsc: str
    score: str
    rsc_role: Optional[str]
    with_role: Optional[str]


class Cib(NamedTuple):
    """The configuration section of the CIB, as far as pha's commands need it."""

    primitives: dict[str, Primitive]
    colocations: list[Colocation]
    locations: list[tuple[str, str]]      # (constraint id, resource)

    def by_agent(self, *agents: str) -> list[Primitive]:
        return [p for p in self.primitives.values() if p.agent in agents]

    def pgsql(self) -> Primitive:
        """The PostgreSQL resource, in its promotable clone; Failed unless exactly one."""
        found = [p for p in self.by_agent(*PGSQL_AGENTS) if p.clone]
        if not found:
            raise Failed("no PostgreSQL resource (ocf:pha:pgsql in a promotable clone) in the CIB: "
                         "configure the cluster with `pha setup CONFIG`", EXIT_REFUSED)
        if len(found) > 1:
            raise Failed(f"several PostgreSQL clones in the CIB ({', '.join(p.clone or p.id for p in found)}): "
                         "pha manages one", EXIT_REFUSED)
        return found[0]

    def dependents(self, top: str) -> list[str]:
        """Resources (top ids) colocated with `top`, directly or through others, in order found."""
        found: list[str] = []
        frontier = [top]
        while frontier:
            anchor = frontier.pop(0)
            for c in self.colocations:
                if c.with_rsc == anchor and c.rsc not in found and c.rsc != top and _positive(c.score):
                    found.append(c.rsc)
                    frontier.append(c.rsc)
        return found

    def primitive_of(self, top: str) -> Optional[Primitive]:
        return next((p for p in self.primitives.values() if p.top == top), None)

    def target_role(self, top: str) -> Optional[str]:
        """The target-role meta attribute of a top-level resource, if set."""
        primitive = self.primitive_of(top)
        if primitive is None:
            return None
        return (primitive.clone_meta if primitive.clone else primitive.meta).get("target-role")


def _positive(score: str) -> bool:
    try:
        return crm.parse_score(score) > 0
    except ValueError:
        return False


def _nvpairs(element, tag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for block in element.findall(tag):
        for nv in block.findall("nvpair"):
            pairs[nv.get("name", "")] = nv.get("value", "")
    return pairs


def parse_cib(xml_text: str) -> Cib:
    """Parse `cibadmin --query` output (whole CIB or its configuration section)."""
    from xml.etree import ElementTree
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise Failed(f"the CIB is not XML: {exc}", EXIT_NO_CLUSTER) from None
    config = root if root.tag == "configuration" else root.find("configuration")
    if config is None:
        raise Failed(f"the CIB has no <configuration> (root <{root.tag}>)", EXIT_NO_CLUSTER)
    primitives: dict[str, Primitive] = {}

    def add(element, clone: Optional[str], clone_meta: dict[str, str]) -> None:
        agent = ":".join(x for x in (element.get("class"), element.get("provider"), element.get("type")) if x)
        primitives[element.get("id", "")] = Primitive(
            element.get("id", ""), agent, _nvpairs(element, "instance_attributes"),
            _nvpairs(element, "meta_attributes"), clone, clone_meta)

    resources = config.find("resources")
    for element in (resources if resources is not None else []):
        if element.tag == "primitive":
            add(element, None, {})
        elif element.tag == "clone":
            meta = _nvpairs(element, "meta_attributes")
            for inner in element.iter("primitive"):
                add(inner, element.get("id", ""), meta)
        elif element.tag == "group":
            for inner in element.findall("primitive"):
                add(inner, None, {})
    colocations, locations = [], []
    for element in config.iterfind("constraints/rsc_colocation"):
        if element.get("rsc") and element.get("with-rsc"):
            colocations.append(Colocation(
                element.get("id", ""), element.get("rsc", ""), element.get("with-rsc", ""),
                element.get("score", "0"), _role(element.get("rsc-role")), _role(element.get("with-rsc-role"))))
    for element in config.iterfind("constraints/rsc_location"):
        locations.append((element.get("id", ""), element.get("rsc", "")))
    return Cib(primitives, colocations, locations)


def _role(role: Optional[str]) -> Optional[str]:
    return crm.normalise_role(role) if role else None


def pgsql_settings(primitive: Primitive) -> dict[str, str]:
    """The pgsql agent's parameters: its declared defaults, overlaid with the CIB's values."""
    from pha.agents import pgsql as agent
    settings = {p.name: "" if p.default is None else _text(p.default) for p in agent.AGENT.params}
    settings.update(primitive.params)
    return settings


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- the live cluster -------------------------------------------------------------------
class Cluster:
    """Pacemaker, asked through pha.crm (a runner can be injected for tests and the lab)."""

    def __init__(self, bridge: Optional[crm.Crm] = None) -> None:
        self.bridge = bridge or crm.Crm(timeout=20.0)

    def call(self, argv: Iterable[str], ok: tuple[int, ...] = (0,), timeout: Optional[float] = None
             ) -> crm.CommandResult:
        try:
            return self.bridge.call(list(argv), timeout=timeout, ok=ok)
        except crm.CrmError as exc:
            raise Failed(str(exc), EXIT_NO_CLUSTER if exc.returncode is None else EXIT_FAILED) from None

    def cib(self) -> Cib:
        return parse_cib(self.call(["cibadmin", "--query", "--scope=configuration"]).stdout)

    def view(self) -> crm.ClusterStatus:
        try:
            return self.bridge.status()
        except crm.CrmError as exc:
            raise Failed(f"cannot read the cluster status: {exc}", EXIT_NO_CLUSTER) from None
        except ValueError as exc:
            raise Failed(f"cannot read the cluster status: {exc}", EXIT_NO_CLUSTER) from None

    def me(self) -> str:
        try:
            return self.bridge.local_node_name()
        except crm.CrmError as exc:
            raise Failed(f"this machine is not a running cluster node: {exc}", EXIT_NO_CLUSTER) from None

    def repl_info(self) -> Optional[str]:
        try:
            return self.bridge.get_property(REPL_INFO, set_name=PROPERTY_SET)
        except crm.CrmError as exc:
            raise Failed(str(exc), EXIT_NO_CLUSTER) from None

    def pgsql(self) -> tuple[Cib, Primitive]:
        cib = self.cib()
        return cib, cib.pgsql()

    def set_meta(self, resource: str, name: str, value: Optional[str]) -> None:
        """Set (or, with None, delete) a meta attribute of a resource."""
        argv = ["crm_resource", f"--resource={resource}", "--meta"]
        if value is None:
            self.call(argv + [f"--delete-parameter={name}"], ok=(0, 105))
        else:
            self.call(argv + [f"--set-parameter={name}", f"--parameter-value={value}"])

    def require_quorum(self, view: crm.ClusterStatus) -> None:
        if not view.summary.quorum:
            raise Failed("this node's partition has no quorum: run the command in the quorate partition",
                         EXIT_NO_QUORUM)

    def check_node(self, view: crm.ClusterStatus, node: str) -> None:
        if view.node(node) is None:
            raise Failed(f"{node} is not a node of this cluster ({' '.join(n.name for n in view.nodes)})",
                         EXIT_USAGE)


def node_list(primitive: Primitive) -> list[str]:
    return primitive.params.get("node_list", "").split()


def active_on(view: crm.ClusterStatus, top: str, node: str) -> bool:
    return node in view.resource_nodes(top)


# --- waiting ----------------------------------------------------------------------------
Check = Callable[[], tuple[bool, str]]


def wait(what: str, check: Check, timeout: float, interval: float = 1.0,
         every: float = PROGRESS_EVERY, echo: Callable[[str], None] = say,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll check() (-> done, what is missing) until done; show progress; return the seconds waited.

    A Failed raised by check() counts as "not yet" (Pacemaker can be busy);
    on timeout, Failed(EXIT_TIMEOUT) names what was still missing.
    """
    start = clock()
    echo(f"waiting for {what} (up to {timeout:.0f}s)")
    shown = start
    detail = "not checked yet"
    while True:
        try:
            done, detail = check()
        except Failed as exc:
            done, detail = False, str(exc.message)
        now = clock()
        if done:
            echo(f"{what}: done after {now - start:.1f}s")
            return now - start
        if now - start >= timeout:
            raise Failed(f"{what}: not reached within {timeout:.0f}s: {detail}", EXIT_TIMEOUT)
        if now - shown >= every:
            echo(f"  {now - start:5.0f}s  still waiting: {detail}")
            shown = now
        sleep(interval)
