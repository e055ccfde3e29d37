"""A small, explicit OCF runtime shared by every pha agent.

An agent declares its parameters and actions once, in an `Agent`. From that
declaration this module produces typed parameters with defaults,
validate-all, and the errors Pacemaker expects, and it dispatches the actions.
It also parses the clone/notify environment. The meta-data XML is rendered by
pha.ocfmetadata (only the meta-data action imports it); logging and exit
reasons are pha.ocflog's.

Every value that reaches a message (exit reason, log line) goes through
pha.values.shown(): one line, masked, truncated. An unexpected exception in
an action ends it with OCF_ERR_GENERIC, "internal error: ..." as the exit
reason and the traceback in the log.

This module is on every agent's hot path: it imports only the standard
library, pha.values and pha.ocflog, and only what it needs.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, TypeVar, Union

from pha import ocflog
from pha.values import parse_int, shown

# --- return codes (OCF 1.1, plus Pacemaker's degraded codes) --------------------
SUCCESS = 0
ERR_GENERIC = 1
ERR_ARGS = 2
ERR_UNIMPLEMENTED = 3
ERR_PERM = 4
ERR_INSTALLED = 5
ERR_CONFIGURED = 6
NOT_RUNNING = 7
RUNNING_PROMOTED = 8
FAILED_PROMOTED = 9
DEGRADED = 190
DEGRADED_PROMOTED = 191

CODE_NAMES = {
    SUCCESS: "OCF_SUCCESS", ERR_GENERIC: "OCF_ERR_GENERIC", ERR_ARGS: "OCF_ERR_ARGS",
    ERR_UNIMPLEMENTED: "OCF_ERR_UNIMPLEMENTED", ERR_PERM: "OCF_ERR_PERM",
    ERR_INSTALLED: "OCF_ERR_INSTALLED", ERR_CONFIGURED: "OCF_ERR_CONFIGURED",
    NOT_RUNNING: "OCF_NOT_RUNNING", RUNNING_PROMOTED: "OCF_RUNNING_PROMOTED",
    FAILED_PROMOTED: "OCF_FAILED_PROMOTED", DEGRADED: "OCF_DEGRADED",
    DEGRADED_PROMOTED: "OCF_DEGRADED_PROMOTED",
}

PARAM_TYPES = ("string", "integer", "boolean", "select")
ROLES = ("Promoted", "Unpromoted")
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})

Value = Union[str, int, bool, None]
T = TypeVar("T")


class OCFError(Exception):
    """Ends an action with `rc`; `reason` becomes the ocf-exit-reason."""

    def __init__(self, rc: int, reason: str) -> None:
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


# --- declaration ---------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One agent parameter, declared once."""

    name: str
    type: str = "string"
    default: Value = None
    required: bool = False
    shortdesc: str = ""
    longdesc: str = ""
    options: tuple[str, ...] = ()
    unique: bool = False
    unique_group: Optional[str] = None
    reloadable: bool = False
    deprecated: bool = False
    replaced_with: tuple[str, ...] = ()
    check: Optional[Callable[[Value], Optional[str]]] = None
    secret: bool = False  # never echo the value (messages show ***)

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: unknown type {self.type!r}")
        if (self.type == "select") != bool(self.options):
            raise ValueError(f"parameter {self.name}: options go with type select only")
        if self.required and self.default is not None:
            raise ValueError(f"parameter {self.name}: a required parameter has no default")

    def parse(self, raw: str) -> Value:
        """Convert the raw environment string; raise OCFError naming the parameter.

        `check` returns a problem ("must be 1-100") or None; it may also raise
        ValueError with the problem (the pha.values parsers do).
        """
        value: Value
        if self.type == "integer":
            try:
                value = parse_int(raw)
            except ValueError as err:
                raise self.bad(raw, str(err)) from None
        elif self.type == "boolean":
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise self.bad(raw, "is not a boolean (true/false)")
            value = word in _TRUE
        elif self.type == "select":
            if raw not in self.options:
                raise self.bad(raw, "must be one of " + ", ".join(self.options))
            value = raw
        else:
            value = raw
        if self.check is not None:
            try:
                problem = self.check(value)
            except ValueError as err:
                problem = str(err)
            if problem:
                raise self.bad(raw, problem)
        return value

    def bad(self, raw: str, problem: str) -> OCFError:
        """OCF_ERR_CONFIGURED naming this parameter and its value (see bad_param)."""
        return bad_param(self.name, raw, problem, self.secret)


