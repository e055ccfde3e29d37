"""The Pacemaker bridge: the one place pha talks to Pacemaker.

Every call runs a Pacemaker CLI with an argument list (never a shell string)
and a timeout; a failure raises `CrmError`, which names the full command, its
exit code and its error text. `Crm` holds the runner, so unit tests can inject
a fake one; real code uses `run_command` (subprocess).

Agents import this module on their hot path: it imports only the standard
library, and subprocess / ElementTree only when they are needed. Its records
are typed NamedTuples rather than dataclasses: ten frozen dataclasses cost
~15 ms at every import, the NamedTuples ~3 ms.

Pacemaker 2.1.5 behaviour this module relies on (measured on a real cluster):
- `crm_attribute --query` exits 105 with "No such device or address" when the
  attribute is not set, and 105 with "Could not map name=... to a UUID" when
  the node is unknown: only the first means "not set".
- `crm_attribute -p -v -INFINITY` is mis-parsed; `--promotion[=RSC]
  --update=VALUE` is not. Every option is passed in its `--opt=VALUE` form.
- `crm_node -q` prints 0 and exits 106 when the partition has no quorum.
- `crm_node` has no XML output; `crm_resource --locate` and `crm_mon` do.
- `crm_mon --output-as=xml` implies one-shot and already holds node
  attributes, fail counts (in node_history), failures and bans; `-A`/`-f`
  change nothing, so `--include=all` states the intent instead.

Pacemaker 3.0 (Debian 13, measured on 3.0.0) behaves the same for all of the
above, and parses `-p -v -INFINITY` too. Its crm_mon XML (api-version 2.38)
moved pacemakerd's state to `<stack pacemakerd-state=...>`; 3.0.2 renamed the
stonith-* cluster options to fencing-* (`fencing_option`), and crm_mon reports
`fencing-enabled`. `parse_crm_mon` reads both generations.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

DEFAULT_TIMEOUT = 10.0
"""Seconds a Pacemaker CLI may run; module-wide, used when `Crm` gets none."""

SCORE_INFINITY = 1_000_000
LIFETIMES = ("reboot", "forever")
EXIT_NO_SUCH_OBJECT = 105  # CRM_EX_NOSUCH
EXIT_NO_QUORUM = 106  # CRM_EX_QUORUM
_NOT_SET = "No such device or address"  # strerror(ENXIO) under LC_ALL=C

CRM_MON_ARGV = ("crm_mon", "--one-shot", "--inactive", "--include=all", "--output-as=xml")
FENCING_RENAMED = (3, 0, 2)
"""The Pacemaker version that renamed stonith-enabled (and the other stonith-* options) to fencing-*."""

Score = Union[int, str]


# --- running commands ------------------------------------------------------------
class CommandResult(NamedTuple):
    """What a finished command left behind."""

    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], CommandResult]
"""run(argv, timeout) -> CommandResult; raises TimeoutError or OSError."""


class CrmError(RuntimeError):
    """A Pacemaker command failed, timed out, or could not be run."""

    def __init__(self, argv: Sequence[str], problem: str, returncode: Optional[int] = None,
                 stderr: str = "", timed_out: bool = False) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out
        super().__init__(f"`{_shown(self.argv)}` {problem}")


def _shown(argv: Sequence[str]) -> str:
    import shlex
    return shlex.join(argv)


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run argv (no shell) under the C locale, so error texts are stable."""
    import subprocess
    env = dict(os.environ, LC_ALL="C")
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out after {timeout:g}s") from None
    return CommandResult(done.returncode, done.stdout, done.stderr)


def error_text(result: CommandResult) -> str:
    """The error a command reported: stderr, or the <error>s of its XML result."""
    if result.stderr.strip():
        return result.stderr.strip()
    if "<pacemaker-result" in result.stdout:
        from xml.etree import ElementTree
        try:
            root = ElementTree.fromstring(result.stdout)
        except ElementTree.ParseError:
            return result.stdout.strip()
        errors = [e.text.strip() for e in root.iter("error") if e.text]
        status = root.find("status")
        if not errors and status is not None:
            errors = [status.get("message", "")]
        return "; ".join(errors)
    return result.stdout.strip()


