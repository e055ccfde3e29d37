"""The CIB's configuration as pha reads it (pure: XML text in, typed records out).

`crm.py` reads what Pacemaker says about the cluster's state (crm_mon, node
attributes); this module reads its configuration: the resources, their
parameters and clones, the constraints and the ACLs, the patches of
`crm_diff`, and the parameter defaults an agent declares in its meta-data.
The commands (pha.commands) and `pha setup` (pha.deploy) read the CIB only
through here. Errors are `CibError` (a ValueError); the command layer turns
them into its own messages and exit codes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

from pha import crmstatus

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

PGSQL_AGENTS = ("ocf:pha:pgsql", "ocf:heartbeat:pgsql")


class CibError(ValueError):
    """The XML is not a CIB pha can read."""


class NoPgsqlResource(CibError):
    """The CIB has no PostgreSQL clone, or several."""


def _root(xml_text: str, what: str = "the CIB") -> "Element":
    from xml.etree import ElementTree
    try:
        return ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise CibError(f"{what} is not XML: {exc}") from None


# --- resources and constraints -----------------------------------------------------------------
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
        """The PostgreSQL resource, in its promotable clone; NoPgsqlResource unless exactly one."""
        found = [p for p in self.by_agent(*PGSQL_AGENTS) if p.clone]
        if not found:
            raise NoPgsqlResource("no PostgreSQL resource (ocf:pha:pgsql in a promotable clone) in the CIB: "
                                  "configure the cluster with `pha setup CONFIG`")
        if len(found) > 1:
            raise NoPgsqlResource(f"several PostgreSQL clones in the CIB "
                                  f"({', '.join(p.clone or p.id for p in found)}): pha manages one")
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
        return crmstatus.parse_score(score) > 0
    except ValueError:
        return False


def _nvpairs(element: "Element", tag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for block in element.findall(tag):
        for nv in block.findall("nvpair"):
            pairs[nv.get("name", "")] = nv.get("value", "")
    return pairs


def parse_cib(xml_text: str) -> Cib:
    """Parse `cibadmin --query` output (whole CIB or its configuration section)."""
    root = _root(xml_text)
    config = root if root.tag == "configuration" else root.find("configuration")
    if config is None:
        raise CibError(f"the CIB has no <configuration> (root <{root.tag}>)")
    primitives: dict[str, Primitive] = {}

    def add(element: "Element", clone: Optional[str], clone_meta: dict[str, str]) -> None:
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
    return crmstatus.normalise_role(role) if role else None


# --- what `pha setup` rebuilds ---------------------------------------------------------------------
def existing_primitives(cib_xml: str, ids: Sequence[str]) -> list[str]:
    """Which of `ids` are primitives in the CIB's resources."""
    root = _root(cib_xml)
    found = {el.get("id") for el in root.iterfind("configuration/resources//primitive")}
    return [rsc_id for rsc_id in ids if rsc_id in found]


def kept_constraints(cib_xml: str, ids: Sequence[str]) -> list[str]:
    """The cli-* constraints (crm_resource --move/--ban) on `ids` or their clones, as XML text."""
    from xml.etree import ElementTree
    root = _root(cib_xml)
    names = set(ids)
    for clone in root.iterfind("configuration/resources/clone"):
        if any(p.get("id") in ids for p in clone.iter("primitive")):
            names.add(clone.get("id", ""))
    kept = []
    for el in root.iterfind("configuration/constraints/*"):
        refs = {el.get(a) for a in ("rsc", "with-rsc", "first", "then")}
        refs |= {r.get("id") for r in el.iter("resource_ref")}
        if el.get("id", "").startswith("cli-") and refs & names:
            kept.append(ElementTree.tostring(el, encoding="unicode").strip())
    return kept


def existing_acls(cib_xml: str) -> tuple[set[str], set[str]]:
    """The ids of the CIB's ACL users (acl_target, or acl_user of old schemas) and roles."""
    root = _root(cib_xml)
    targets = {el.get("id", "") for tag in ("acl_target", "acl_user")
               for el in root.iterfind(f"configuration/acls/{tag}")}
    return targets, {el.get("id", "") for el in root.iterfind("configuration/acls/acl_role")}


def patch_changes(patch_xml: str) -> list[str]:
    """A crm_diff patch (format 2) as lines: 'create /cib/configuration/resources/...'."""
    if not patch_xml.strip():
        return []
    root = _root(patch_xml, "crm_diff's patch")
    changes = []
    for change in root.iter("change"):
        path = change.get("path", "")
        operation = change.get("operation", "")
        if operation == "create":
            created = next(iter(change), None)
            if created is not None:
                path += f"/{created.tag}" + (f"[@id='{created.get('id')}']" if created.get("id") else "")
        changes.append(f"{operation} {path}")
    return changes


# --- an agent's declared defaults --------------------------------------------------------------------
def agent_defaults(metadata_xml: str) -> dict[str, str]:
    """name -> default of every parameter an OCF agent's meta-data declares ("" when none)."""
    root = _root(metadata_xml, "the agent's meta-data")
    defaults = {}
    for param in root.iterfind("parameters/parameter"):
        content = param.find("content")
        defaults[param.get("name", "")] = "" if content is None else content.get("default", "")
    return defaults
