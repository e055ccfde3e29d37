"""ocf:pha:lvsdr: the LVS direct-routing director for read load balancing.

start turns on ip_forward and expire_nodest_conn and creates the IPVS virtual service
vip:port; every monitor reconciles its real servers with the standbys that are healthy
now; stop removes the service. IPVS is programmed through pha.ipvs (netlink), never
ipvsadm, and a monitor that finds nothing to change sends no netlink write.

Where real servers come from, first match wins (pha4pgsql's parameters keep their meaning):
1. realserver_get_real_servers_script: a command printing space-separated names, or
   realserver_discovery_conninfo: pg_stat_replication on the primary, asked in-process
   (the get_active_slaves logic); this covers standbys outside the Pacemaker cluster and
   gives each standby's replay lag.
2. Otherwise the candidates are the nodes running realserver_dependent_resource, else the
   names in weight_of_realservers, else the partition's nodes; a candidate is healthy when
   realserver_check_active_real_server_script NAME prints "t", else when its transient
   node attribute realserver_dependent_attribute_name fully matches the regex
   realserver_dependent_attribute_value, else always.

Beyond pha4pgsql: every name is resolved and validated before it reaches IPVS (a literal
IPv4 address or a hostname that resolves to one, optionally inside allowed_networks;
anything else is logged and skipped); a standby whose replay lag exceeds max_lag is
drained to weight 0 and comes back after its lag stays under half of max_lag for
lag_resume_checks monitors; with inhibit_on_failure a failed real server drops to weight
0 instead of being deleted. When the source of real servers itself fails (the primary
is unreachable, the script fails), the real servers are left as they are.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from pha import __version__, ocf

if TYPE_CHECKING:   # pha.ipvs and pha.crm are imported lazily, inside the actions
    from pha.crm import Crm
    from pha.ipvs import IPVSClient, RealServer, ServiceState, VirtualService

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")
DEFAULT_PERSISTENT_TIMEOUT = 300           # ipvsadm's default for a bare -p
MAX_PERSISTENT_TIMEOUT = 31536000
MAX_WEIGHT = 65535
SCRIPT_TIMEOUT = 10.0
STATE_DIR = "/run/pha"
HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
SIZE = re.compile(r"(\d+)\s*(B|kB|KB|MB|GB|TB)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
PASSWORD_IN_WORD = re.compile(r"(?:^|\s)password\s*=|://[^/@\s]*:[^/@\s]*@")

Resolver = Callable[[str], list[str]]


# ---------------------------------------------------------------------- pure parsing

def ipv4_problem(value: str) -> Optional[str]:
    """Why `value` cannot be a service or real-server address, or None."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "is not an IPv4 address"
    if ip.version != 4:
        return "is not an IPv4 address"
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local \
            or ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "is not a unicast host address"
    return None


def parse_size(text: str) -> int:
    """Bytes from "16MB", "512kB", "1048576" (1024-based, PostgreSQL style)."""
    match = SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 16MB, 512kB, 1048576)")
    return int(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()]


def parse_weights(text: str, default_weight: int) -> dict[str, int]:
    """weight_of_realservers "node1,2 node2,1 10.0.0.4" -> {name: weight}; no weight = default."""
    weights: dict[str, int] = {}
    for item in text.split():
        name, sep, weight_text = item.partition(",")
        problem = name_problem(name)
        if problem:
            raise ValueError(f"{name!r} {problem}")
        if name in weights:
            raise ValueError(f"{name!r} is listed twice")
        if sep and weight_text:
            if not weight_text.isdigit() or int(weight_text) > MAX_WEIGHT:
                raise ValueError(f"weight {weight_text!r} of {name} is not an integer 0-{MAX_WEIGHT}")
            weights[name] = int(weight_text)
        elif sep:
            raise ValueError(f"{item!r} has a comma but no weight")
        else:
            weights[name] = default_weight
    return weights


