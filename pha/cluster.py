"""The Pacemaker configuration of a pha PostgreSQL cluster, as pcs commands.

`pcs_commands(spec)` is pure: it turns a `ClusterSpec` into the pcs command
lines (argument lists) that build the cluster:

- the promotable clone of the PostgreSQL agent (`ocf:pha:pgsql`, or the stock
  `ocf:heartbeat:pgsql` as the baseline) with one promoted instance, one
  instance per node, and role monitors every few seconds; notify=true only
  for the stock agent, which needs notifications (pha's agent does not, and
  each round of them would delay a failover);
- a writer VIP colocated with the Promoted role, started after promote and
  stopped after demote (the demote is a shutdown whose last WAL must still
  reach the standbys, which follow master_ip = the writer VIP);
- an optional reader VIP that prefers a node whose `<id>-status` says it is a
  streaming hot standby (HS:sync, HS:potential, HS:async) and otherwise falls
  back to any node running PostgreSQL, the primary included, so reads keep
  working when no standby is left; its colocation has influence=false, so
  only the agent's promotion scores choose the primary;
- cluster properties (no-quorum-policy=stop, fencing on when `fencing`) and resource
  defaults (migration-threshold, failure-timeout, stickiness).

The lines are written for the pcs and Pacemaker versions in `Versions`: the
forms both pcs 0.11 and 0.12 accept (`score=`), and each version's own form
where they differ (`detect_versions` asks the node):
- promotable/clone options: pcs 0.12 wants `--future` and `meta` after the
  clone id (it deprecates them without; `meta` without `--future` puts them
  on the primitive), pcs 0.11 has no `--future` and puts options after
  `meta` on the primitive;
- a rule: one argument for pcs 0.12 (several are deprecated), several for
  pcs 0.11 (it refuses one);
- fencing: the option name the node's Pacemaker lists (`fencing_enabled`, detected by
  pha.fencing.detect_names, never from a version number): `fencing-enabled` since
  Pacemaker 3.0.2, `stonith-enabled` before it and when nothing can tell.

`apply(commands, run)` runs them as one CIB transaction: a copy of the CIB is
edited with `pcs -f`, then pushed as a diff against the copy. `run` is a
`pha.crm.Runner`, so the same code works locally and inside a lab node.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from pha import crm, fencing
from pha.pgsql import names

PHA_AGENT = "ocf:pha:pgsql"
STOCK_AGENT = "ocf:heartbeat:pgsql"
AGENTS = (PHA_AGENT, STOCK_AGENT)
REP_MODES = ("sync", "async")
PHA_STATUS_ATTRIBUTE = names.ATTR_STATUS
STREAMING_STANDBY_STATUSES = names.STREAMING_STANDBY_STATUSES
"""`<id>-status` values of a hot standby that streams from the primary."""

# Per-agent defaults of the fields left None in a ClusterSpec. The stock agent
# runs at the intervals of its ClusterLabs wiki configuration (3 s / 4 s, 60 s
# timeouts), the baseline pha is measured against.
AGENT_DEFAULTS: dict[str, dict[str, int]] = {
    PHA_AGENT: {"promoted_monitor": 2, "unpromoted_monitor": 3, "monitor_timeout": 10},
    STOCK_AGENT: {"promoted_monitor": 3, "unpromoted_monitor": 4, "monitor_timeout": 60},
}
# Instance attributes the stock agent needs on PostgreSQL 12+ beyond the common ones.
STOCK_DEFAULT_PARAMS = {"restart_on_promote": "false"}
# Agent parameter -> the ClusterSpec field it comes from (never from pgsql_params).
DERIVED_PARAMS = {"rep_mode": "rep_mode", "node_list": "nodes", "master_ip": "master_ip"}

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_AGENT = re.compile(r"ocf:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+")


PCS_FUTURE_SYNTAX = (0, 12)
"""The pcs version that wants `--future ... meta` after promotable/clone and a rule as one argument."""


class ClusterConfigError(ValueError):
    """A ClusterSpec field has a value pcs or Pacemaker would reject."""


@dataclass(frozen=True)
class Versions:
    """The pcs and Pacemaker versions the command lines are written for.

    The default is Debian 12's generation (pcs 0.11, Pacemaker 2.1): pcs 0.12
    accepts its lines with deprecation warnings, while pcs 0.11 misreads
    0.12's `promotable ID meta ...`.
    """

    pcs: tuple[int, ...] = (0, 11)
    pacemaker: tuple[int, ...] = (2, 1)
    fencing_enabled: str = fencing.STONITH_NAMES.enabled   # as Pacemaker lists it (fencing.detect_names)

    @property
    def pcs_future(self) -> bool:
        return self.pcs >= PCS_FUTURE_SYNTAX

    def clone(self, keyword: str, clone_id: str, options: Sequence[str]) -> list[str]:
        """`promotable`/`clone` ID and the clone's meta attributes (the end of a `resource create`)."""
        if self.pcs_future:
            return ["--future", keyword, clone_id, "meta", *options]
        return [keyword, clone_id, *options]

    def rule(self, words: Sequence[str]) -> list[str]:
        """A rule expression as pcs wants it."""
        return [" ".join(words)] if self.pcs_future else list(words)


