"""config.ini: the loader of a pha cluster's settings, and its errors.

The file keeps pha4pgsql's format, so its config.ini files load unchanged: one
`key=value` per line, `#` comments, values quoted as a shell would read them
("a b", 'a b', ""). Every key is declared once, with its type, default and
meaning, in pha.configschema's SCHEMA; `describe()` prints them (`pha gencfg
--list-keys`).

`load(path)` returns a `Config` or raises `ConfigError`, which lists every
problem found, each naming the file, the line, the key and the bad value.
Unknown keys are errors (with the closest known key suggested); deprecated
and ignored keys of pha4pgsql load with a warning.

Secrets: the replication password is best kept in a libpq passfile
(`pgsql_passfile`), which the agents and the repair commands use; a password
written in config.ini (`pgsql_reppassword`) is only ever copied into that
passfile by `pha setup`, never into the CIB or a command line. A conninfo
that holds a password (in any form libpq reads) is refused, and no message
shows a secret: the value of a secret key, or of any key whose name looks
secret (a misspelled one too), is shown as '***', and passwords inside other
values are masked (pha.values.shown).
"""
from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional

from pha import fencekeys
from pha import values as parsers
from pha.configschema import ACCEPTED_NAMES, KEYS, LVS_TEMPLATES, NODE_KEY, SCHEMA, Value, schema_key

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")


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
            what = "this line" if parsers.is_secret_name(line) else repr(parsers.shown(line))
            problems.append(Problem(path, number, None, None, f"{what} is not a key=value line"))
            continue
        key, raw_value = match.group(1), match.group(2).strip()
        try:
            words = shlex.split(raw_value, comments=True, posix=True)
        except ValueError as exc:
            problems.append(Problem(path, number, key, shown_value(key, raw_value), f"cannot be read: {exc}"))
            continue
        if len(words) > 1:
            problems.append(Problem(path, number, key, shown_value(key, raw_value),
                                    "holds several words: quote the value (\"a b\")"))
            continue
        entries.append(_Entry(key, words[0] if words else "", number))
    return entries, problems


LabDefaults = Callable[[dict[str, Value]], None]
"""Fills in what a `lab = yes` config leaves unset (pha.lab.ini.defaults: the lab on this machine)."""


def load(path: str, lab_defaults: Optional[LabDefaults] = None) -> Config:
    """Read and check config.ini; raise ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError([Problem(path, None, None, None, f"cannot be read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, None, None, None, f"is not UTF-8 text: {exc}")]) from None
    config = parse(text, path, lab_defaults)
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


def parse(text: str, path: str = "config.ini", lab_defaults: Optional[LabDefaults] = None) -> Config:
    """Check the text of a config.ini (pure: nothing read from disk, `lab_defaults` aside, which
    a `lab = yes` config's unset values come from)."""
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
            problems.append(Problem(path, entry.line, entry.key, shown_value(entry.key, entry.text),
                                    f"unknown key{hint}"))
            continue
        name = key.alias_of or (entry.key if key.name in ("node", "fence_node") else key.name)
        shown = shown_value(entry.key, entry.text)
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
    if values.get("lab") and lab_defaults is not None:
        lab_defaults(values)
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
                values["pgsql_distlock_conninfo"] = parsers.check_no_secret(conninfo_of_psql_cmd(str(psql_cmd)))
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
    # fencing
    fencekeys.check_together(values, nodes + (() if template == "three_plus_x" else others), problem,
                           lambda key, text: warnings.append(f"{path}:{lines.get(key)}: {key} {text}"))


def shown_value(name: str, text: str) -> str:
    """A config value as messages show it: '***' for a secret key (or one whose name looks
    secret), else the text with any password in it masked, on one line, shortened."""
    key = schema_key(name)
    if key is None:     # unknown: secret when it looks like a secret key's misspelling
        key = next((KEYS[n] for n in difflib.get_close_matches(name, KEYS, n=1, cutoff=0.75)), None)
    return parsers.shown(text, secret=(key is not None and key.secret) or parsers.is_secret_name(name))


def conninfo_of_psql_cmd(command: str) -> str:
    """The conninfo in pha4pgsql's pgsql_distlock_psql_cmd ('/usr/bin/psql \\"host=...\\"')."""
    words = shlex.split(re.sub(r'\\+"', '"', command))
    infos = [w for w in words[1:] if ("=" in w or "://" in w) and not w.startswith("-")]
    if len(infos) != 1:
        raise ValueError("has no psql \"CONNINFO\" to take the lock server's conninfo from")
    return infos[0]