# --- scores ----------------------------------------------------------------------
def format_score(score: Score) -> str:
    """A Pacemaker score string from an int or INFINITY/+INFINITY/-INFINITY."""
    if isinstance(score, bool):
        raise ValueError(f"score: {score!r} is not an integer or INFINITY/-INFINITY")
    if isinstance(score, int):
        if score >= SCORE_INFINITY:
            return "INFINITY"
        if score <= -SCORE_INFINITY:
            return "-INFINITY"
        return str(score)
    text = str(score).strip()
    if text.upper() in ("INFINITY", "+INFINITY", "-INFINITY"):
        return text.upper().lstrip("+")
    try:
        return format_score(int(text, 10))
    except ValueError:
        raise ValueError(f"score: {score!r} is not an integer or INFINITY/-INFINITY") from None


def parse_score(text: str) -> int:
    """A Pacemaker score as an int; INFINITY is +/-1000000, as Pacemaker clamps it."""
    word = text.strip().upper()
    if word in ("INFINITY", "+INFINITY"):
        return SCORE_INFINITY
    if word == "-INFINITY":
        return -SCORE_INFINITY
    try:
        value = int(word, 10)
    except ValueError:
        raise ValueError(f"score: {text!r} is not an integer or INFINITY/-INFINITY") from None
    return max(-SCORE_INFINITY, min(SCORE_INFINITY, value))


# --- the bridge ------------------------------------------------------------------
class ResourceLocation(NamedTuple):
    """One node where `crm_resource --locate` found a resource."""

    node: str
    promoted: bool


