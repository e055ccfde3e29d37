"""Fencing: the fence devices config.ini declares, as pcs stonith commands.

Without fencing, Pacemaker assumes that a node it cannot see is down, so a
primary cut off (or whose corosync died) keeps the writer VIP while another
node is promoted: two writable primaries. pha therefore refuses a config
without fence devices unless it says `fencing=none` on purpose.

The keys (fencing, fence_options, fence_nodeK, fence_password_script,
fence_delay) and their checks are pha.fencekeys'. Each Pacemaker node gets
its own device `fence-<node>` (`pcmk_host_list=<node>`) and fencing level 1
of that node. In a 2-node cluster each side may shoot the other at once; a
static delay on the first node's device lets that node win the race.

Pacemaker 3.0.2 renames the stonith-* cluster options to fencing-*:
`detect_names` asks the installed Pacemaker which names it knows (never its
version number); stonith-* when it cannot tell.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NamedTuple, Sequence

from pha.config import Config
from pha.fencekeys import AGENTS, NONE, node_options

if TYPE_CHECKING:
    from pha.crm import CommandResult

DEVICE_PREFIX = "fence-"
MONITOR_INTERVAL = "60s"
LEVEL = "1"


class FencingError(ValueError):
    """The config's fencing cannot be turned into devices (and why)."""


class OptionNames(NamedTuple):
    """The names the installed Pacemaker gives the fencing cluster options."""

    enabled: str
    timeout: str


STONITH_NAMES = OptionNames("stonith-enabled", "stonith-timeout")
FENCING_NAMES = OptionNames("fencing-enabled", "fencing-timeout")
SCHEDULERD_PATHS = ("/usr/libexec/pacemaker/pacemaker-schedulerd", "/usr/lib/pacemaker/pacemaker-schedulerd")


class Device(NamedTuple):
    """One fence device: it fences `node`."""

    id: str
    agent: str
    node: str
    options: Mapping[str, str]


# --- devices and pcs commands ------------------------------------------------------------------
def device_id(node: str) -> str:
    return DEVICE_PREFIX + node


def require(config: Config) -> str:
    """The config's fencing agent or none; FencingError when it says nothing."""
    agent = config.values.get("fencing")
    if agent is None:
        raise FencingError(
            f"{config.path}: fencing: missing: declare the fence devices (fencing=fence_ipmilan, "
            "fence_node1..N, see `pha gencfg --list-keys`) or write fencing=none on purpose. "
            "Without fencing Pacemaker assumes a node it cannot see is down, and two primaries "
            "can take writes")
    return str(agent)


def enabled(config: Config) -> bool:
    """Whether the config fences (FencingError when it says nothing)."""
    return require(config) != NONE


def devices(config: Config) -> list[Device]:
    """One device per Pacemaker node; empty for fencing=none."""
    require(config)
    return devices_for(config.values, config.cluster_nodes)


def devices_for(values: Mapping[str, object], nodes: Sequence[str]) -> list[Device]:
    """The devices of `nodes` from config.ini's fencing values (none without an agent)."""
    agent = values.get("fencing")
    if agent in (None, NONE):
        return []
    script = values.get("fence_password_script")
    delay = int(values.get("fence_delay") or 0)  # type: ignore[call-overload]
    found = []
    for index, node in enumerate(nodes, 1):
        options = node_options(values, index)
        if script:
            options["password_script"] = str(script)
        if len(nodes) == 2 and index == 1 and delay:
            options["pcmk_delay_base"] = f"{delay}s"
        found.append(Device(device_id(node), str(agent), node, options))
    return found


def device_commands(found: Iterable[Device]) -> list[list[str]]:
    """pcs stonith create of each device, then its node's fencing level."""
    found = list(found)
    commands = [["pcs", "stonith", "create", d.id, d.agent,
                 *(f"{name}={value}" for name, value in d.options.items()), f"pcmk_host_list={d.node}",
                 "op", "monitor", f"interval={MONITOR_INTERVAL}"] for d in found]
    # --force: pcs checks the node against the CIB copy's <nodes>, empty until the node first joined;
    # pha setup has checked that the nodes are the cluster's
    commands += [["pcs", "stonith", "level", "add", LEVEL, d.node, d.id, "--force"] for d in found]
    return commands


def pcs_commands(config: Config) -> list[list[str]]:
    """The config's fence devices and levels as pcs commands (FencingError without a fencing key)."""
    return device_commands(devices(config))


def managed_ids(config: Config) -> tuple[str, ...]:
    """The devices `pha setup` owns: one per Pacemaker node, whether fencing is on or not."""
    return tuple(device_id(node) for node in config.cluster_nodes)


def notes(config: Config) -> list[str]:
    """What the admin must do beside the CIB (the sbd daemon, the password script)."""
    agent = config.values.get("fencing")
    out = []
    rules = AGENTS.get(str(agent))
    if rules and rules.note:
        out.append(f"{agent}: {rules.note}")
    script = config.values.get("fence_password_script")
    if agent not in (None, NONE) and script:
        out.append(f"{script} must exist on every node, owned by root, mode 0700, and print the password")
    return out


# --- the installed Pacemaker's option names ----------------------------------------------------
def known_options(xml_text: str) -> set[str]:
    """The option names in a cluster-options listing (crm_attribute --list-options or daemon metadata)."""
    from xml.etree import ElementTree
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError:
        return set()
    return {el.get("name", "") for el in root.iter("parameter")} - {""}


def names_from(known: Iterable[str]) -> OptionNames:
    known = set(known)
    return FENCING_NAMES if FENCING_NAMES.enabled in known else STONITH_NAMES


def detect_names(run: Callable[[Sequence[str]], "CommandResult"]) -> OptionNames:
    """Ask Pacemaker which option names it knows: crm_attribute --list-options (2.1.8+), else
    the scheduler's metadata; stonith-* when neither answers."""
    attempts = [["crm_attribute", "--list-options=cluster", "--output-as=xml"]]
    attempts += [[path, "metadata"] for path in SCHEDULERD_PATHS]
    for argv in attempts:
        try:
            result = run(argv)
        except (OSError, RuntimeError):     # not installed there, or crm.CrmError
            continue
        if result.returncode == 0:
            known = known_options(result.stdout)
            if known:
                return names_from(known)
    return STONITH_NAMES


# --- status ------------------------------------------------------------------------------------
def cluster_warnings(fencing_enabled: bool, resource_agents: Iterable[str]) -> list[str]:
    """Warnings about a cluster that cannot fence (pha status)."""
    if not fencing_enabled:
        return ["fencing is disabled (fencing-enabled or stonith-enabled=false): Pacemaker assumes a node it cannot see is "
                "down, so a cut-off primary can keep taking writes while another is promoted; declare "
                "fence devices in config.ini and run pha setup"]
    if not any(agent.startswith("stonith:") for agent in resource_agents):
        return ["fencing is enabled but no fence device is configured: a lost node cannot be fenced "
                "and failover waits forever; declare fence devices in config.ini and run pha setup"]
    return []


def delete_command(rsc_id: str) -> list[str]:
    """How `pha setup` deletes one of its resources before rebuilding it (pcs wants stonith for devices)."""
    return ["pcs", "stonith" if rsc_id.startswith(DEVICE_PREFIX) else "resource", "delete", rsc_id]