def bad_param(name: str, value: object, problem: str, secret: bool = False) -> OCFError:
    """OCF_ERR_CONFIGURED "parameter NAME=VALUE PROBLEM", the value put through
    pha.values.shown() (one line, masked, truncated; *** when `secret`)."""
    # No quotes: Pacemaker 2.1 escapes them twice on their way to crm_mon.
    return OCFError(ERR_CONFIGURED, f"parameter {name}={shown(value, secret)} {problem}")


@dataclass(frozen=True)
class Action:
    """One action as advertised in meta-data."""

    name: str
    timeout: int = 20
    interval: Optional[int] = None
    depth: Optional[int] = None
    role: Optional[str] = None
    start_delay: Optional[int] = None

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"action {self.name}: role must be one of {ROLES}")


Handler = Callable[["Resource"], int]
Validator = Callable[["Resource"], None]


@dataclass
class Agent:
    """An agent's single declaration, and the dispatcher of its actions."""

    name: str
    version: str
    shortdesc: str
    longdesc: str
    params: list[Param]
    actions: list[Action]
    handlers: dict[str, Handler] = field(default_factory=dict)
    validators: list[Validator] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"agent {self.name}: duplicate parameter names")
        for p in self.params:
            for other in p.replaced_with:
                if other not in names:
                    raise ValueError(f"parameter {p.name}: replaced_with {other} is undeclared")

    def handler(self, action: str) -> Callable[[Handler], Handler]:
        """Decorator: register the function that runs `action`."""
        def register(func: Handler) -> Handler:
            self.handlers[action] = func
            return func
        return register

    def validator(self, func: Validator) -> Validator:
        """Decorator: register extra validation (raise OCFError on bad input)."""
        self.validators.append(func)
        return func

    def metadata(self) -> str:
        """OCF 1.1 meta-data XML for this agent (pha.ocfmetadata)."""
        from pha import ocfmetadata
        return ocfmetadata.render(self)

    # --- running ---------------------------------------------------------------
    def run(self, argv: list[str], env: Optional[Mapping[str, str]] = None) -> int:
        """Run the action named in argv[0] and return its OCF code.

        Parameters are parsed for every action; the agent's validators run
        before every action but stop, which must work with whatever is left.
        """
        env = os.environ if env is None else env
        action = argv[0] if argv else ""
        log = ocflog.Log(self.name, env)
        if action in ("meta-data", "metadata"):
            sys.stdout.write(self.metadata())
            return SUCCESS
        if action in ("", "usage", "help"):
            sys.stdout.write(self.usage())
            return SUCCESS if action else ERR_ARGS
        if action not in self.handlers and action != "validate-all":
            log.error(f"action {action!r} is not implemented by {self.name}")
            return ERR_UNIMPLEMENTED
        try:
            try:
                res = Resource(self, action, env, log)
            except OCFError as err:
                if action != "stop":
                    raise
                # Nothing can have started with parameters this bad: stopped it is.
                log.warning(f"stop with invalid parameters: {err.reason}")
                return SUCCESS
            if action != "stop":
                res.validate()
            rc = self.handlers[action](res) if action in self.handlers else SUCCESS
        except OCFError as err:
            ocflog.exit_reason(err.reason)
            log.error(err.reason)
            return err.rc
        except Exception as err:  # a bug, or MemoryError/RecursionError: fail this action only
            return internal_error(err, log)
        log.debug(f"{action} returned {CODE_NAMES.get(rc, rc)}")
        return rc

    def usage(self) -> str:
        actions = sorted({"meta-data", "validate-all", *self.handlers})
        return f"usage: {self.name} {{{'|'.join(actions)}}}\n"


def internal_error(err: BaseException, log: ocflog.Log) -> int:
    """An unexpected exception: OCF_ERR_GENERIC, its type and message as the exit
    reason, the traceback in the log (one log line per traceback line)."""
    import traceback
    reason = f"internal error: {type(err).__name__}: {shown(err)}"
    ocflog.exit_reason(reason)
    try:
        for chunk in traceback.format_exception(err):
            for line in chunk.rstrip("\n").split("\n"):
                log.error(line)
    except Exception:  # MemoryError/RecursionError again while formatting: the reason is out
        pass
    return ERR_GENERIC


