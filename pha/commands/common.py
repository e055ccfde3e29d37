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
from typing import Callable, Iterable, Mapping, Optional

import click

from pha import cib as cib_xml
from pha import crm, crmstatus
from pha.cib import Cib, Primitive
from pha.values import parse_int
from pha.pgsql.names import ATTR_DATA, HEALTHY_DATA, PROPERTY_SET, REPL_INFO  # noqa: F401 (repair.py)

EXIT_OK = 0
EXIT_FAILED = 1        # the operation failed, or the cluster is unhealthy (status)
EXIT_USAGE = 2         # bad arguments (click's own code too)
EXIT_REFUSED = 10      # the cluster is not in a state that allows the operation
EXIT_TIMEOUT = 11      # the operation was started but did not complete in time
EXIT_NO_CLUSTER = 101  # Pacemaker cannot be asked
EXIT_NO_QUORUM = 102   # this node's partition has no quorum

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


def pgsql_settings(primitive: Primitive, defaults: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The pgsql agent's parameters: the defaults its meta-data declares (asked of Pacemaker
    unless given), overlaid with the CIB's values."""
    settings = dict(Cluster().agent_defaults(primitive.agent) if defaults is None else defaults)
    settings.update(primitive.params)
    return settings


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

    def agent_defaults(self, agent: str) -> dict[str, str]:
        """The parameter defaults `agent` (class:provider:type) declares in its meta-data."""
        text = self.call(["crm_resource", f"--show-metadata={agent}"]).stdout
        try:
            return cib_xml.agent_defaults(text)
        except cib_xml.CibError as exc:
            raise Failed(f"{agent}: {exc}", EXIT_FAILED) from None

    def view(self) -> crmstatus.ClusterStatus:
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
        try:
            return cib, cib.pgsql()
        except cib_xml.NoPgsqlResource as exc:
            raise Failed(str(exc), EXIT_REFUSED) from None

    def set_meta(self, resource: str, name: str, value: Optional[str]) -> None:
        """Set (or, with None, delete) a meta attribute of a resource."""
        argv = ["crm_resource", f"--resource={resource}", "--meta"]
        if value is None:
            self.call(argv + [f"--delete-parameter={name}"], ok=(0, 105))
        else:
            self.call(argv + [f"--set-parameter={name}", f"--parameter-value={value}"])

    def require_quorum(self, view: crmstatus.ClusterStatus) -> None:
        if not view.summary.quorum:
            raise Failed("this node's partition has no quorum: run the command in the quorate partition",
                         EXIT_NO_QUORUM)

    def check_node(self, view: crmstatus.ClusterStatus, node: str) -> None:
        if view.node(node) is None:
            raise Failed(f"{node} is not a node of this cluster ({' '.join(n.name for n in view.nodes)})",
                         EXIT_USAGE)


def parse_cib(xml_text: str) -> Cib:
    """pha.cib.parse_cib, its errors as the commands report them."""
    try:
        return cib_xml.parse_cib(xml_text)
    except cib_xml.CibError as exc:
        raise Failed(str(exc), EXIT_NO_CLUSTER) from None


def as_int(text: Optional[str], default: Optional[int] = None) -> Optional[int]:
    """An integer from the CIB or an attribute; `default` when unset or not one ("²", "1_0")."""
    try:
        return default if text is None else parse_int(text)
    except ValueError:
        return default


def int_attribute(view: crmstatus.ClusterStatus, node: str, name: str) -> Optional[int]:
    """A node attribute as an integer (None when unset or not an integer)."""
    return as_int(view.attribute(node, name))


def node_list(primitive: Primitive) -> list[str]:
    return primitive.params.get("node_list", "").split()


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
