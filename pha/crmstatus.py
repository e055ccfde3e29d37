"""What Pacemaker reports, parsed: scores, `crm_resource --locate` and crm_mon's XML.

pha.crm runs the CLIs; this module only reads their output, so it can be fed
captured XML in tests. Its records are typed NamedTuples rather than
dataclasses: ten frozen dataclasses cost ~15 ms at every import, the
NamedTuples ~3 ms. It imports only the standard library (ElementTree and
html only when parsing).

`parse_crm_mon` reads both generations of crm_mon's XML: Pacemaker 2.1
(api-version 2.25) and 3.0 (api-version 2.38), which moved pacemakerd's state
to `<stack pacemakerd-state=...>`; 3.0.2 renamed the stonith-* cluster options
to fencing-* and crm_mon reports `fencing-enabled`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional, Union

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

SCORE_INFINITY = 1_000_000
Score = Union[int, str]


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


# --- crm_resource --locate -------------------------------------------------------
class ResourceLocation(NamedTuple):
    """One node where `crm_resource --locate` found a resource."""

    node: str
    promoted: bool


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
    fencing_enabled: bool          # fencing-enabled (Pacemaker 3.0.2+) or stonith-enabled
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
        fencing_enabled=opt("fencing-enabled", opt("stonith-enabled", "true")) == "true",
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