# --- one invocation --------------------------------------------------------------
class Resource:
    """One invocation of an agent: its action, parameters and environment."""

    def __init__(self, agent: Agent, action: str, env: Mapping[str, str], log: ocflog.Log) -> None:
        self.agent = agent
        self.action = action
        self.env = env
        self.log = log
        self.instance = env.get("OCF_RESOURCE_INSTANCE", agent.name)
        self.params = parse_params(agent.params, env)
        self.memo: dict[str, object] = {}  # per-invocation cache for the agent

    def cached(self, key: str, make: Callable[[], T]) -> T:
        """make(), computed once per invocation (validators and handlers share it)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]  # type: ignore[return-value]

    def meta(self, name: str, default: str = "") -> str:
        """A CRM meta attribute, e.g. meta("interval") or meta("notify_type")."""
        return self.env.get(f"OCF_RESKEY_CRM_meta_{name}", default)

    @property
    def interval_ms(self) -> int:
        return int(self.meta("interval", "0") or 0)

    @property
    def is_probe(self) -> bool:
        """A monitor with interval 0 is Pacemaker's probe."""
        return self.action == "monitor" and self.interval_ms == 0

    @property
    def node_name(self) -> str:
        return self.meta("on_node") or os.uname().nodename

    @property
    def clone(self) -> Optional[CloneInfo]:
        return clone_info(self.env)

    @property
    def notify(self) -> Optional[Notify]:
        return parse_notify(self.env)

    def validate(self) -> None:
        """Run the agent's validators (typed parsing already happened)."""
        for check in self.agent.validators:
            check(self)


def parse_params(params: Iterable[Param], env: Mapping[str, str]) -> dict[str, Value]:
    """Typed values from OCF_RESKEY_*, defaults applied; OCFError names the culprit."""
    values: dict[str, Value] = {}
    missing = []
    for p in params:
        raw = env.get(f"OCF_RESKEY_{p.name}")
        if raw is None or raw == "":
            if p.required:
                missing.append(p.name)
            values[p.name] = p.default
        else:
            values[p.name] = p.parse(raw)
    if missing:
        raise OCFError(ERR_CONFIGURED, "required parameter(s) not set: " + ", ".join(missing))
    return values


# --- clone and notify environment ------------------------------------------------
@dataclass(frozen=True)
class CloneInfo:
    """Clone meta attributes of this instance."""

    clone: str
    clone_max: int
    clone_node_max: int
    promotable: bool
    promoted_max: int
    promoted_node_max: int
    notify: bool


def clone_info(env: Mapping[str, str]) -> Optional[CloneInfo]:
    """Clone settings from the environment, or None outside a clone."""
    def meta(*names: str, default: str = "") -> str:
        for n in names:
            v = env.get(f"OCF_RESKEY_CRM_meta_{n}")
            if v:
                return v
        return default
    if not meta("clone_max", "clone"):
        return None
    promoted_max = meta("promoted_max", "master_max")
    return CloneInfo(
        clone=meta("clone", default="0"),
        clone_max=int(meta("clone_max", default="1")),
        clone_node_max=int(meta("clone_node_max", default="1")),
        promotable=bool(promoted_max) or meta("promotable").lower() in _TRUE,
        promoted_max=int(promoted_max or 0),
        promoted_node_max=int(meta("promoted_node_max", "master_node_max", default="0")),
        notify=meta("notify").lower() in _TRUE,
    )


NOTIFY_LISTS = ("start", "stop", "promote", "demote", "active", "inactive",
                "promoted", "unpromoted", "all", "available")
# Pacemaker's older names for the same lists.
NOTIFY_ALIASES = {"master": "promoted", "slave": "unpromoted"}


@dataclass(frozen=True)
class Notify:
    """A parsed notification: pre/post, the operation, and host lists by role."""

    type: str
    operation: str
    hosts: Mapping[str, tuple[str, ...]]
    resources: Mapping[str, tuple[str, ...]]

    @property
    def is_pre(self) -> bool:
        return self.type == "pre"

    @property
    def is_post(self) -> bool:
        return self.type == "post"

    def __getitem__(self, name: str) -> tuple[str, ...]:
        """Host list by role: notify["promoted"], notify["master"], notify["start"]..."""
        return self.hosts.get(NOTIFY_ALIASES.get(name, name), ())


def parse_notify(env: Mapping[str, str]) -> Optional[Notify]:
    """The notify environment as a structure, or None when this is not a notify."""
    prefix = "OCF_RESKEY_CRM_meta_notify_"
    ntype = env.get(prefix + "type")
    if not ntype:
        return None
    hosts: dict[str, tuple[str, ...]] = {}
    resources: dict[str, tuple[str, ...]] = {}
    for name in (*NOTIFY_LISTS, *NOTIFY_ALIASES):
        key = NOTIFY_ALIASES.get(name, name)
        for target, suffix in ((hosts, "uname"), (resources, "resource")):
            found = env.get(f"{prefix}{name}_{suffix}", "").split()
            if found and not target.get(key):
                target[key] = tuple(found)
    return Notify(type=ntype, operation=env.get(prefix + "operation", ""),
                  hosts=hosts, resources=resources)