def parse_service_options(text: str) -> dict[str, object]:
    """The deprecated virtual_service_options ("-s rr -p 300") as scheduler / persistent_timeout.

    Understands ipvsadm's -s/--scheduler NAME and -p/--persistent [SECONDS] (300 when
    omitted), also written -sNAME, -pSECONDS, --scheduler=NAME, --persistent=SECONDS.
    """
    try:
        raw = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words: {exc}") from None
    words: list[str] = []
    for word in raw:
        if word.startswith("--") and "=" in word:
            words += word.split("=", 1)
        elif re.fullmatch(r"-[sp].+", word):
            words += [word[:2], word[2:]]
        else:
            words.append(word)
    found: dict[str, object] = {}
    index = 0
    while index < len(words):
        option = words[index]
        index += 1
        if option in ("-s", "--scheduler"):
            if index >= len(words):
                raise ValueError(f"{option} needs a scheduler name")
            scheduler = words[index]
            index += 1
            if scheduler not in SCHEDULERS:
                raise ValueError(f"scheduler {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
            found["scheduler"] = scheduler
        elif option in ("-p", "--persistent"):
            timeout = str(DEFAULT_PERSISTENT_TIMEOUT)
            if index < len(words) and not words[index].startswith("-"):
                timeout = words[index]
                index += 1
            if not timeout.isdigit() or not 0 < int(timeout) <= MAX_PERSISTENT_TIMEOUT:
                raise ValueError(f"persistence timeout {timeout!r} is not 1-{MAX_PERSISTENT_TIMEOUT} seconds")
            found["persistent_timeout"] = int(timeout)
        else:
            raise ValueError(f"option {option!r} is not supported (only -s SCHEDULER and -p [TIMEOUT])")
    return found


def parse_networks(text: str) -> list[ipaddress.IPv4Network]:
    """allowed_networks "10.0.0.0/24, 192.168.1.0/24" -> networks."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a network (e.g. 10.0.0.0/24)") from None
        if network.version != 4:
            raise ValueError(f"{item!r} is not an IPv4 network")
        networks.append(network)
    return networks


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot be a real server's name (syntax only, nothing resolved), or None."""
    if not name:
        return "is empty"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return ipv4_problem(name)
    if not HOSTNAME.fullmatch(name) or name.replace(".", "").isdigit():
        return "is neither an IPv4 address nor a valid hostname"
    return None


def system_resolver(name: str) -> list[str]:
    """IPv4 addresses of a hostname through the system's resolver (/etc/hosts, DNS)."""
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def resolve_real_server(name: str, networks: list[ipaddress.IPv4Network],
                        resolver: Resolver = system_resolver) -> tuple[Optional[str], str]:
    """(address, "") for a usable real server, else (None, why not)."""
    problem = name_problem(name)
    if problem:
        return None, f"{name!r} {problem}"
    try:
        address = str(ipaddress.IPv4Address(name))
    except ValueError:
        try:
            found = resolver(name)
        except (OSError, UnicodeError) as exc:
            return None, f"{name!r} does not resolve ({exc})"
        if not found:
            return None, f"{name!r} does not resolve to an IPv4 address"
        address = found[0]
        problem = ipv4_problem(address)
        if problem:
            return None, f"{name!r} resolves to {address}, which {problem}"
    if networks and not any(ipaddress.IPv4Address(address) in net for net in networks):
        return None, f"{name!r} ({address}) is outside allowed_networks"
    return address, ""


def lag_step(drained: dict[str, int], lags: dict[str, Optional[int]], max_lag: int,
             resume_checks: int) -> dict[str, int]:
    """Next drain state: name -> monitors in a row with lag <= max_lag/2 while drained.

    A standby is drained when its lag exceeds max_lag, and restored once its lag has stayed
    at or under half of max_lag for `resume_checks` monitors (hysteresis). Standbys no
    longer among the candidates are forgotten; an unknown lag keeps the current state.
    """
    following: dict[str, int] = {}
    for name, lag in lags.items():
        if name in drained:
            if lag is None:
                following[name] = drained[name]
            elif lag <= max_lag // 2:
                if drained[name] + 1 < resume_checks:
                    following[name] = drained[name] + 1
            else:
                following[name] = 0
        elif lag is not None and lag > max_lag:
            following[name] = 0
    return following


@dataclass(frozen=True)
class Candidate:
    """A healthy real server by name, with its replay lag in bytes when known."""

    name: str
    lag_bytes: Optional[int] = None


def desired_real_servers(healthy: list[tuple[Candidate, str]], weights: dict[str, int],
                         weights_by_address: dict[str, int], default_weight: int, port: int,
                         drained: Iterable[str], current: Iterable[RealServer],
                         inhibit_on_failure: bool) -> list[RealServer]:
    """The real servers to program: one per address, lag-drained ones at weight 0, and with
    inhibit_on_failure every other current one at weight 0 instead of deleted."""
    from pha.ipvs import RealServer
    drained = set(drained)
    wanted: dict[str, RealServer] = {}
    for candidate, address in healthy:
        if address in wanted:
            continue
        weight = weights.get(candidate.name, weights_by_address.get(address, default_weight))
        if candidate.name in drained:
            weight = 0
        wanted[address] = RealServer(address, port, weight)
    if inhibit_on_failure:
        for rs in current:
            if rs.address not in wanted and rs.port == port:
                wanted[rs.address] = RealServer(rs.address, port, 0)
    return list(wanted.values())


# ---------------------------------------------------------------------- declaration

def _check_vip(value: ocf.Value) -> Optional[str]:
    return ipv4_problem(str(value))


def _check_port(value: ocf.Value) -> Optional[str]:
    return None if 0 < int(value) < 65536 else "must be 1-65535"


def _check_weight(value: ocf.Value) -> Optional[str]:
    return None if 0 <= int(value) <= MAX_WEIGHT else f"must be 0-{MAX_WEIGHT}"


def _check_persistence(value: ocf.Value) -> Optional[str]:
    return None if 0 <= int(value) <= MAX_PERSISTENT_TIMEOUT else f"must be 0-{MAX_PERSISTENT_TIMEOUT} seconds"


def _check_size(value: ocf.Value) -> Optional[str]:
    try:
        parse_size(str(value))
    except ValueError:
        return "is not a size (e.g. 16MB, 512kB, 1048576)"
    return None


AGENT = ocf.Agent(
    name="lvsdr",
    version=__version__,
    shortdesc="LVS direct-routing director (IPVS through netlink)",
    longdesc=__doc__.split("\n\n", 1)[1].strip(),
    params=[
        ocf.Param("vip", "string", required=True, unique_group="vip", check=_check_vip,
                  shortdesc="Virtual IP of the virtual service",
                  longdesc="IPv4 address clients connect to (the reader VIP)."),
        ocf.Param("port", "integer", default=5432, check=_check_port,
                  shortdesc="Port of the virtual service",
                  longdesc="TCP port of the virtual service; real servers listen on the same port."),
        ocf.Param("scheduler", "select", options=SCHEDULERS, default="rr",
                  shortdesc="IPVS scheduler",
                  longdesc="The IPVS scheduling algorithm, e.g. rr, wrr, lc, wlc."),
        ocf.Param("persistent_timeout", "integer", default=0, check=_check_persistence,
                  shortdesc="Persistence timeout (seconds)",
                  longdesc="Send a client to the same real server for this many seconds; 0 = no persistence."),
        ocf.Param("virtual_service_options", "string", deprecated=True,
                  replaced_with=("scheduler", "persistent_timeout"),
                  shortdesc="ipvsadm options of the service (deprecated)",
                  longdesc=("pha4pgsql's ipvsadm options, e.g. \"-s rr -p 300\". Only -s and -p are "
                            "understood; scheduler and persistent_timeout, when set, take precedence.")),
        ocf.Param("default_weight", "integer", default=1, check=_check_weight,
                  shortdesc="Weight of real servers without their own",
                  longdesc="Weight of a real server that weight_of_realservers does not give one."),
        ocf.Param("weight_of_realservers", "string", default="",
                  shortdesc="Real servers and their weights",
                  longdesc=("\"node1,2 node2,1 10.0.0.4\": weight per real server (a name without "
                            "weight gets default_weight). Also the candidate list when "
                            "realserver_dependent_resource is empty.")),
        ocf.Param("realserver_dependent_resource", "string", default="",
                  shortdesc="Resource whose nodes are candidate real servers",
                  longdesc="A resource (e.g. the lvsdr-realsvr clone); the nodes running it are the candidates."),
        ocf.Param("realserver_dependent_attribute_name", "string", default="",
                  shortdesc="Node attribute that makes a candidate healthy",
                  longdesc=("Transient node attribute checked against realserver_dependent_attribute_value, "
                            "e.g. pgsql-status (published by ocf:pha:pgsql); empty = no check.")),
        ocf.Param("realserver_dependent_attribute_value", "string", default="HS:sync|HS:potential|HS:async",
                  shortdesc="Regular expression the attribute must match",
                  longdesc="Extended regular expression matched against the whole attribute value."),
        ocf.Param("realserver_get_real_servers_script", "string", default="",
                  shortdesc="Command printing the real servers",
                  longdesc=("Command (split like a shell would, never run by one) printing space-separated "
                            "real-server names, e.g. \"get_active_slaves 'host=10.0.0.10 user=monitor'\". "
                            "Overrides the candidate and health settings.")),
        ocf.Param("realserver_check_active_real_server_script", "string", default="",
                  shortdesc="Command checking one candidate",
                  longdesc=("Command run with the candidate's name appended; the candidate is healthy "
                            "when it prints t, e.g. \"check_active_slave 'user=monitor dbname=postgres' -h\".")),
        ocf.Param("realserver_discovery_conninfo", "string", default="",
                  shortdesc="Primary to ask for its standbys (in-process get_active_slaves)",
                  longdesc=("libpq connection string of the primary (e.g. the writer VIP); its streaming "
                            "standbys, named by application_name, are the real servers, with their lag. "
                            "No password here: use a passfile or PGPASSWORD.")),
        ocf.Param("max_lag", "string", default="", check=_check_size,
                  shortdesc="Replay lag that drains a standby",
                  longdesc=("A standby lagging more than this (e.g. 16MB) goes to weight 0; its sessions "
                            "drain. Empty = never. Lag comes from realserver_discovery_conninfo or from "
                            "the node attribute lag_attribute_name.")),
        ocf.Param("lag_resume_checks", "integer", default=2,
                  check=lambda v: None if 1 <= int(v) <= 100 else "must be 1-100",
                  shortdesc="Monitors under half of max_lag before a drained standby returns",
                  longdesc="Hysteresis of lag draining."),
        ocf.Param("lag_attribute_name", "string", default="",
                  shortdesc="Node attribute holding a standby's replay lag in bytes",
                  longdesc="Used for lag when the real servers come from Pacemaker."),
        ocf.Param("inhibit_on_failure", "boolean", default=False, reloadable=True,
                  shortdesc="Weight 0 instead of delete for failed real servers",
                  longdesc="Keep a failed real server with weight 0 rather than deleting it."),
        ocf.Param("allowed_networks", "string", default="",
                  shortdesc="Networks real servers must be in",
                  longdesc="Space- or comma-separated IPv4 networks; a real server outside them is skipped."),
        ocf.Param("heartbeat_file", "string", default="",
                  shortdesc="File stamped with the time of every action",
                  longdesc="Seconds since the epoch are written to this file on every action, for monitoring."),
        ocf.Param("heatbeat_file", "string", deprecated=True, replaced_with=("heartbeat_file",),
                  shortdesc="pha4pgsql's spelling of heartbeat_file (deprecated)"),
    ],
    actions=[
        ocf.Action("start", timeout=20),
        ocf.Action("stop", timeout=20),
        ocf.Action("monitor", timeout=20, interval=3, depth=0),
        ocf.Action("reload-agent", timeout=20),
        ocf.Action("meta-data", timeout=5),
        ocf.Action("validate-all", timeout=20),
    ],
)


@dataclass
class Config:
    """The parameters, checked and combined."""

    vip: str
    port: int
    scheduler: str
    persistent_timeout: int
    default_weight: int
    weights: dict[str, int]
    networks: list[ipaddress.IPv4Network]
    attribute_regex: re.Pattern
    max_lag: Optional[int]
    warnings: list[str] = field(default_factory=list)


def _configured(res: ocf.Resource, name: str) -> bool:
    return bool(res.env.get(f"OCF_RESKEY_{name}"))


def build_config(res: ocf.Resource) -> Config:
    """Config from the parameters; OCFError(ERR_CONFIGURED) names the culprit."""
    p = res.params
    warnings = []
    scheduler, persistence = str(p["scheduler"]), int(p["persistent_timeout"])
    if p["virtual_service_options"]:
        try:
            legacy = parse_service_options(str(p["virtual_service_options"]))
        except ValueError as exc:
            raise _bad("virtual_service_options", p["virtual_service_options"], str(exc))
        warnings.append("virtual_service_options is deprecated: use scheduler and persistent_timeout")
        if not _configured(res, "scheduler"):
            scheduler = str(legacy.get("scheduler", scheduler))
        if not _configured(res, "persistent_timeout"):
            persistence = int(legacy.get("persistent_timeout", persistence))
    try:
        weights = parse_weights(str(p["weight_of_realservers"]), int(p["default_weight"]))
    except ValueError as exc:
        raise _bad("weight_of_realservers", p["weight_of_realservers"], str(exc))
    try:
        networks = parse_networks(str(p["allowed_networks"]))
    except ValueError as exc:
        raise _bad("allowed_networks", p["allowed_networks"], str(exc))
    try:
        regex = re.compile(str(p["realserver_dependent_attribute_value"]))
    except re.error as exc:
        raise _bad("realserver_dependent_attribute_value", p["realserver_dependent_attribute_value"],
                   f"is not a regular expression ({exc})")
    for name in ("realserver_get_real_servers_script", "realserver_check_active_real_server_script"):
        if p[name]:
            try:
                words = shlex.split(str(p[name]))
            except ValueError as exc:
                raise _bad(name, p[name], f"cannot be split into words ({exc})")
            if not words:
                raise _bad(name, p[name], "is empty")
            if any(PASSWORD_IN_WORD.search(word) for word in words):
                raise _bad(name, "...", "puts a password on a command line: use a passfile or PGPASSWORD")
    if p["realserver_get_real_servers_script"] and p["realserver_discovery_conninfo"]:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, "set realserver_get_real_servers_script or "
                                               "realserver_discovery_conninfo, not both")
    if p["realserver_discovery_conninfo"]:
        from pha.discovery import DiscoveryError, check_conninfo
        try:
            check_conninfo(str(p["realserver_discovery_conninfo"]))
        except DiscoveryError as exc:
            raise _bad("realserver_discovery_conninfo", "...", str(exc))
    if p["heatbeat_file"]:
        warnings.append("heatbeat_file is deprecated: use heartbeat_file")
    max_lag = parse_size(str(p["max_lag"])) if p["max_lag"] else None
    return Config(vip=str(p["vip"]), port=int(p["port"]), scheduler=scheduler, persistent_timeout=persistence,
                  default_weight=int(p["default_weight"]), weights=weights, networks=networks,
                  attribute_regex=regex, max_lag=max_lag, warnings=warnings)


