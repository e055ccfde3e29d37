"""config.ini: the one schema of a pha cluster's settings, its loader and its errors.

The file keeps pha4pgsql's format, so its config.ini files load unchanged: one
`key=value` per line, `#` comments, values quoted as a shell would read them
("a b", 'a b', ""). Every key is declared once in SCHEMA with its type, default
and meaning; `describe()` prints them (`pha gencfg --list-keys`).

`load(path)` returns a `Config` or raises `ConfigError`, which lists every
problem found, each naming the file, the line, the key and the bad value.
Unknown keys are errors (with the closest known key suggested); deprecated
and ignored keys of pha4pgsql load with a warning.

Secrets: the replication password is best kept in a libpq passfile
(`pgsql_passfile`), which the agents and the repair commands use; a password
written in config.ini (`pgsql_reppassword`) is only ever copied into that
passfile by `pha setup`, never into the CIB or a command line.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional

TEMPLATES = ("dual", "muti", "muti_with_lvs", "three_plus_x")
TEMPLATE_SUFFIX = ".pcs.template"  # pha4pgsql named templates "muti.pcs.template"
LVS_TEMPLATES = ("muti_with_lvs", "three_plus_x")
REP_MODES = ("sync", "async")
LVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
NODE_KEY = re.compile(r"node([1-9][0-9]{0,2})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
LO_LABEL = re.compile(r"lo(:[A-Za-z0-9_.-]{1,12})?")
SIZE = re.compile(r"(\d+)\s*(B|kB|KB|MB|GB|TB)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
PASSWORD_IN_CONNINFO = re.compile(r"(?:^|\s)password\s*=|://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")

Value = object


class Problem(NamedTuple):
    """One thing wrong in a config file."""

    path: str
    line: Optional[int]
    key: Optional[str]
    value: Optional[str]
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        what = "" if self.key is None else (
            f" {self.key}" if self.value is None else f" {self.key}={self.value!r}")
        return f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"


class ConfigError(ValueError):
    """config.ini cannot be used; `problems` says why, one per bad line or key."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


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


def _check_ifname(text: str) -> str:
    if not IFNAME.fullmatch(text):
        raise ValueError("is not a network interface name")
    return text


def _check_lo_label(text: str) -> str:
    if not LO_LABEL.fullmatch(text):
        raise ValueError("must be lo or lo:SUFFIX (at most 15 characters)")
    return text


def parse_size(text: str) -> int:
    """Bytes from "16MB", "512kB", "1048576" (1024-based, as PostgreSQL writes sizes)."""
    match = SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError("is not a size (e.g. 16MB, 512kB, 1048576)")
    return int(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()]


def _check_networks(text: str) -> tuple[str, ...]:
    from pha.agents.lvsdr import parse_networks  # the agent's own reading of the same value
    return tuple(str(n) for n in parse_networks(text))


def _check_conninfo(text: str) -> str:
    if PASSWORD_IN_CONNINFO.search(text):
        raise ValueError("holds a password: put it in a passfile (passfile=... or PGPASSFILE)")
    if "\n" in text:
        raise ValueError("must be a single line")
    return text