class Crm:
    """Pacemaker's CLIs behind typed methods.

    `run` executes an argument list with a timeout (default: `run_command`);
    `timeout` is the per-call default (default: the module's DEFAULT_TIMEOUT,
    read at call time). Every method also takes `timeout=` for that call.
    """

    def __init__(self, run: Runner = run_command, timeout: Optional[float] = None) -> None:
        self.run = run
        self.timeout = timeout

    def call(self, argv: Sequence[str], timeout: Optional[float] = None,
             ok: Sequence[int] = (0,)) -> CommandResult:
        """Run argv; raise CrmError unless its exit code is in `ok`."""
        argv = tuple(argv)
        limit = timeout if timeout is not None else (
            self.timeout if self.timeout is not None else DEFAULT_TIMEOUT)
        try:
            result = self.run(argv, limit)
        except TimeoutError:
            raise CrmError(argv, f"timed out after {limit:g}s", timed_out=True) from None
        except OSError as exc:
            raise CrmError(argv, f"could not be run: {exc.strerror or exc}") from None
        if result.returncode not in ok:
            raise CrmError(argv, f"failed with exit code {result.returncode}: {error_text(result)}",
                           returncode=result.returncode, stderr=result.stderr)
        return result

    def _query(self, argv: Sequence[str], timeout: Optional[float]) -> Optional[str]:
        """Run a `crm_attribute --query --quiet`: its value, or None if not set."""
        result = self.call(argv, timeout, ok=(0, EXIT_NO_SUCH_OBJECT))
        if result.returncode == EXIT_NO_SUCH_OBJECT:
            if _NOT_SET in error_text(result):
                return None
            raise CrmError(argv, f"failed with exit code {result.returncode}: {error_text(result)}",
                           returncode=result.returncode, stderr=result.stderr)
        out = result.stdout
        return out[:-1] if out.endswith("\n") else out

    # --- node attributes ---------------------------------------------------------
    def get_node_attr(self, name: str, node: Optional[str] = None, lifetime: str = "forever",
                      timeout: Optional[float] = None) -> Optional[str]:
        """A node attribute's value (None if not set); node None = this node."""
        return self._query(_node_attr_argv(name, node, lifetime) + ["--query", "--quiet"], timeout)

    def set_node_attr(self, name: str, value: object, node: Optional[str] = None,
                      lifetime: str = "forever", timeout: Optional[float] = None) -> None:
        """Set a node attribute; lifetime reboot = transient (status section)."""
        argv = _node_attr_argv(name, node, lifetime) + [f"--update={_value(name, value)}"]
        self.call(argv, timeout)

    def delete_node_attr(self, name: str, node: Optional[str] = None, lifetime: str = "forever",
                         timeout: Optional[float] = None) -> None:
        """Delete a node attribute; deleting one that is not set succeeds."""
        self.call(_node_attr_argv(name, node, lifetime) + ["--delete"], timeout)

    def set_transient_attrs(self, attrs: Mapping[str, object], node: Optional[str] = None,
                            timeout: Optional[float] = None) -> None:
        """Set several transient (reboot) node attributes; a None value deletes.

        Pacemaker 2.1.5 has no CLI that sets several attributes at once
        (neither crm_attribute nor attrd_updater), and writing the status
        section with cibadmin would bypass pacemaker-attrd, which owns it. So
        this is one crm_attribute per attribute, all validated before the
        first runs. crm_attribute (not attrd_updater) because it rejects an
        unknown node, where attrd_updater silently accepts it; both go through
        pacemaker-attrd and cost the same (~25 ms a call).
        """
        steps = []
        for name, value in attrs.items():
            base = _node_attr_argv(name, node, "reboot")
            steps.append(base + (["--delete"] if value is None
                                 else [f"--update={_value(name, value)}"]))
        for argv in steps:
            self.call(argv, timeout)

    # --- promotion scores --------------------------------------------------------
    def get_promotion_score(self, resource: Optional[str] = None, node: Optional[str] = None,
                            timeout: Optional[float] = None) -> Optional[int]:
        """The promotion score (INFINITY as 1000000), None if not set.

        resource None: crm_attribute takes OCF_RESOURCE_INSTANCE from the
        environment; agents should pass `res.instance`. The name is used as is
        ("pgsql:0" gives master-pgsql:0); Pacemaker gives anonymous clone
        instances their bare id. node None: this node.
        """
        text = self._query(_promotion_argv(resource, node) + ["--query", "--quiet"], timeout)
        return None if text is None else parse_score(text)

    def set_promotion_score(self, score: Score, resource: Optional[str] = None,
                            node: Optional[str] = None, timeout: Optional[float] = None) -> None:
        """Set the promotion score: an int or INFINITY / -INFINITY."""
        argv = _promotion_argv(resource, node) + [f"--update={format_score(score)}"]
        self.call(argv, timeout)

    def delete_promotion_score(self, resource: Optional[str] = None, node: Optional[str] = None,
                               timeout: Optional[float] = None) -> None:
        """Delete the promotion score; deleting one that is not set succeeds."""
        self.call(_promotion_argv(resource, node) + ["--delete"], timeout)

    # --- cluster properties in a named set ---------------------------------------
    def get_property(self, name: str, set_name: Optional[str] = None,
                     timeout: Optional[float] = None) -> Optional[str]:
        """A crm_config property (in `set_name` if given), None if not set."""
        return self._query(_property_argv(name, set_name) + ["--query", "--quiet"], timeout)

    def set_property(self, name: str, value: object, set_name: Optional[str] = None,
                     timeout: Optional[float] = None) -> None:
        """Set a crm_config property; the set is created if missing."""
        argv = _property_argv(name, set_name) + [f"--update={_value(name, value)}"]
        self.call(argv, timeout)

    def delete_property(self, name: str, set_name: Optional[str] = None,
                        timeout: Optional[float] = None) -> None:
        """Delete a crm_config property; deleting one that is not set succeeds."""
        self.call(_property_argv(name, set_name) + ["--delete"], timeout)

    # --- crm_node / crm_resource -------------------------------------------------
    def local_node_name(self, timeout: Optional[float] = None) -> str:
        """The cluster's name for this node (`crm_node -n`)."""
        argv = ("crm_node", "--name")
        name = self.call(argv, timeout).stdout.strip()
        if not name:
            raise CrmError(argv, "printed no node name")
        return name

    def partition_members(self, timeout: Optional[float] = None) -> list[str]:
        """Names of the nodes in this node's partition (`crm_node -p`)."""
        return self.call(("crm_node", "--partition"), timeout).stdout.split()

    def has_quorum(self, timeout: Optional[float] = None) -> bool:
        """Whether this node's partition has quorum (`crm_node -q`)."""
        argv = ("crm_node", "--quorum")
        out = self.call(argv, timeout, ok=(0, EXIT_NO_QUORUM)).stdout.strip()
        if out not in ("0", "1"):
            raise CrmError(argv, f"printed {out!r}, expected 0 or 1")
        return out == "1"

    def locate_resource(self, resource: str,
                        timeout: Optional[float] = None) -> list[ResourceLocation]:
        """Where a resource (primitive, clone or group id) is active; [] if stopped."""
        argv = ("crm_resource", "--locate", f"--resource={resource}", "--output-as=xml")
        return parse_locate(self.call(argv, timeout).stdout)

    # --- crm_mon -----------------------------------------------------------------
    def status(self, timeout: Optional[float] = None) -> "ClusterStatus":
        """The cluster status from crm_mon's XML, parsed."""
        return parse_crm_mon(self.call(CRM_MON_ARGV, timeout).stdout)