def _bad(name: str, value: object, problem: str) -> ocf.OCFError:
    """Like the runtime's own errors: no quotes (Pacemaker 2.1 escapes them twice)."""
    return ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter {name}={value} {problem}")


def config_of(res: ocf.Resource) -> Config:
    return res.cached("config", lambda: build_config(res))


@AGENT.validator
def validate(res: ocf.Resource) -> None:
    config = config_of(res)
    if res.action in ("start", "validate-all"):
        for warning in config.warnings:
            res.log.warning(warning)


# ---------------------------------------------------------------------- real servers

class SourceFailed(Exception):
    """The list of real servers could not be obtained; leave IPVS as it is."""


def _run_script(command: str, extra: list[str]) -> subprocess.CompletedProcess:
    argv = shlex.split(command) + extra
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{argv[0]} timed out after {SCRIPT_TIMEOUT:g}s") from None
    except OSError as exc:
        raise SourceFailed(f"{argv[0]} could not be run: {exc.strerror or exc}") from None


def _crm() -> Crm:
    from pha.crm import Crm
    return Crm()


def healthy_candidates(res: ocf.Resource) -> list[Candidate]:
    """The real servers that are healthy now, by name (see the module docstring)."""
    p = res.params
    if p["realserver_discovery_conninfo"]:
        from pha.discovery import DiscoveryError, active_standbys
        try:
            standbys = active_standbys(str(p["realserver_discovery_conninfo"]))
        except DiscoveryError as exc:
            raise SourceFailed(f"asking the primary for its standbys failed: {exc}") from None
        return [Candidate(s.name, s.lag_bytes) for s in standbys]
    if p["realserver_get_real_servers_script"]:
        result = _run_script(str(p["realserver_get_real_servers_script"]), [])
        if result.returncode != 0:
            raise SourceFailed(f"realserver_get_real_servers_script exited {result.returncode}: "
                               f"{result.stderr.strip()[:200]}")
        return [Candidate(name) for name in dict.fromkeys(result.stdout.split())]
    from pha.crm import CrmError
    crm = _crm()
    try:
        if p["realserver_dependent_resource"]:
            names = [loc.node for loc in crm.locate_resource(str(p["realserver_dependent_resource"]))]
        elif config_of(res).weights:
            names = list(config_of(res).weights)
        else:
            names = crm.partition_members()
    except CrmError as exc:
        raise SourceFailed(str(exc)) from None
    names = list(dict.fromkeys(names))
    if p["realserver_check_active_real_server_script"]:
        check = str(p["realserver_check_active_real_server_script"])
        healthy = [n for n in names if _run_check(res, check, n)]
    elif p["realserver_dependent_attribute_name"]:
        healthy = [n for n in names if _attribute_matches(res, crm, n)]
    else:
        healthy = names
    return [Candidate(n, _attribute_lag(res, crm, n)) for n in healthy]


