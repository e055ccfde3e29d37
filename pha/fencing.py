"""Fencing: the fence devices config.ini declares, as pcs stonith commands.

Without fencing, Pacemaker assumes that a node it cannot see is down, so a
primary cut off (or whose corosync died) keeps the writer VIP while another
node is promoted: two writable primaries. pha therefore refuses a config
without fence devices unless it says `fencing=none` on purpose.

config.ini (keys declared in pha.config, checked here):

    fencing=fence_ipmilan                           # a stock fence agent, or none
    fence_options="username=admin lanplus=1"        # options of every device
    fence_password_script=/etc/pha/fence-password   # root-only script printing the secret
    fence_node1="ip=192.0.2.21"                     # options of the K-th Pacemaker node's device
    fence_delay=10                                  # 2 nodes: static delay on the first node's device

Each Pacemaker node gets its own device `fence-<node>` (`pcmk_host_list=<node>`)
and fencing level 1 of that node. Secrets never reach the CIB: an option that
carries one (password=, secret_key=, ...) is refused; the password comes from
`password_script` or from the agent's own file option (identity_file,
key_file, the cloud agents' credential files). In a 2-node cluster each side
may shoot the other at once; a static delay on the first node's device lets
that node win the race.

Pacemaker 3.0.2 renames the stonith-* cluster options to fencing-*:
`detect_names` asks the installed Pacemaker which names it knows.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NamedTuple, Sequence

if TYPE_CHECKING:
    from pha.config import Config
    from pha.crm import CommandResult

NONE = "none"
AGENT = re.compile(r"fence_[a-z0-9_]+")
OPTION_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The fence-agents library runs password_script through a shell (os.popen): a plain path only.
SCRIPT_PATH = re.compile(r"/[A-Za-z0-9_.+/-]+")
SECRET_OPTION = re.compile(r"passw|secret|token|access_key|api_key|(?:^|_)kg$")
DEVICE_PREFIX = "fence-"
MONITOR_INTERVAL = "60s"
LEVEL = "1"
MANAGED_OPTIONS = ("pcmk_host_list", "pcmk_host_map", "pcmk_delay_base", "password_script")
"""Options pha sets itself: not accepted in fence_options / fence_nodeK."""


class FencingError(ValueError):
    """The config's fencing cannot be turned into devices (and why)."""


class AgentRules(NamedTuple):
    """What a stock agent's device needs: options, and where its secret may come from."""

    required: tuple[str, ...]
    secret_from: tuple[str, ...]   # empty: the agent reads its own credentials file by default
    note: str = ""


_IPMI = AgentRules(("ip",), ("password_script",))
AGENTS: dict[str, AgentRules] = {
    "fence_ipmilan": _IPMI, "fence_ipmilanplus": _IPMI, "fence_idrac": _IPMI, "fence_ilo3": _IPMI,
    "fence_ilo4": _IPMI, "fence_ilo5": _IPMI, "fence_imm": _IPMI,
    "fence_redfish": AgentRules(("ip",), ("password_script",)),
    "fence_sbd": AgentRules(("devices",), (), "every node must run the sbd daemon with a hardware "
                            "watchdog (SBD_WATCHDOG_DEV): `pcs stonith sbd enable`"),
    "fence_virsh": AgentRules(("ip", "plug"), ("password_script", "identity_file")),
    "fence_xvm": AgentRules(("port",), ()),                       # key_file: /etc/cluster/fence_xvm.key
    "fence_aws": AgentRules(("plug",), ()),                       # ~/.aws/credentials or the instance role
    "fence_azure_arm": AgentRules(("plug",), ("password_script", "msi")),
    "fence_gce": AgentRules(("plug",), ()),                       # the service account file or metadata
}


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


# --- config.ini values -------------------------------------------------------------------------
def check_agent(text: str) -> str:
    """`fencing`: a stock fence agent (fence_ipmilan, fence_sbd, ...) or none."""
    if text != NONE and not AGENT.fullmatch(text):
        raise ValueError("is not a fence agent (fence_ipmilan, fence_sbd, fence_virsh, fence_xvm, "
                         "fence_aws, ...) or none")
    return text


def check_options(text: str) -> tuple[tuple[str, str], ...]:
    """`fence_options` / `fence_nodeK`: name=value words, none of them a secret."""
    options = []
    for word in text.split():
        name, sep, value = word.partition("=")
        if not sep or not OPTION_NAME.fullmatch(name):
            raise ValueError(f"{word!r} is not NAME=VALUE")
        if SECRET_OPTION.search(name):
            raise ValueError(f"holds a secret ({name}=): keep it out of the CIB with "
                             "fence_password_script or the agent's own file option")
        if name in MANAGED_OPTIONS:
            raise ValueError(f"{name} is set by pha (fence_password_script, fence_delay, one device per node)")
        if any(c in value for c in "\n\r\t"):
            raise ValueError(f"{name}: must be a single line")
        options.append((name, value))
    return tuple(options)