def parse_pcs_version(text: str) -> tuple[int, ...]:
    """`--pcs-version 0.12` (or 0.11.5) as a tuple; ValueError if it is not one."""
    version = crm.parse_version(text)
    if version is None or text.strip() != ".".join(map(str, version)):
        raise ValueError(f"--pcs-version: {text!r} is not a version like 0.11 or 0.12.0")
    return version


def detect_versions(run: crm.Runner = crm.run_command, timeout: float = 20.0) -> Versions:
    """The versions of pcs and Pacemaker where `run` runs, and the fencing option's name its
    Pacemaker knows; a tool that does not say keeps the default."""
    bridge = crm.Crm(run, timeout)
    found: dict[str, object] = {
        "fencing_enabled": fencing.detect_names(lambda argv: bridge.call(argv, ok=tuple(range(256)))).enabled}
    for name, argv in (("pcs", ["pcs", "--version"]), ("pacemaker", ["pacemakerd", "--version"])):
        try:
            version = crm.parse_version(bridge.call(argv).stdout)
        except (crm.CrmError, OSError):
            version = None
        if version is not None:
            found[name] = version
    return Versions(**found)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClusterSpec:
    """What the cluster is made of. Times are in seconds.

    `pgsql_params` are the agent's instance attributes (pgctl, pgdata, pgport,
    socketdir, repuser, tmpdir, ...); rep_mode, node_list and master_ip come
    from the fields of the same meaning (master_ip defaults to writer_ip).
    Monitor intervals and timeout left None take the agent's defaults.
    """

    nodes: tuple[str, ...]
    writer_ip: str
    reader_ip: Optional[str] = None
    agent: str = PHA_AGENT
    rep_mode: str = "sync"
    master_ip: Optional[str] = None
    pgsql_params: Mapping[str, object] = field(default_factory=dict)
    resource_id: str = "pgsql"
    writer_vip_id: str = "vip-writer"
    reader_vip_id: str = "vip-reader"
    vip_agent: str = "ocf:pha:vip"
    cidr_netmask: int = 24
    nic: Optional[str] = None
    promoted_monitor: Optional[int] = None
    unpromoted_monitor: Optional[int] = None
    monitor_timeout: Optional[int] = None
    action_timeout: int = 60
    start_timeout: int = 300       # the pgsql start may rewind a forked node (pg_rewind) first
    vip_monitor: int = 2
    vip_timeout: int = 20
    migration_threshold: int = 3   # a crashed primary restarts in place as a standby (rewound if forked)
    failure_timeout: int = 20
    resource_stickiness: int = 100
    reader_preference: int = 200
    fencing: bool = False          # fence devices exist (pha.fencing): the fencing option is turned on

    @property
    def clone_id(self) -> str:
        return f"{self.resource_id}-clone"

    @property
    def status_attribute(self) -> str:
        """The node attribute the agent publishes its PRI / HS:* state in: pha's has a
        fixed name (pha.agents.pgsql.ATTR_STATUS), the stock agent's follows the resource id."""
        return PHA_STATUS_ATTRIBUTE if self.agent == PHA_AGENT else f"{self.resource_id}-status"

    def setting(self, name: str) -> int:
        """A monitor setting: the field's value, or the agent's default."""
        value = getattr(self, name)
        return AGENT_DEFAULTS[self.agent][name] if value is None else value

    def agent_params(self) -> dict[str, str]:
        """The agent's instance attributes, in a stable order."""
        params = dict(STOCK_DEFAULT_PARAMS) if self.agent == STOCK_AGENT else {}
        params.update({name: _text(value) for name, value in self.pgsql_params.items()})
        if self.agent == STOCK_AGENT and "psql" not in params and "pgctl" in params:
            params["psql"] = params["pgctl"].rsplit("/", 1)[0] + "/psql"
        params.update(rep_mode=self.rep_mode, node_list=" ".join(self.nodes),
                      master_ip=self.master_ip or self.writer_ip)
        return dict(sorted(params.items()))


