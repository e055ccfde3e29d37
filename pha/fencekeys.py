"""Fencing's config.ini keys: their values and the rules across them.

config.ini (pha.configschema declares the keys with these checks; pha.fencing
turns the values into devices):

    fencing=fence_ipmilan                           # a stock fence agent, or none
    fence_options="username=admin lanplus=1"        # options of every device
    fence_password_script=/etc/pha/fence-password   # root-only script printing the secret
    fence_node1="ip=192.0.2.21"                     # options of the K-th Pacemaker node's device
    fence_delay=10                                  # 2 nodes: static delay on the first node's device

Secrets never reach the CIB: an option that carries one (password=,
secret_key=, ...) is refused; the password comes from `password_script` or
from the agent's own file option (identity_file, key_file, the cloud agents'
credential files).
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, NamedTuple, Sequence

NONE = "none"
AGENT = re.compile(r"fence_[a-z0-9_]+")
OPTION_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The fence-agents library runs password_script through a shell (os.popen): a plain path only.
SCRIPT_PATH = re.compile(r"/[A-Za-z0-9_.+/-]+")
SECRET_OPTION = re.compile(r"passw|secret|token|access_key|api_key|(?:^|_)kg$")
MANAGED_OPTIONS = ("pcmk_host_list", "pcmk_host_map", "pcmk_delay_base", "password_script")
"""Options pha sets itself: not accepted in fence_options / fence_nodeK."""


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