def crm_mon(crm: Optional[Crm] = None, timeout: Optional[float] = None) -> "ClusterStatus":
    """Run crm_mon (XML, inactive resources included) and parse it."""
    return (crm or Crm()).status(timeout)


def parse_version(text: str) -> Optional[tuple[int, ...]]:
    """The first dotted version in `text` ("Pacemaker 3.0.0", "0.11.5", "2.1.5-a3f44794f94"), or None."""
    import re
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)+)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def fencing_option(pacemaker_version: Sequence[int]) -> str:
    """The name of the cluster option that turns fencing on or off in that Pacemaker version."""
    return "fencing-enabled" if tuple(pacemaker_version) >= FENCING_RENAMED else "stonith-enabled"


def _checked_name(what: str, name: str) -> str:
    if not name or name.startswith("-") or any(c.isspace() for c in name):
        raise ValueError(f"{what}: {name!r} is not a valid name")
    return name


def _value(name: str, value: object) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"attribute {name}: value {text!r} must be a single line")
    return text


def _node_attr_argv(name: str, node: Optional[str], lifetime: str) -> list[str]:
    if lifetime not in LIFETIMES:
        raise ValueError(f"lifetime: {lifetime!r} must be one of {', '.join(LIFETIMES)}")
    argv = ["crm_attribute"]
    if node is not None:
        argv.append(f"--node={_checked_name('node', node)}")
    return argv + [f"--name={_checked_name('attribute name', name)}", f"--lifetime={lifetime}"]


def _promotion_argv(resource: Optional[str], node: Optional[str]) -> list[str]:
    argv = ["crm_attribute"]
    if node is not None:
        argv.append(f"--node={_checked_name('node', node)}")
    if resource is None:
        return argv + ["--promotion"]
    return argv + [f"--promotion={_checked_name('resource', resource)}"]


def _property_argv(name: str, set_name: Optional[str]) -> list[str]:
    argv = ["crm_attribute", "--type=crm_config"]
    if set_name is not None:
        argv.append(f"--set-name={_checked_name('property set', set_name)}")
    return argv + [f"--name={_checked_name('property name', name)}"]


def parse_locate(xml_text: str) -> list[ResourceLocation]:
    """Parse `crm_resource --locate --output-as=xml`."""
    root = _xml_root(xml_text, "crm_resource --locate")
    nodes = root.find("nodes")
    if nodes is None:
        return []
    return [ResourceLocation(node=(n.text or "").strip(), promoted=n.get("state") == "promoted")
            for n in nodes.findall("node")]