def _run_check(res: ocf.Resource, command: str, name: str) -> bool:
    if name_problem(name):
        return False        # never hand a hostile name to a command
    try:
        result = _run_script(command, [name])
    except SourceFailed as exc:
        res.log.warning(f"checking {name}: {exc}")
        return False
    return result.returncode == 0 and result.stdout.strip() == "t"


def _attribute_matches(res: ocf.Resource, crm: Crm, node: str) -> bool:
    from pha.crm import CrmError
    name = str(res.params["realserver_dependent_attribute_name"])
    try:
        value = crm.get_node_attr(name, node=node, lifetime="reboot")
    except CrmError as exc:
        res.log.warning(f"reading {name} of {node}: {exc}")
        return False
    return value is not None and config_of(res).attribute_regex.fullmatch(value) is not None


def _attribute_lag(res: ocf.Resource, crm: Crm, node: str) -> Optional[int]:
    from pha.crm import CrmError
    name = str(res.params["lag_attribute_name"])
    if not name or config_of(res).max_lag is None:
        return None
    try:
        value = crm.get_node_attr(name, node=node, lifetime="reboot")
    except CrmError:
        return None
    return int(value) if value and value.isdigit() else None


# ---------------------------------------------------------------------- state

def state_path(res: ocf.Resource) -> str:
    """The instance's small state file (lag drain state), in the node's runtime dir."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", res.instance)
    return os.path.join(res.env.get("PHA_STATE_DIR", STATE_DIR), f"lvsdr.{safe}.json")


def load_state(res: ocf.Resource) -> dict:
    """The state file's content; a missing or damaged file reads as a fresh state."""
    try:
        with open(state_path(res)) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    drained = state.get("drained") if isinstance(state, dict) else None
    if not isinstance(drained, dict) or not all(isinstance(v, int) for v in drained.values()):
        return {}
    return {"drained": {str(name): count for name, count in drained.items()}}


