"""The primary's guard: a primary whose node has lost its cluster stops writing,
before it is fenced.

Pacemaker stops a primary whose partition lost quorum (no-quorum-policy=stop),
but when Pacemaker itself or corosync dies on the primary's node nothing there
stops PostgreSQL: until fencing powers the node off, it keeps acknowledging
commits (its sync standby still streams from it). `pha guard`
(pha.commands.guard) watches for that on every node: while this node runs a
primary, it asks Pacemaker each `interval` whether this node's partition is
quorate (`crm_node -q`, 2 s at most); when it has not heard "yes" for `grace`
seconds of wall-clock time, it shuts PostgreSQL down at once (immediate, then
SIGKILL). Bound: grace plus one check after the stack stops answering (5 + 1 s by
default, 5 + 2 s when crm_node hangs rather than fails).

It never acts in maintenance: cluster maintenance-mode, the node's maintenance
attribute, or the resource unmanaged or in maintenance, as the node's last copy
of the CIB on disk says (Pacemaker stopped on purpose in maintenance leaves
PostgreSQL running, and so does the guard); nor on a lost quorum when
no-quorum-policy is ignore or freeze.

The agent records each primary here (GUARD_DIR/<resource>.json, root's, 0600)
when it promotes or monitors it, and removes the record when it demotes or
stops it: a node without a record costs the guard nothing but a directory read.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import NamedTuple, Optional

from pha import files

GUARD_DIR = "/run/pha/guard"
CIB_ON_DISK = "/var/lib/pacemaker/cib/cib.xml"
INTERVAL = 1.0
GRACE = 5.0
LEAVES_RUNNING = ("ignore", "freeze")   # no-quorum-policy values that keep resources running


class Record(NamedTuple):
    """A primary the agent runs on this node."""

    resource: str
    node: str
    pgdata: str
    pgctl: str
    port: int
    socketdir: str
    user: str

    @classmethod
    def parse(cls, text: str) -> "Record":
        data = json.loads(text)
        return cls(str(data["resource"]), str(data["node"]), str(data["pgdata"]), str(data["pgctl"]),
                   int(data["port"]), str(data["socketdir"]), str(data["user"]))


def record_path(resource: str, directory: str = GUARD_DIR) -> str:
    return os.path.join(directory, f"{resource}.json")


def write_record(record: Record, directory: str = GUARD_DIR) -> None:
    """Record a primary (rewritten only when it changed: the primary's monitor calls this)."""
    path = record_path(record.resource, directory)
    text = json.dumps(record._asdict(), sort_keys=True)
    try:
        if files.read_nofollow(path) == text:
            return
    except OSError:
        pass
    files.private_dir(directory)
    files.write_atomic(path, text)


def remove_record(resource: str, directory: str = GUARD_DIR) -> None:
    try:
        os.unlink(record_path(resource, directory))
    except FileNotFoundError:
        pass


def read_records(directory: str = GUARD_DIR) -> tuple[list[Record], list[str]]:
    """The recorded primaries, and what could not be read (path: why)."""
    records, problems = [], []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return [], []
    for name in names:
        path = os.path.join(directory, name)
        try:
            records.append(Record.parse(files.read_nofollow(path)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: {err}")
    return records, problems


# --- decisions ------------------------------------------------------------------------------------
class Stack(NamedTuple):
    """What `crm_node -q` said: quorate (True/False), or None when it did not answer."""

    quorate: Optional[bool]
    why: str = ""


def unheard_after(unheard: float, stack: Stack, no_quorum_policy: str, elapsed: float) -> float:
    """Seconds this node has been without a cluster that manages its primary, after one
    more check `elapsed` seconds after the last (a hung crm_node makes that longer than the
    interval): back to 0 when the stack answers quorate (or without quorum, under a policy
    that keeps resources running), else `elapsed` more."""
    if stack.quorate or (stack.quorate is False and no_quorum_policy in LEAVES_RUNNING):
        return 0.0
    return unheard + elapsed


def must_stop(unheard: float, grace: float, maintenance: Optional[str]) -> bool:
    """Whether the guard shuts the primary down now."""
    return unheard >= grace and maintenance is None


# --- what the node's last CIB says -----------------------------------------------------------------
class CibFacts(NamedTuple):
    no_quorum_policy: str
    maintenance: Optional[str]     # why the guard must leave the primary alone, or None


def cib_facts(xml_text: Optional[str], resource: str, node: str) -> CibFacts:
    """no-quorum-policy and maintenance from the CIB's configuration. An unreadable
    CIB counts as maintenance: the guard never acts on what it cannot read."""
    if xml_text is None:
        return CibFacts("stop", "the CIB on disk cannot be read")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        return CibFacts("stop", f"the CIB on disk does not parse ({err})")
    config = root.find("configuration")
    if config is None:
        return CibFacts("stop", "the CIB on disk has no configuration")
    props = _nvpairs(config.findall("crm_config/cluster_property_set"))
    policy = props.get("no-quorum-policy", "stop")
    if _true(props.get("maintenance-mode")):
        return CibFacts(policy, "cluster maintenance-mode")
    for entry in config.findall("nodes/node"):
        if entry.get("uname") == node and _true(_nvpairs(entry.findall("instance_attributes")).get("maintenance")):
            return CibFacts(policy, f"node {node} in maintenance")
    meta = _resource_meta(config, resource)
    if meta.get("is-managed") is not None and not _true(meta["is-managed"]):
        return CibFacts(policy, f"{resource} unmanaged")
    if _true(meta.get("maintenance")):
        return CibFacts(policy, f"{resource} in maintenance")
    return CibFacts(policy, None)


def _resource_meta(config: ET.Element, resource: str) -> dict[str, str]:
    """Meta attributes of the resource and of the clone holding it (rsc_defaults first)."""
    meta = _nvpairs(config.findall("rsc_defaults/meta_attributes"))
    for clone in config.iter("clone"):
        if any(p.get("id") == resource for p in clone.iter("primitive")):
            meta.update(_nvpairs(clone.findall("meta_attributes")))
    for primitive in config.iter("primitive"):
        if primitive.get("id") == resource:
            meta.update(_nvpairs(primitive.findall("meta_attributes")))
    return meta


def _nvpairs(sets: list[ET.Element]) -> dict[str, str]:
    found: dict[str, str] = {}
    for attribute_set in sets:
        for pair in attribute_set.findall("nvpair"):
            if pair.get("name") is not None and pair.get("value") is not None:
                found[str(pair.get("name"))] = str(pair.get("value"))
    return found


def _true(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("true", "on", "yes", "y", "1")