# --- crm_mon XML -----------------------------------------------------------------
ROLE_NAMES = {"Master": "Promoted", "Slave": "Unpromoted"}


def normalise_role(role: str) -> str:
    """Pacemaker's current role names: Master -> Promoted, Slave -> Unpromoted."""
    return ROLE_NAMES.get(role, role)


class Summary(NamedTuple):
    """The cluster-wide part of crm_mon."""

    stack: str
    dc: Optional[str]
    dc_id: Optional[str]
    dc_version: Optional[str]
    quorum: bool
    nodes_configured: int
    resources_configured: int
    resources_disabled: int
    resources_blocked: int
    maintenance_mode: bool
    stop_all_resources: bool
    stonith_enabled: bool
    no_quorum_policy: str
    pacemakerd_state: Optional[str]


class Node(NamedTuple):
    """One cluster node as crm_mon sees it."""

    name: str
    id: str
    online: bool
    standby: bool
    standby_onfail: bool
    maintenance: bool
    pending: bool
    unclean: bool
    shutdown: bool
    expected_up: bool
    is_dc: bool
    resources_running: int
    type: str


class Resource(NamedTuple):
    """One primitive (or clone instance) line of crm_mon.

    A clone shows one entry per instance, all with the same `id`; `clone`
    and `group` name the clone and group it belongs to.
    """

    id: str
    agent: str
    role: str
    target_role: Optional[str]
    active: bool
    orphaned: bool
    blocked: bool
    managed: bool
    failed: bool
    failure_ignored: bool
    nodes: tuple[str, ...]
    clone: Optional[str] = None
    promotable: bool = False
    group: Optional[str] = None


class Clone(NamedTuple):
    """A clone (promotable when crm_mon says multi_state)."""

    id: str
    promotable: bool
    unique: bool
    managed: bool
    disabled: bool
    failed: bool


class Group(NamedTuple):
    """A resource group and its members, in order."""

    id: str
    members: tuple[str, ...]
    managed: bool
    disabled: bool
    clone: Optional[str] = None


class Failure(NamedTuple):
    """A failed resource action."""

    op_key: str
    node: str
    task: str
    interval_ms: int
    rc: Optional[int]
    rc_text: str
    exit_reason: str
    status: str
    call_id: Optional[int]
    last_rc_change: str


class Ban(NamedTuple):
    """A negative location constraint (e.g. crm_resource --ban)."""

    id: str
    resource: str
    node: str
    weight: int
    promoted_only: bool


class ClusterStatus(NamedTuple):
    """Parsed `crm_mon --output-as=xml`."""

    summary: Summary
    nodes: list[Node]
    resources: list[Resource]
    clones: dict[str, Clone]
    groups: dict[str, Group]
    node_attributes: dict[str, dict[str, str]]
    fail_counts: dict[str, dict[str, int]]
    failures: list[Failure]
    bans: list[Ban]

    def node(self, name: str) -> Optional[Node]:
        """The node called `name`, or None."""
        return next((n for n in self.nodes if n.name == name), None)

    def online_nodes(self) -> list[str]:
        """Names of the nodes that are online."""
        return [n.name for n in self.nodes if n.online]

    def instances(self, rsc_id: str) -> list[Resource]:
        """The primitives behind an id: a primitive, a clone or a group.

        Instance suffixes (":0") are ignored, so "grp" also finds the members
        of a cloned group's "grp:0", "grp:1".
        """
        return [r for r in self.resources
                if rsc_id in (r.id, _base_id(r.id), r.clone)
                or (r.group is not None and rsc_id in (r.group, _base_id(r.group)))]

    def resource_nodes(self, rsc_id: str) -> list[str]:
        """Nodes where the resource (primitive, clone or group id) is active."""
        return _unique(n for r in self.instances(rsc_id) if r.active for n in r.nodes)

    def role_nodes(self, rsc_id: str, role: str) -> list[str]:
        """Nodes where instances of the resource or clone run in `role`."""
        role = normalise_role(role)
        return _unique(n for r in self.instances(rsc_id)
                       if r.active and r.role == role for n in r.nodes)

    def promoted_nodes(self, rsc_id: str) -> list[str]:
        """Nodes where the resource or clone runs Promoted."""
        return self.role_nodes(rsc_id, "Promoted")

    def unpromoted_nodes(self, rsc_id: str) -> list[str]:
        """Nodes where the resource or clone runs Unpromoted."""
        return self.role_nodes(rsc_id, "Unpromoted")

    def inactive_resources(self) -> list[Resource]:
        """Resources (and clone instances) that run nowhere."""
        return [r for r in self.resources if not r.active]

    def attribute(self, node: str, name: str) -> Optional[str]:
        """A node attribute as crm_mon shows it, or None."""
        return self.node_attributes.get(node, {}).get(name)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _base_id(rsc_id: str) -> str:
    """A resource id without its clone instance suffix: "pgsql:1" -> "pgsql"."""
    return rsc_id.split(":", 1)[0]


