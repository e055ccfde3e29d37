"""config.ini's keys: each declared once with its type, default and meaning.

`SCHEMA` is the list `pha/config.py` loads files against and `describe()`
prints (`pha gencfg --list-keys`). Each key's converter turns its text into a
typed value or raises ValueError with a short reason; the grammars are
pha.values' (sizes, integers, interface names, networks, conninfo).
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

from pha import fencekeys
from pha import values as parsers

TEMPLATES = ("dual", "muti", "muti_with_lvs", "three_plus_x")
TEMPLATE_SUFFIX = ".pcs.template"  # pha4pgsql named templates "muti.pcs.template"
LVS_TEMPLATES = ("muti_with_lvs", "three_plus_x")
REP_MODES = ("sync", "async")
LVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
NODE_KEY = re.compile(r"node([1-9][0-9]{0,2})")
FENCE_NODE_KEY = re.compile(r"fence_node([1-9][0-9]{0,2})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

Value = object


# --- the schema --------------------------------------------------------------------
def _check_name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise ValueError("is not a node or user name (letters, digits, '_', '.', '-')")
    return text


def _check_names(text: str) -> tuple[str, ...]:
    return tuple(_check_name(word) for word in text.split())


def _check_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("is not an IP address") from None


def _check_path(text: str) -> str:
    if not text.startswith("/") or "\n" in text:
        raise ValueError("is not an absolute path")
    return os.path.normpath(text)


def _check_networks(text: str) -> tuple[str, ...]:
    return tuple(str(n) for n in parsers.parse_networks(text))  # lvsdr's reading of the same value


def _check_weights(text: str) -> str:
    for item in text.split():
        name, sep, weight = item.partition(",")
        if not name or (sep and not (weight.isascii() and weight.isdigit() and int(weight) <= 65535)):
            raise ValueError(f"{parsers.shown(item)!r} is not NAME or NAME,WEIGHT (weight 0-65535)")
    return text


def _check_single_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError("must be a single line")
    return text


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "yes", "on", "1", "y"):
        return True
    if word in ("false", "no", "off", "0", "n"):
        return False
    raise ValueError("is not a boolean (true/false, yes/no, on/off, 1/0)")


def _int(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = parsers.parse_int(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value
    convert.__doc__ = f"integer {low}-{high}"
    return convert


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text
    convert.__doc__ = " | ".join(options)
    return convert


def _template(text: str) -> str:
    name = text[:-len(TEMPLATE_SUFFIX)] if text.endswith(TEMPLATE_SUFFIX) else text
    return _choice(TEMPLATES)(name)


@dataclass(frozen=True)
class Key:
    """One config.ini key: how its text becomes a value, and what it means."""

    name: str
    convert: Callable[[str], Value]
    type: str
    doc: str
    default: Value = None
    required: bool = False
    secret: bool = False
    alias_of: Optional[str] = None      # a deprecated spelling of another key
    ignored: str = ""                   # why pha accepts the key and does nothing with it
    group: str = "cluster"


def _k(name: str, convert: Callable[[str], Value], type_: str, doc: str, **kw: object) -> Key:
    return Key(name, convert, type_, doc, **kw)  # type: ignore[arg-type]


_str = _check_single_line
SCHEMA: tuple[Key, ...] = (
    # cluster
    _k("pcs_template", _template, " | ".join(TEMPLATES),
       "Cluster layout: dual (2 nodes + lock), muti (N nodes), muti_with_lvs (N nodes + LVS readers), "
       "three_plus_x (3 Pacemaker nodes + readers outside the cluster). pha4pgsql's "
       "NAME.pcs.template spelling is accepted.", required=True),
    _k("node", _check_name, "name", "node1, node2, ... nodeN: the Pacemaker nodes, numbered from 1 "
       "without gaps; node1..node3 in three_plus_x."),
    _k("othernodes", _check_names, "names", "More Pacemaker nodes (space separated); in three_plus_x, "
       "the standbys outside the cluster that serve reads.", default=()),
    _k("writer_vip", _check_address, "address", "The writer VIP: always on the primary; standbys "
       "stream from it.", required=True),
    _k("reader_vip", _check_address, "address", "The reader VIP: on a streaming standby (the LVS "
       "virtual service with LVS). Empty: no reader VIP."),
    _k("vip_nic", parsers.check_ifname, "interface", "Interface the VIPs go on (default: the interface of "
       "the route to the VIP)."),
    _k("vip_cidr_netmask", _int(1, 128), "integer", "Prefix length of the VIPs.", default=24),
    _k("OCF_ROOT", _check_path, "path", "OCF root on the nodes; setup checks that pha's agents are "
       "installed under OCF_ROOT/resource.d/pha.", default="/usr/lib/ocf"),
    _k("pha_command", _str, "command", "How agents run pha (the lock command), e.g. "
       "/opt/pha/.venv/bin/pha.", default="pha"),
    _k("lab", _bool, "boolean", "This config is for the namespace lab on this machine: `pha setup` "
       "runs in lab_node, and the VIPs default to the lab's (instance PHA_LAB_INSTANCE).",
       default=False),
    _k("lab_node", _check_name, "name", "The lab node `pha setup` runs in.", default="node1"),
    _k("health_user", _check_name, "name", "OS user `pha health` runs as, a member of haclient: "
       "`pha setup` gives it read-only access to the CIB (a Pacemaker ACL role) and sets enable-acl=true, "
       "so haclient no longer means write access: other haclient members then need ACLs of their own "
       "(root and hacluster keep full access). Empty: no ACL.", default=""),
    _k("RESOURCE_LIST", _str, "string", "pha4pgsql's resource list.",
       ignored="pha finds its resources in the CIB"),
    _k("pha4pgsql_dir", _str, "path", "pha4pgsql's install directory.",
       ignored="pha is an installed package"),
    # PostgreSQL
    _k("pgsql_pgctl", _check_path, "path", "pg_ctl; pg_rewind, pg_basebackup and pg_controldata are "
       "taken from its directory (default: the agent finds those of PGDATA's version).", group="pgsql"),
    _k("pgsql_psql", _str, "path", "pha4pgsql's psql path.", group="pgsql",
       ignored="pha speaks SQL itself"),
    _k("pgsql_pgdata", _check_path, "path", "PGDATA (the agent needs it: no default names a version; Debian: "
       "/var/lib/postgresql/N/main).", group="pgsql"),
    _k("pgsql_pgport", _int(1, 65535), "integer", "PostgreSQL port.", default=5432, group="pgsql"),
    _k("pgsql_pghost", _str, "string", "pha4pgsql's pghost.", group="pgsql",
       ignored="the agent connects over the unix socket in pgsql_socketdir"),
    _k("pgsql_pgdba", _check_name, "name", "OS user running PostgreSQL, also the database user "
       "the agent connects as.", default="postgres", group="pgsql"),
    _k("pgsql_socketdir", _check_path, "path", "Unix socket directory.",
       default="/var/run/postgresql", group="pgsql"),
    _k("pgsql_config", _check_path, "path", "postgresql.conf (default PGDATA/postgresql.conf).",
       group="pgsql"),
    _k("pgsql_logfile", _check_path, "path", "Server log file (pg_ctl -l).", group="pgsql"),
    _k("pgsql_tmpdir", _check_path, "path", "The agent's state directory.", group="pgsql"),
    _k("pgsql_restore_command", _str, "string", "restore_command of the standbys.", default="",
       group="pgsql"),
    _k("pgsql_rep_mode", _choice(REP_MODES), "sync | async", "sync: only the synchronous standby "
       "may be promoted (no acknowledged commit lost); async: the most advanced standby.",
       default="sync", group="pgsql"),
    _k("pgsql_repuser", _check_name, "name", "Replication user.", default="postgres", group="pgsql"),
    _k("pgsql_reppassword", _str, "secret", "Replication password. Better kept out of config.ini: "
       "put it in pgsql_passfile. When set, `pha setup` writes it into pgsql_passfile (mode 0600) "
       "on the node it runs on.", secret=True, group="pgsql"),
    _k("pgsql_reppassord", _str, "secret", "pha4pgsql's misspelling of pgsql_reppassword.",
       secret=True, alias_of="pgsql_reppassword", group="pgsql"),
    _k("pgsql_passfile", _check_path, "path", "libpq passfile (mode 0600, owned by pgsql_pgdba) with "
       "the replication password: used by primary_conninfo, pg_rewind and pg_basebackup.",
       group="pgsql"),
    _k("max_lag", parsers.parse_size, "size", "Replay lag (16MB, 1048576) beyond which a standby is unfit: "
       "LVS drains it from the readers and, in async mode, it is not promoted (in sync mode the "
       "synchronous standby always stays promotable: it holds every acknowledged commit). "
       "Empty: no limit.", default=0, group="pgsql"),
    # lock
    _k("pgsql_enable_distlock", _bool, "boolean", "Promotion and the async fallback need the lock "
       "(`pha distlock`); always on in dual.", default=False, group="lock"),
    _k("pgsql_distlock_conninfo", parsers.check_no_secret, "conninfo", "libpq conninfo of the lock server, "
       "a PostgreSQL outside the cluster (no password: use a passfile).", group="lock"),
    _k("pgsql_distlock_psql_cmd", _str, "command", "pha4pgsql's psql command of the lock server; "
       "its conninfo is used as pgsql_distlock_conninfo.", group="lock"),
    _k("pgsql_distlock_lockname", _check_name, "name", "Lock name, one per cluster.", default="pgsql",
       group="lock"),
    _k("pgsql_distlock_ttl", _int(3, 3600), "integer", "Seconds a lease lasts without renewal.",
       default=10, group="lock"),
    # LVS
    _k("enable_lvs", _bool, "boolean", "LVS read balancing (three_plus_x; always on in "
       "muti_with_lvs).", group="lvs"),
    _k("lvs_scheduler", _choice(LVS_SCHEDULERS), "select", "IPVS scheduler.", default="rr", group="lvs"),
    _k("lvs_persistent_timeout", _int(0, 31536000), "integer", "Persistence timeout in seconds "
       "(0: none).", default=0, group="lvs"),
    _k("lvs_default_weight", _int(0, 65535), "integer", "Weight of a real server without its own.",
       default=1, group="lvs"),
    _k("lvs_weight_of_realservers", _check_weights, "string", "\"node1,2 node2,1\": weight per real "
       "server.", default="", group="lvs"),
    _k("lvs_inhibit_on_failure", _bool, "boolean", "A failed real server drops to weight 0 instead "
       "of being removed.", default=False, group="lvs"),
    _k("lvs_realsvr_nic_lo", parsers.check_lo_label, "label", "Label of the reader VIP on lo of the real "
       "servers.", default="lo:0", group="lvs"),
    _k("allowed_networks", _check_networks, "networks", "IPv4 networks real servers must be in "
       "(space or comma separated); others are skipped. Empty: the reader VIP's subnet "
       "(0.0.0.0/0: any).", default=(), group="lvs"),
    # fencing (pha.fencekeys, pha.fencing)
    _k("fencing", fencekeys.check_agent, "agent | none", "The stock fence agent of the nodes' fence "
       "devices (fence_ipmilan, fence_sbd, fence_virsh, fence_xvm, fence_aws, fence_azure_arm, "
       "fence_gce, ...), or none on purpose. Required: without fencing Pacemaker assumes a node it "
       "cannot see is down, and two primaries can take writes.", group="fencing"),
    _k("fence_options", fencekeys.check_options, "options", "NAME=VALUE options of every fence device "
       "(\"username=admin lanplus=1\"); no secret: use fence_password_script or the agent's file "
       "option (identity_file, key_file).", default=(), group="fencing"),
    _k("fence_node", fencekeys.check_options, "options", "fence_node1..fence_nodeN: NAME=VALUE options "
       "of the K-th Pacemaker node's device (node1..nodeN, then othernodes), e.g. \"ip=192.0.2.21\".",
       group="fencing"),
    _k("fence_password_script", fencekeys.check_script, "path", "Root-only script (mode 0700) on every "
       "node that prints the fence device password: passed as password_script, so the password "
       "never reaches the CIB.", group="fencing"),
    _k("fence_delay", _int(0, 600), "integer", "2-node clusters: seconds of static delay "
       "(pcmk_delay_base) on node1's device, so node1 wins a fence race. 0: none.", default=10,
       group="fencing"),
)
KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
ACCEPTED_NAMES = sorted(n for n in KEYS if n != "node") + ["node1", "node2", "node3"]


def schema_key(name: str) -> Optional[Key]:
    """The Key of a config name (node1..nodeN share the "node" key, fence_nodeK "fence_node")."""
    if FENCE_NODE_KEY.fullmatch(name):
        return KEYS["fence_node"]
    return KEYS["node"] if NODE_KEY.fullmatch(name) else KEYS.get(name if name not in ("node", "fence_node") else "")


def describe() -> str:
    """The schema as text: one paragraph per key."""
    out = []
    for key in SCHEMA:
        name = "node1..nodeN" if key.name == "node" else key.name
        facts = [key.type]
        if key.required:
            facts.append("required")
        elif key.default not in (None, "", ()):
            facts.append(f"default {key.default}")
        note = f" Deprecated: use {key.alias_of}." if key.alias_of else (
            f" Accepted and ignored: {key.ignored}." if key.ignored else "")
        out.append(f"{name} ({', '.join(facts)}) [{key.group}]\n    {key.doc}{note}\n")
    return "".join(out)