def save_state(res: ocf.Resource, state: dict) -> None:
    """Write the state file atomically, mode 0600 in a 0700 directory."""
    path = state_path(res)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def drop_state(res: ocf.Resource) -> None:
    try:
        os.unlink(state_path(res))
    except FileNotFoundError:
        pass


def stamp_heartbeat(res: ocf.Resource) -> None:
    path = res.params["heartbeat_file"] or res.params["heatbeat_file"]
    if not path:
        return
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{int(time.time())}\n")
    except OSError as exc:
        res.log.warning(f"cannot write heartbeat_file {path}: {exc.strerror or exc}")


# ---------------------------------------------------------------------- IPVS

def _client() -> IPVSClient:
    from pha.ipvs import IPVSClient, IPVSError, IPVSUnavailable
    try:
        return IPVSClient()
    except IPVSUnavailable as exc:
        raise ocf.OCFError(ocf.ERR_INSTALLED, str(exc)) from None
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


def _read(client: IPVSClient, service: VirtualService) -> Optional[ServiceState]:
    from pha.ipvs import IPVSError
    try:
        return client.read(service)
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


def virtual_service(config: Config) -> VirtualService:
    from pha.ipvs import VirtualService
    return VirtualService(config.vip, config.port, "tcp", config.scheduler, config.persistent_timeout)