def validate(spec: ClusterSpec) -> None:
    """Raise ClusterConfigError naming the first bad field."""
    if not spec.nodes:
        raise ClusterConfigError("nodes: at least one node is needed")
    for node in spec.nodes:
        if not isinstance(node, str) or not _NODE.fullmatch(node):
            raise ClusterConfigError(f"nodes: {node!r} is not a node name")
    if len(set(spec.nodes)) != len(spec.nodes):
        raise ClusterConfigError(f"nodes: {' '.join(spec.nodes)} names a node twice")
    if spec.agent not in AGENTS:
        raise ClusterConfigError(f"agent: {spec.agent!r} must be one of {', '.join(AGENTS)}")
    if not _AGENT.fullmatch(spec.vip_agent):
        raise ClusterConfigError(f"vip_agent: {spec.vip_agent!r} is not an ocf:PROVIDER:TYPE agent")
    if spec.rep_mode not in REP_MODES:
        raise ClusterConfigError(f"rep_mode: {spec.rep_mode!r} must be one of {', '.join(REP_MODES)}")
    addresses = {"writer_ip": spec.writer_ip, "reader_ip": spec.reader_ip, "master_ip": spec.master_ip}
    for name, address in addresses.items():
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ClusterConfigError(f"{name}: {address!r} is not an IP address") from None
    if spec.reader_ip is not None and spec.reader_ip == spec.writer_ip:
        raise ClusterConfigError(f"reader_ip: {spec.reader_ip} is also the writer_ip")
    if spec.nic is not None and not _NODE.fullmatch(spec.nic):
        raise ClusterConfigError(f"nic: {spec.nic!r} is not an interface name")
    ids = {"resource_id": spec.resource_id, "writer_vip_id": spec.writer_vip_id,
           "reader_vip_id": spec.reader_vip_id}
    for name, rsc_id in ids.items():
        if not _ID.fullmatch(rsc_id):
            raise ClusterConfigError(f"{name}: {rsc_id!r} is not a valid resource id")
    if len({*ids.values(), spec.clone_id}) != len(ids) + 1:
        raise ClusterConfigError(f"resource ids: {', '.join(ids.values())} must differ "
                                 f"(and from {spec.clone_id})")
    for name, value in spec.pgsql_params.items():
        if not _PARAM.fullmatch(name):
            raise ClusterConfigError(f"pgsql_params: {name!r} is not a parameter name")
        if name in DERIVED_PARAMS:
            raise ClusterConfigError(f"pgsql_params: {name} is set from ClusterSpec."
                                     f"{DERIVED_PARAMS[name]}, not passed as a parameter")
        text = _text(value)
        if "\n" in text or "\r" in text:
            raise ClusterConfigError(f"pgsql_params: {name}={text!r} must be a single line")
    _check_range("cidr_netmask", spec.cidr_netmask, 1, 128)
    for name in ("promoted_monitor", "unpromoted_monitor", "monitor_timeout"):
        _check_range(name, spec.setting(name), 1, 3600)
    if spec.setting("promoted_monitor") == spec.setting("unpromoted_monitor"):
        raise ClusterConfigError("promoted_monitor, unpromoted_monitor: Pacemaker needs two "
                                 f"different intervals, both are {spec.setting('promoted_monitor')}s")
    for name in ("action_timeout", "start_timeout", "vip_monitor", "vip_timeout", "failure_timeout"):
        _check_range(name, getattr(spec, name), 1, 3600)
    _check_range("migration_threshold", spec.migration_threshold, 1, 1_000_000)
    _check_range("resource_stickiness", spec.resource_stickiness, 0, 1_000_000)
    _check_range("reader_preference", spec.reader_preference, 1, 1_000_000)


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ClusterConfigError(f"{name}: {value!r} must be an integer from {low} to {high}")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pcs_commands(spec: ClusterSpec, versions: Versions = Versions()) -> list[list[str]]:
    """The pcs command lines that build the cluster `spec` describes, for those `versions`."""
    validate(spec)
    clone, writer = spec.clone_id, spec.writer_vip_id
    timeout = f"timeout={spec.action_timeout}s"
    monitor_timeout = f"timeout={spec.setting('monitor_timeout')}s"
    commands = [
        ["pcs", "property", "set", "no-quorum-policy=stop", f"{versions.fencing_enabled}={_text(spec.fencing)}"],
        ["pcs", "resource", "defaults", "update", f"migration-threshold={spec.migration_threshold}",
         f"failure-timeout={spec.failure_timeout}s", f"resource-stickiness={spec.resource_stickiness}"],
        ["pcs", "resource", "create", spec.resource_id, spec.agent,
         *(f"{name}={value}" for name, value in spec.agent_params().items()),
         "op", "start", f"timeout={spec.start_timeout}s", "op", "stop", timeout,
         "op", "promote", timeout, "op", "demote", timeout, "op", "notify", timeout,
         "op", "monitor", f"interval={spec.setting('promoted_monitor')}s", "role=Promoted", monitor_timeout,
         "op", "monitor", f"interval={spec.setting('unpromoted_monitor')}s", "role=Unpromoted", monitor_timeout,
         *versions.clone("promotable", clone, [
             f"notify={_text(spec.agent == STOCK_AGENT)}", "promoted-max=1", "promoted-node-max=1",
             f"clone-max={len(spec.nodes)}", "clone-node-max=1"])],
        _vip_create(spec, writer, spec.writer_ip),
        ["pcs", "constraint", "colocation", "add", writer, "with", "Promoted", clone, "score=INFINITY"],
        ["pcs", "constraint", "order", "promote", clone, "then", "start", writer,
         "symmetrical=false", "kind=Mandatory"],
        ["pcs", "constraint", "order", "demote", clone, "then", "stop", writer,
         "symmetrical=false", "kind=Optional"],
    ]
    if spec.reader_ip is not None:
        reader = spec.reader_vip_id
        rule: list[str] = []
        for status in STREAMING_STANDBY_STATUSES:
            rule += (["or"] if rule else []) + [spec.status_attribute, "eq", status]
        commands += [
            _vip_create(spec, reader, spec.reader_ip),
            # influence=false: the reader's preferences never steer which node is promoted
            ["pcs", "constraint", "colocation", "add", reader, "with", "Started", clone, "score=INFINITY",
             "influence=false"],
            ["pcs", "constraint", "location", reader, "rule", f"score={spec.reader_preference}",
             *versions.rule(rule)],
        ]
    return commands