def _xml_root(xml_text: str, what: str) -> Element:
    from xml.etree import ElementTree
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"{what} output is not XML: {exc}") from None
    if root.tag != "pacemaker-result":
        raise ValueError(f"{what} output: root element is <{root.tag}>, "
                         f"expected <pacemaker-result>")
    return root


def _flag(element: Element, name: str) -> bool:
    return element.get(name, "false") == "true"


def _int(element: Element, name: str, default: int = 0) -> int:
    try:
        return int(element.get(name, default))
    except ValueError:
        raise ValueError(f"crm_mon XML: <{element.tag}> {name}={element.get(name)!r} "
                         f"is not an integer") from None


def parse_crm_mon(xml_text: str) -> ClusterStatus:
    """Parse `crm_mon --output-as=xml` (Pacemaker 2.1 or 3.0) into a ClusterStatus."""
    root = _xml_root(xml_text, "crm_mon")
    status = root.find("status")
    if status is not None and status.get("code", "0") != "0":
        errors = "; ".join((e.text or "").strip() for e in status.iter("error"))
        raise ValueError(f"crm_mon reported {status.get('message')}: {errors}")
    summary_el = root.find("summary")
    if summary_el is None:
        raise ValueError("crm_mon XML has no <summary>")
    result = ClusterStatus(summary=_summary(root, summary_el), nodes=[], resources=[],
                           clones={}, groups={}, node_attributes={}, fail_counts={},
                           failures=[], bans=[])
    for el in root.iterfind("nodes/node"):
        result.nodes.append(Node(
            name=el.get("name", ""), id=el.get("id", ""), online=_flag(el, "online"),
            standby=_flag(el, "standby"), standby_onfail=_flag(el, "standby_onfail"),
            maintenance=_flag(el, "maintenance"), pending=_flag(el, "pending"),
            unclean=_flag(el, "unclean"), shutdown=_flag(el, "shutdown"),
            expected_up=_flag(el, "expected_up"), is_dc=_flag(el, "is_dc"),
            resources_running=_int(el, "resources_running"), type=el.get("type", "member")))
    resources = root.find("resources")
    if resources is not None:
        _walk_resources(resources, result, clone=None, group=None)
    for node_el in root.iterfind("node_attributes/node"):
        result.node_attributes[node_el.get("name", "")] = {
            a.get("name", ""): a.get("value", "") for a in node_el.iterfind("attribute")}
    for node_el in root.iterfind("node_history/node"):
        for hist in node_el.iterfind("resource_history"):
            if hist.get("fail-count") is not None:
                counts = result.fail_counts.setdefault(node_el.get("name", ""), {})
                counts[hist.get("id", "")] = parse_score(hist.get("fail-count", "0"))
    from html import unescape  # Pacemaker 2.1 escapes exit reasons twice (' -> &amp;apos;)
    for el in root.iterfind("failures/failure"):
        result.failures.append(Failure(
            op_key=el.get("op_key", ""), node=el.get("node", ""), task=el.get("task", ""),
            interval_ms=_int(el, "interval"),
            rc=_int(el, "exitcode") if el.get("exitcode") is not None else None,
            rc_text=el.get("exitstatus", ""), exit_reason=unescape(el.get("exitreason", "")),
            status=el.get("status", ""),
            call_id=_int(el, "call") if el.get("call") is not None else None,
            last_rc_change=el.get("last-rc-change", "")))
    for el in root.iterfind("bans/ban"):
        result.bans.append(Ban(
            id=el.get("id", ""), resource=el.get("resource", ""), node=el.get("node", ""),
            weight=parse_score(el.get("weight", "0")),
            promoted_only=_flag(el, "promoted-only") or _flag(el, "master_only")))
    return result