def check_script(text: str) -> str:
    """`fence_password_script`: an absolute path the fence-agents library can run as it is."""
    if not SCRIPT_PATH.fullmatch(text) or "/../" in text + "/":
        raise ValueError("is not a plain absolute path (letters, digits, _ . + - /): the fence "
                         "agent runs it through a shell")
    return text


def node_options(values: Mapping[str, object], index: int) -> dict[str, str]:
    """The options of the `index`-th (1-based) Pacemaker node's device: common, then its own."""
    options = dict(values.get("fence_options") or ())  # type: ignore[arg-type]
    options.update(dict(values.get(f"fence_node{index}") or ()))  # type: ignore[arg-type]
    return options


def check_together(values: Mapping[str, object], cluster_nodes: Sequence[str],
                   problem: Callable[[str, str], None], warn: Callable[[str, str], None]) -> None:
    """Rules across the fencing keys (config.ini's _check_together calls this)."""
    agent = values.get("fencing")
    per_node = sorted(int(k[len("fence_node"):]) for k in values
                      if k.startswith("fence_node") and k[len("fence_node"):].isdigit())
    for index in per_node:
        if index > len(cluster_nodes):
            problem(f"fence_node{index}", f"there are {len(cluster_nodes)} Pacemaker nodes "
                                          "(node1..nodeN, then othernodes)")
    if agent is None:
        return
    set_keys = [k for k in ("fence_options", "fence_password_script") if values.get(k)]
    set_keys += [f"fence_node{i}" for i in per_node]
    if agent == NONE:
        for key in set_keys:
            warn(key, "is ignored: fencing=none")
        return
    rules = AGENTS.get(str(agent))
    if rules is None:
        return
    for index, node in enumerate(cluster_nodes, 1):
        options = node_options(values, index)
        missing = [name for name in rules.required if name not in options]
        if missing:
            where = f"fence_node{index}" if f"fence_node{index}" in values else "fence_options"
            problem(where, f"{agent} needs {', '.join(n + '=' for n in missing)} for {node}'s device "
                           f"(in fence_node{index} or fence_options)")
        sources = set(options) | ({"password_script"} if values.get("fence_password_script") else set())
        if rules.secret_from and not sources & set(rules.secret_from):
            names = " or ".join("fence_password_script" if s == "password_script" else f"{s}="
                                for s in rules.secret_from)
            problem("fence_password_script", f"{agent} needs its secret from {names}")
            return


# --- devices and pcs commands ------------------------------------------------------------------
def device_id(node: str) -> str:
    return DEVICE_PREFIX + node


def require(config: "Config") -> str:
    """The config's fencing agent or none; FencingError when it says nothing."""
    agent = config.values.get("fencing")
    if agent is None:
        raise FencingError(
            f"{config.path}: fencing: missing: declare the fence devices (fencing=fence_ipmilan, "
            "fence_node1..N, see `pha gencfg --list-keys`) or write fencing=none on purpose. "
            "Without fencing Pacemaker assumes a node it cannot see is down, and two primaries "
            "can take writes")
    return str(agent)


def enabled(config: "Config") -> bool:
    """Whether the config fences (FencingError when it says nothing)."""
    return require(config) != NONE


def devices(config: "Config") -> list[Device]:
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


def pcs_commands(config: "Config") -> list[list[str]]:
    """The config's fence devices and levels as pcs commands (FencingError without a fencing key)."""
    return device_commands(devices(config))


def managed_ids(config: "Config") -> tuple[str, ...]:
    """The devices `pha setup` owns: one per Pacemaker node, whether fencing is on or not."""
    return tuple(device_id(node) for node in config.cluster_nodes)


def notes(config: "Config") -> list[str]:
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
        return ["fencing is disabled (stonith-enabled=false): Pacemaker assumes a node it cannot see is "
                "down, so a cut-off primary can keep taking writes while another is promoted; declare "
                "fence devices in config.ini and run pha setup"]
    if not any(agent.startswith("stonith:") for agent in resource_agents):
        return ["fencing is enabled but no fence device is configured: a lost node cannot be fenced "
                "and failover waits forever; declare fence devices in config.ini and run pha setup"]
    return []


def delete_command(rsc_id: str) -> list[str]:
    """How `pha setup` deletes one of its resources before rebuilding it (pcs wants stonith for devices)."""
    return ["pcs", "stonith" if rsc_id.startswith(DEVICE_PREFIX) else "resource", "delete", rsc_id]