def reconcile(res: ocf.Resource, client: IPVSClient, current: Optional[ServiceState]) -> None:
    """Program the real servers that are healthy now (the heart of monitor)."""
    from pha.ipvs import ServiceState
    config = config_of(res)
    service = virtual_service(config)
    current_servers = current.real_servers if current is not None else ()
    try:
        candidates = healthy_candidates(res)
    except SourceFailed as exc:
        res.log.warning(f"real servers left as they are: {exc}")
        _apply(res, client, ServiceState(service, current_servers), current)
        return
    healthy = []
    for candidate in candidates:
        address, problem = resolve_real_server(candidate.name, config.networks)
        if address is None:
            res.log.warning(f"real server skipped: {problem}")
        else:
            healthy.append((candidate, address))
    weights_by_address: dict[str, int] = {}
    for name, weight in config.weights.items():
        address, _ = resolve_real_server(name, config.networks)
        if address is not None:
            weights_by_address.setdefault(address, weight)
    servers = desired_real_servers(healthy, config.weights, weights_by_address, config.default_weight,
                                   config.port, _drained(res, healthy), current_servers,
                                   bool(res.params["inhibit_on_failure"]))
    _apply(res, client, ServiceState(service, tuple(servers)), current)


def _drained(res: ocf.Resource, healthy: list[tuple[Candidate, str]]) -> list[str]:
    """Names of the standbys drained for lag now; the drain state lives in the state file."""
    max_lag = config_of(res).max_lag
    if max_lag is None:
        return []
    before = load_state(res).get("drained", {})
    lags = {candidate.name: candidate.lag_bytes for candidate, _ in healthy}
    after = lag_step(before, lags, max_lag, int(res.params["lag_resume_checks"]))
    for name in after.keys() - before.keys():
        res.log.info(f"draining {name}: replay lag {lags[name]} bytes > max_lag {max_lag}")
    for name in before.keys() - after.keys():
        if name in lags:
            res.log.info(f"{name} is back: replay lag {lags[name]} bytes")
    if after != before:
        save_state(res, {"drained": after})
    return list(after)