def _summary(root: Element, el: Element) -> Summary:
    dc = el.find("current_dc")
    if dc is not None and not _flag(dc, "present"):
        dc = None
    stack = el.find("stack")
    nodes = el.find("nodes_configured")
    rscs = el.find("resources_configured")
    options = el.find("cluster_options")
    pacemakerd = root.find("pacemakerd")   # 2.1; 3.0 has <stack pacemakerd-state=...>

    def opt(name: str, default: str) -> str:
        return options.get(name, default) if options is not None else default

    return Summary(
        stack=stack.get("type", "") if stack is not None else "",
        dc=dc.get("name") if dc is not None else None,
        dc_id=dc.get("id") if dc is not None else None,
        dc_version=dc.get("version") if dc is not None else None,
        quorum=dc is not None and _flag(dc, "with_quorum"),
        nodes_configured=_int(nodes, "number") if nodes is not None else 0,
        resources_configured=_int(rscs, "number") if rscs is not None else 0,
        resources_disabled=_int(rscs, "disabled") if rscs is not None else 0,
        resources_blocked=_int(rscs, "blocked") if rscs is not None else 0,
        maintenance_mode=opt("maintenance-mode", "false") == "true",
        stop_all_resources=opt("stop-all-resources", "false") == "true",
        stonith_enabled=opt("fencing-enabled", opt("stonith-enabled", "true")) == "true",
        no_quorum_policy=opt("no-quorum-policy", "stop"),
        pacemakerd_state=(pacemakerd.get("state") if pacemakerd is not None
                          else stack.get("pacemakerd-state") if stack is not None else None),
    )


def _walk_resources(parent: Element, result: ClusterStatus, clone: Optional[str],
                    group: Optional[str]) -> None:
    """Collect primitives, remembering the clone and group around each."""
    for el in parent:
        if el.tag == "resource":
            role = el.get("role", "")
            result.resources.append(Resource(
                id=el.get("id", ""), agent=el.get("resource_agent", ""),
                role=normalise_role(role), target_role=el.get("target_role"),
                active=_flag(el, "active"), orphaned=_flag(el, "orphaned"),
                blocked=_flag(el, "blocked"), managed=_flag(el, "managed"),
                failed=_flag(el, "failed"), failure_ignored=_flag(el, "failure_ignored"),
                nodes=tuple(n.get("name", "") for n in el.iterfind("node")),
                clone=clone, promotable=clone is not None and result.clones[clone].promotable,
                group=group))
        elif el.tag == "clone":
            clone_id = el.get("id", "")
            result.clones[clone_id] = Clone(
                id=clone_id, promotable=_flag(el, "multi_state"), unique=_flag(el, "unique"),
                managed=_flag(el, "managed"), disabled=_flag(el, "disabled"),
                failed=_flag(el, "failed"))
            _walk_resources(el, result, clone=clone_id, group=group)
        elif el.tag == "group":
            group_id = el.get("id", "")
            result.groups[group_id] = Group(
                id=group_id, members=tuple(r.get("id", "") for r in el.iterfind("resource")),
                managed=_flag(el, "managed"), disabled=_flag(el, "disabled"), clone=clone)
            _walk_resources(el, result, clone=clone, group=group_id)
        else:  # bundles and their replicas: look inside
            _walk_resources(el, result, clone=clone, group=group)