def _check_weights(text: str) -> str:
    for item in text.split():
        name, sep, weight = item.partition(",")
        if not name or (sep and not (weight.isdigit() and int(weight) <= 65535)):
            raise ValueError(f"{item!r} is not NAME or NAME,WEIGHT (weight 0-65535)")
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
        if not re.fullmatch(r"-?\d+", text.strip()):
            raise ValueError("is not an integer")
        value = int(text)
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
    _k("vip_nic", _check_ifname, "interface", "Interface the VIPs go on (default: the interface of "
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
    _k("RESOURCE_LIST", _str, "string", "pha4pgsql's resource list.",
       ignored="pha finds its resources in the CIB"),
    _k("pha4pgsql_dir", _str, "path", "pha4pgsql's install directory.",
       ignored="pha is an installed package"),
    # PostgreSQL
    _k("pgsql_pgctl", _check_path, "path", "pg_ctl; pg_rewind, pg_basebackup and pg_controldata are "
       "taken from its directory.", default="/usr/lib/postgresql/15/bin/pg_ctl", group="pgsql"),
    _k("pgsql_psql", _str, "path", "pha4pgsql's psql path.", group="pgsql",
       ignored="pha speaks SQL itself"),
    _k("pgsql_pgdata", _check_path, "path", "PGDATA.", default="/var/lib/postgresql/15/main",
       group="pgsql"),
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
    _k("max_lag", parse_size, "size", "Replay lag (16MB, 1048576) beyond which a standby is unfit: "
       "LVS drains it from the readers and, in async mode, it is not promoted (in sync mode the "
       "synchronous standby always stays promotable: it holds every acknowledged commit). "
       "Empty: no limit.", default=0, group="pgsql"),
    # lock
    _k("pgsql_enable_distlock", _bool, "boolean", "Promotion and the async fallback need the lock "
       "(`pha distlock`); always on in dual.", default=False, group="lock"),
    _k("pgsql_distlock_conninfo", _check_conninfo, "conninfo", "libpq conninfo of the lock server, "
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
    _k("lvs_realsvr_nic_lo", _check_lo_label, "label", "Label of the reader VIP on lo of the real "
       "servers.", default="lo:0", group="lvs"),
    _k("allowed_networks", _check_networks, "networks", "IPv4 networks real servers must be in "
       "(space or comma separated); others are skipped. Empty: any.", default=(), group="lvs"),
)
KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
ACCEPTED_NAMES = sorted(n for n in KEYS if n != "node") + ["node1", "node2", "node3"]


def schema_key(name: str) -> Optional[Key]:
    """The Key of a config name (node1..nodeN share the "node" key)."""
    return KEYS["node"] if NODE_KEY.fullmatch(name) else KEYS.get(name if name != "node" else "")


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


# --- the loaded configuration ----------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """A loaded config.ini: typed values with defaults applied, plus where each came from."""

    path: str
    values: Mapping[str, Value]
    nodes: tuple[str, ...]
    lines: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Value:
        return self.values[key]

    def is_set(self, key: str) -> bool:
        """Whether the file sets `key` (or an alias of it)."""
        return key in self.lines

    @property
    def template(self) -> str:
        return str(self.values["pcs_template"])

    @property
    def lvs(self) -> bool:
        """Whether the cluster balances reads with LVS."""
        return bool(self.values["enable_lvs"])

    @property
    def cluster_nodes(self) -> tuple[str, ...]:
        """The Pacemaker nodes: node1..N, plus othernodes except in three_plus_x."""
        extra = () if self.template == "three_plus_x" else tuple(self.values["othernodes"])  # type: ignore[arg-type]
        return self.nodes + extra

    @property
    def outside_readers(self) -> tuple[str, ...]:
        """Standbys outside the cluster (three_plus_x's othernodes)."""
        return tuple(self.values["othernodes"]) if self.template == "three_plus_x" else ()  # type: ignore[arg-type]

    @property
    def distlock(self) -> bool:
        return bool(self.values["pgsql_enable_distlock"])


class _Entry(NamedTuple):
    key: str
    text: str
    line: int


def parse_text(text: str, path: str) -> tuple[list[_Entry], list[Problem]]:
    """The `key=value` lines of a file, values unquoted as a shell would; no typing yet."""
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if not match:
            problems.append(Problem(path, number, None, None, f"{line!r} is not a key=value line"))
            continue
        key, raw_value = match.group(1), match.group(2).strip()
        try:
            words = shlex.split(raw_value, comments=True, posix=True)
        except ValueError as exc:
            problems.append(Problem(path, number, key, raw_value, f"cannot be read: {exc}"))
            continue
        if len(words) > 1:
            problems.append(Problem(path, number, key, raw_value,
                                    "holds several words: quote the value (\"a b\")"))
            continue
        entries.append(_Entry(key, words[0] if words else "", number))
    return entries, problems


def load(path: str) -> Config:
    """Read and check config.ini; raise ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError([Problem(path, None, None, None, f"cannot be read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, None, None, None, f"is not UTF-8 text: {exc}")]) from None
    config = parse(text, path)
    if config.values.get("pgsql_reppassword") is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & 0o077:
            config = _with_warning(config, f"{path}: holds pgsql_reppassword but is readable by group or "
                                           f"others (mode {mode & 0o777:o}): chmod 600 it, or move the "
                                           "password to pgsql_passfile")
    return config


def _with_warning(config: Config, warning: str) -> Config:
    return Config(config.path, config.values, config.nodes, config.lines, (*config.warnings, warning))


def parse(text: str, path: str = "config.ini") -> Config:
    """Check the text of a config.ini (pure: nothing read from disk, lab defaults aside)."""
    entries, problems = parse_text(text, path)
    values: dict[str, Value] = {}
    lines: dict[str, int] = {}
    texts: dict[str, str] = {}
    spellings: dict[str, str] = {}
    warnings: list[str] = []
    node_numbers: dict[int, int] = {}
    for entry in entries:
        key = schema_key(entry.key)
        if key is None:
            close = difflib.get_close_matches(entry.key, ACCEPTED_NAMES, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(Problem(path, entry.line, entry.key, redact(entry.text), f"unknown key{hint}"))
            continue
        name = key.alias_of or (entry.key if key.name == "node" else key.name)
        shown = "***" if key.secret else redact(entry.text)
        if name in lines:
            problems.append(Problem(path, entry.line, entry.key, shown,
                                    f"{name} is already set on line {lines[name]}"))
            continue
        lines[name] = entry.line
        texts[name] = shown
        spellings[name] = entry.key
        if key.alias_of:
            warnings.append(f"{path}:{entry.line}: {entry.key} is deprecated (pha4pgsql's spelling): "
                            f"use {key.alias_of}")
        if key.ignored:
            warnings.append(f"{path}:{entry.line}: {entry.key} is accepted and ignored: {key.ignored}")
        try:
            value = key.convert(entry.text) if entry.text != "" or key.name in _EMPTY_OK else None
        except ValueError as exc:
            problems.append(Problem(path, entry.line, entry.key, shown, str(exc)))
            continue
        if value is not None:
            values[name] = value
        if key.name == "node":
            node_numbers[int(NODE_KEY.fullmatch(entry.key).group(1))] = entry.line  # type: ignore[union-attr]
    nodes = tuple(str(values[f"node{n}"]) for n in sorted(node_numbers))
    for key in SCHEMA:
        if key.name != "node" and key.alias_of is None and key.name not in values:
            values[key.name] = key.default
    if values.get("lab"):
        _lab_defaults(values)
    _check_nodes(path, node_numbers, nodes, values, lines, texts, problems)
    _check_together(path, values, lines, texts, spellings, nodes, problems, warnings)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line or 0, p.key or "")))
    for name in [n for n in values if NODE_KEY.fullmatch(n)]:
        del values[name]
    return Config(path, values, nodes, lines, tuple(warnings))


_EMPTY_OK = frozenset({"node", "othernodes", "pgsql_restore_command", "lvs_weight_of_realservers",
                       "allowed_networks", "RESOURCE_LIST", "pha4pgsql_dir", "pgsql_psql", "pgsql_pghost"})
"""Keys whose empty value is checked like any other (an empty list, no command, a missing
node name); other keys read `key=` as unset."""


def _lab_defaults(values: dict[str, Value]) -> None:
    """A lab config: VIPs and interface of the lab on this machine (PHA_LAB_INSTANCE)."""
    from pha.lab import config as lab
    if values.get("writer_vip") is None:
        values["writer_vip"] = lab.vip(0)
    if values.get("reader_vip") is None:
        values["reader_vip"] = lab.vip(1)
    if values.get("vip_nic") is None:
        values["vip_nic"] = lab.NODE_IFNAME


def _check_nodes(path: str, numbers: dict[int, int], nodes: tuple[str, ...], values: dict[str, Value],
                 lines: dict[str, int], texts: dict[str, str], problems: list[Problem]) -> None:
    if not numbers:
        problems.append(Problem(path, None, "node1", None, "missing: name the nodes node1=..., node2=..."))
        return
    expected = 1
    for number in sorted(numbers):
        if number != expected:
            problems.append(Problem(path, numbers[number], f"node{number}", str(values[f"node{number}"]),
                                    f"node{expected} is missing: number the nodes from 1 without gaps"))
            return
        expected += 1
    seen: dict[str, str] = {}
    others = tuple(values.get("othernodes") or ())  # type: ignore[arg-type]
    named = [(f"node{i}", n) for i, n in enumerate(nodes, 1)] + [("othernodes", n) for n in others]
    for key, name in named:
        if name in seen:
            problems.append(Problem(path, lines.get(key), key, texts.get(key, name),
                                    f"names the same node as {seen[name]}"))
        seen.setdefault(name, key)


def _check_together(path: str, values: dict[str, Value], lines: dict[str, int], texts: dict[str, str],
                    spellings: dict[str, str], nodes: tuple[str, ...], problems: list[Problem],
                    warnings: list[str]) -> None:
    """Rules that involve several keys, and the template's requirements."""
    def problem(key: str, message: str) -> None:
        problems.append(Problem(path, lines.get(key), spellings.get(key, key), texts.get(key), message))

    for key in SCHEMA:
        if key.required and key.name not in lines and values.get(key.name) is None:
            problem(key.name, "missing (required)")
    template = values.get("pcs_template")
    if template is None:
        return
    others = tuple(values.get("othernodes") or ())  # type: ignore[arg-type]
    cluster_count = len(nodes) + (0 if template == "three_plus_x" else len(others))
    if template == "dual" and (len(nodes) != 2 or others):
        problem("pcs_template", f"dual is for exactly 2 nodes (node1, node2), this file names {cluster_count}")
    elif template in ("muti", "muti_with_lvs") and nodes and cluster_count < 3:
        problem("pcs_template", f"{template} needs 3 nodes or more (with 2, losing one stops both): "
                                f"use dual for {cluster_count}")
    elif template == "three_plus_x" and nodes and len(nodes) != 3:
        problem("pcs_template", f"three_plus_x has exactly 3 Pacemaker nodes (node1..node3), this file "
                                f"names {len(nodes)}; put the readers outside the cluster in othernodes")
    writer, reader = values.get("writer_vip"), values.get("reader_vip")
    if writer is not None and writer == reader:
        problem("reader_vip", "is also the writer_vip")
    # LVS
    if values.get("enable_lvs") is None:
        values["enable_lvs"] = template in LVS_TEMPLATES
    elif values["enable_lvs"] and template not in LVS_TEMPLATES:
        problem("enable_lvs", f"{template} has no LVS: use muti_with_lvs or three_plus_x")
    elif not values["enable_lvs"] and template == "muti_with_lvs":
        problem("enable_lvs", "muti_with_lvs always balances reads with LVS: use muti for no LVS")
    if values["enable_lvs"] and reader is None:
        problem("reader_vip", "missing: LVS balances reads on the reader VIP")
    if not values["enable_lvs"]:
        unused = [k.name for k in SCHEMA if k.group == "lvs" and k.name in lines and k.name != "enable_lvs"]
        for name in unused:
            warnings.append(f"{path}:{lines[name]}: {name} is ignored: {template} has no LVS")
    # lock
    psql_cmd = values.pop("pgsql_distlock_psql_cmd", None)
    if psql_cmd is not None:
        warnings.append(f"{path}:{lines['pgsql_distlock_psql_cmd']}: pgsql_distlock_psql_cmd is "
                        "deprecated: use pgsql_distlock_conninfo")
        if values.get("pgsql_distlock_conninfo") is not None:
            problem("pgsql_distlock_psql_cmd", "set pgsql_distlock_conninfo or this, not both")
        else:
            try:
                values["pgsql_distlock_conninfo"] = _check_conninfo(conninfo_of_psql_cmd(str(psql_cmd)))
            except ValueError as exc:
                problem("pgsql_distlock_psql_cmd", str(exc))
    if template == "dual":
        if "pgsql_enable_distlock" in lines and not values["pgsql_enable_distlock"]:
            problem("pgsql_enable_distlock", "dual needs the lock: without quorum, only the lock stops "
                                             "both nodes from being primary")
        values["pgsql_enable_distlock"] = True
    if values["pgsql_enable_distlock"] and values.get("pgsql_distlock_conninfo") is None:
        problem("pgsql_distlock_conninfo", f"missing: {'dual' if template == 'dual' else 'the lock'} "
                                           "needs the lock server's conninfo")
    # secrets
    if values.get("pgsql_reppassword") is not None:
        if values.get("pgsql_passfile") is None:
            problem("pgsql_reppassword", "needs pgsql_passfile: the password is written there, never "
                                         "into the CIB or a command line")
        else:
            warnings.append(f"{path}:{lines['pgsql_reppassword']}: {spellings['pgsql_reppassword']} keeps "
                            "a password in config.ini: `pha setup` copies it into pgsql_passfile; "
                            "better keep it only there")
        if values.get("lab"):
            problem("lab", "the lab trusts its subnet: drop pgsql_reppassword")


def redact(text: str) -> str:
    """`text` with any password in it (password=..., scheme://user:password@) masked."""
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^/@\s:]*:)[^/@\s]*@", r"\1***@", text)


def conninfo_of_psql_cmd(command: str) -> str:
    """The conninfo in pha4pgsql's pgsql_distlock_psql_cmd ('/usr/bin/psql \\"host=...\\"')."""
    words = shlex.split(re.sub(r'\\+"', '"', command))
    infos = [w for w in words[1:] if "=" in w and not w.startswith("-")]
    if len(infos) != 1:
        raise ValueError("has no psql \"CONNINFO\" to take the lock server's conninfo from")
    return infos[0]