def _vip_create(spec: ClusterSpec, rsc_id: str, address: str) -> list[str]:
    nic = [f"nic={spec.nic}"] if spec.nic else []
    return ["pcs", "resource", "create", rsc_id, spec.vip_agent, f"ip={address}",
            f"cidr_netmask={spec.cidr_netmask}", *nic,
            "op", "start", f"timeout={spec.vip_timeout}s", "op", "stop", f"timeout={spec.vip_timeout}s",
            "op", "monitor", f"interval={spec.vip_monitor}s", f"timeout={spec.vip_timeout}s"]


def format_commands(commands: Sequence[Sequence[str]]) -> str:
    """The commands as shell lines, for people to read or paste."""
    return "".join(shlex.join(argv) + "\n" for argv in commands)


def apply(commands: Sequence[Sequence[str]], run: crm.Runner = crm.run_command,
          timeout: float = 60.0) -> None:
    """Run the pcs `commands` as one CIB transaction; raise crm.CrmError on failure.

    Each command must start with "pcs"; it runs as `pcs -f FILE ...` on a
    copy of the live CIB in a private temporary directory of the machine
    `run` executes on, and the result is pushed as a diff against the copy.
    """
    for argv in commands:
        if not argv or argv[0] != "pcs":
            raise ClusterConfigError(f"commands: {shlex.join(argv)!r} is not a pcs command")
    from pha.cibedit import CibEdit
    with CibEdit(crm.Crm(run, timeout)) as edit:
        for argv in commands:
            edit.pcs(argv)
        edit.push()
