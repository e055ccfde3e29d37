"""The Pacemaker bridge: the one place pha talks to Pacemaker.

Every call runs a Pacemaker CLI with an argument list (never a shell string)
and a timeout; a failure raises `CrmError`, which names the full command, its
exit code and its error text. `Crm` holds the runner, so unit tests can inject
a fake one; real code uses `run_command` (subprocess). What the CLIs print is
parsed by pha.crmstatus (scores, `crm_resource --locate`, crm_mon's XML).

Agents import this module on their hot path: it imports only the standard
library and pha.crmstatus, and subprocess / ElementTree only when they are
needed.

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
above, and parses `-p -v -INFINITY` too; 3.0.2 renamed the stonith-* cluster
options to fencing-* (pha.fencing.detect_names asks which names it knows).
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

from pha import crmstatus

DEFAULT_TIMEOUT = 10.0
"""Seconds a Pacemaker CLI may run; module-wide, used when `Crm` gets none."""

LIFETIMES = ("reboot", "forever")
EXIT_NO_SUCH_OBJECT = 105  # CRM_EX_NOSUCH
EXIT_NO_QUORUM = 106  # CRM_EX_QUORUM
_NOT_SET = "No such device or address"  # strerror(ENXIO) under LC_ALL=C

CRM_MON_ARGV = ("crm_mon", "--one-shot", "--inactive", "--include=all", "--output-as=xml")


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


# --- the bridge ------------------------------------------------------------------
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
        return None if text is None else crmstatus.parse_score(text)

    def set_promotion_score(self, score: crmstatus.Score, resource: Optional[str] = None,
                            node: Optional[str] = None, timeout: Optional[float] = None) -> None:
        """Set the promotion score: an int or INFINITY / -INFINITY."""
        argv = _promotion_argv(resource, node) + [f"--update={crmstatus.format_score(score)}"]
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
                        timeout: Optional[float] = None) -> list[crmstatus.ResourceLocation]:
        """Where a resource (primitive, clone or group id) is active; [] if stopped."""
        argv = ("crm_resource", "--locate", f"--resource={resource}", "--output-as=xml")
        return crmstatus.parse_locate(self.call(argv, timeout).stdout)

    # --- crm_mon -----------------------------------------------------------------
    def status(self, timeout: Optional[float] = None) -> crmstatus.ClusterStatus:
        """The cluster status from crm_mon's XML, parsed."""
        return crmstatus.parse_crm_mon(self.call(CRM_MON_ARGV, timeout).stdout)


def crm_mon(crm: Optional[Crm] = None, timeout: Optional[float] = None) -> crmstatus.ClusterStatus:
    """Run crm_mon (XML, inactive resources included) and parse it."""
    return (crm or Crm()).status(timeout)


def parse_version(text: str) -> Optional[tuple[int, ...]]:
    """The first dotted version in `text` ("Pacemaker 3.0.0", "0.11.5", "2.1.5-a3f44794f94"), or None."""
    import re
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)+)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


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