def _apply(res: ocf.Resource, client: IPVSClient, desired: ServiceState,
           current: Optional[ServiceState]) -> None:
    from pha.ipvs import IPVSError, plan
    changes = plan(desired, current)
    for change in changes:
        res.log.info(str(change))
    try:
        client.apply(changes)
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


def _sysctl(name: str, value: str) -> None:
    from pha import net
    try:
        if net.sysctl_get(name) != value:
            net.sysctl_set(name, value)
    except OSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, f"cannot set {name}={value}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------- actions

@AGENT.handler("start")
def start(res: ocf.Resource) -> int:
    stamp_heartbeat(res)
    client = _client()
    try:
        _sysctl("net.ipv4.ip_forward", "1")
        _sysctl("net.ipv4.vs.expire_nodest_conn", "1")
        service = virtual_service(config_of(res))
        reconcile(res, client, _read(client, service))
        if _read(client, service) is None:
            raise ocf.OCFError(ocf.ERR_GENERIC, f"virtual service {service} is missing after start")
        res.log.info(f"virtual service {service} ({service.scheduler}) started")
    finally:
        client.close()
    return ocf.SUCCESS


@AGENT.handler("monitor")
def monitor(res: ocf.Resource) -> int:
    stamp_heartbeat(res)
    client = _client()
    try:
        service = virtual_service(config_of(res))
        current = _read(client, service)
        if current is None:
            (res.log.info if res.is_probe else res.log.error)(f"virtual service {service} does not exist")
            return ocf.NOT_RUNNING
        if not res.is_probe:
            reconcile(res, client, current)
    finally:
        client.close()
    return ocf.SUCCESS


@AGENT.handler("stop")
def stop(res: ocf.Resource) -> int:
    from pha.ipvs import IPVSError, VirtualService
    stamp_heartbeat(res)
    drop_state(res)
    service = VirtualService(str(res.params["vip"]), int(res.params["port"]))
    try:
        client = _client()
    except ocf.OCFError as exc:
        if exc.rc == ocf.ERR_INSTALLED:
            return ocf.SUCCESS      # no IPVS: nothing can be running
        raise
    try:
        if client.remove(service):
            res.log.info(f"virtual service {service} removed")
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None
    finally:
        client.close()
    return ocf.SUCCESS


@AGENT.handler("reload-agent")
def reload_agent(res: ocf.Resource) -> int:
    """Reloadable parameters take effect at the next monitor."""
    return ocf.SUCCESS
