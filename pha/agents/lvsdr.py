"""ocf:pha:lvsdr: the LVS direct-routing director for read load balancing.

start turns on ip_forward and expire_nodest_conn and creates the IPVS virtual service
vip:port; every monitor reconciles its real servers with the standbys that are healthy
now; stop removes the service. IPVS is programmed through pha.ipvs (netlink), never
ipvsadm, and a monitor that finds nothing to change sends no netlink write.

Where real servers come from, first match wins (pha4pgsql's parameters keep their meaning):
1. realserver_get_real_servers_script: a command printing names, or
   realserver_discovery_conninfo: pg_stat_replication on the primary, asked in-process
   (the get_active_slaves logic); this covers standbys outside the Pacemaker cluster and
   gives each standby's replay lag.
2. Otherwise the candidates are the nodes running realserver_dependent_resource, else the
   names in weight_of_realservers, else the partition's nodes; a candidate is healthy when
   realserver_check_active_real_server_script NAME prints "t", else when its transient
   node attribute realserver_dependent_attribute_name fully matches the regex
   realserver_dependent_attribute_value, else always.

Beyond pha4pgsql: every name is checked before it is resolved and must land inside
allowed_networks (by default the VIP's subnet); a standby the primary reports counts
only at the address it really connects from, under a name that is that address or
resolves to it. A standby whose replay lag exceeds max_lag is drained to weight 0 and
comes back after its lag stays under half of max_lag for lag_resume_checks monitors;
with inhibit_on_failure a failed real server drops to weight 0 instead of being
deleted. When the source of real servers itself fails (the primary is unreachable, the
script fails), the real servers are left as they are.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Optional

from pha import __version__, ocf
from pha.ipvs import (MAX_WEIGHT, IPVSClient, IPVSError, IPVSUnavailable, ServiceState, VirtualService,
                      plan as ipvs_plan)
from pha.lvs import hosts, sources
from pha.lvs.plan import (MAX_PERSISTENT_TIMEOUT, SCHEDULERS, Candidate, admitted, desired_real_servers,
                          ipv4_problem, lag_step, parse_service_options, parse_weights, weights_by_address)
from pha.lvs.sources import SourceFailed
from pha.lvs.state import drop_state, load_state, save_state, stamp_heartbeat
from pha.values import mask, parse_networks, parse_size


def _check_vip(value: ocf.Value) -> Optional[str]:
    return ipv4_problem(str(value))


def _check_port(value: ocf.Value) -> Optional[str]:
    return None if 0 < int(value) < 65536 else "must be 1-65535"


def _check_weight(value: ocf.Value) -> Optional[str]:
    return None if 0 <= int(value) <= MAX_WEIGHT else f"must be 0-{MAX_WEIGHT}"


def _check_persistence(value: ocf.Value) -> Optional[str]:
    return None if 0 <= int(value) <= MAX_PERSISTENT_TIMEOUT else f"must be 0-{MAX_PERSISTENT_TIMEOUT} seconds"


def _check_size(value: ocf.Value) -> None:
    parse_size(str(value))              # a ValueError names the problem


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
                  longdesc=("Command (split like a shell would, never run by one) printing real-server "
                            "names (space or newline between), e.g. \"get_active_slaves 'host=10.0.0.10 user=monitor'\". "
                            "Overrides the candidate and health settings.")),
        ocf.Param("realserver_check_active_real_server_script", "string", default="",
                  shortdesc="Command checking one candidate",
                  longdesc=("Command run with the candidate's name appended; the candidate is healthy "
                            "when it prints t, e.g. \"check_active_slave 'user=monitor dbname=postgres' -h\".")),
        ocf.Param("realserver_discovery_conninfo", "string", default="",
                  shortdesc="Primary to ask for its standbys (in-process get_active_slaves)",
                  longdesc=("libpq connection string of the primary (e.g. the writer VIP); its streaming "
                            "standbys are the real servers, with their lag. A standby counts only when its "
                            "application_name is a valid name that is, or resolves to (corosync.conf's "
                            "nodelist, then /etc/hosts or DNS), the address it connects from; never over "
                            "a unix socket or loopback. No password here: use a passfile or PGPASSWORD.")),
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
                  longdesc=("Space- or comma-separated IPv4 networks; a real server outside them is skipped. "
                            "Empty = the VIP's subnet: the networks of this node's interfaces that hold "
                            "the VIP's address (LVS-DR reaches real servers on the director's own link). "
                            "0.0.0.0/0 allows any address.")),
        ocf.Param("heartbeat_file", "string", default="",
                  shortdesc="File whose time every action updates",
                  longdesc=("Every action creates this file or updates its modification time (its content "
                            "is never written), for monitoring. It must sit in a directory only root can "
                            "write to (root-owned, not group- or world-writable, as every directory above "
                            "it), e.g. /run/pha/lvsdr.beat; a symlink or a non-regular file there is refused "
                            "and logged.")),
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

# ---------------------------------------------------------------------- configuration

@dataclass
class Config:
    """The parameters, checked and combined."""

    vip: str
    port: int
    scheduler: str
    persistent_timeout: int
    default_weight: int
    weights: dict[str, int]
    networks: list[ipaddress.IPv4Network]     # empty: the VIP's subnet
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
            raise ocf.bad_param("virtual_service_options", p["virtual_service_options"], str(exc))
        warnings.append("virtual_service_options is deprecated: use scheduler and persistent_timeout")
        if not _configured(res, "scheduler"):
            scheduler = str(legacy.get("scheduler", scheduler))
        if not _configured(res, "persistent_timeout"):
            persistence = int(legacy.get("persistent_timeout", persistence))
    try:
        weights = parse_weights(str(p["weight_of_realservers"]), int(p["default_weight"]))
    except ValueError as exc:
        raise ocf.bad_param("weight_of_realservers", p["weight_of_realservers"], str(exc))
    try:
        networks = parse_networks(str(p["allowed_networks"]))
    except ValueError as exc:
        raise ocf.bad_param("allowed_networks", p["allowed_networks"], str(exc))
    try:
        regex = re.compile(str(p["realserver_dependent_attribute_value"]))
    except re.error as exc:
        raise ocf.bad_param("realserver_dependent_attribute_value", p["realserver_dependent_attribute_value"],
                   f"is not a regular expression ({exc})")
    for name in ("realserver_get_real_servers_script", "realserver_check_active_real_server_script"):
        if p[name]:
            _check_command(name, str(p[name]))
    if p["realserver_get_real_servers_script"] and p["realserver_discovery_conninfo"]:
        raise ocf.OCFError(ocf.ERR_CONFIGURED, "set realserver_get_real_servers_script or "
                                               "realserver_discovery_conninfo, not both")
    if p["realserver_discovery_conninfo"]:
        from pha.discovery import DiscoveryError, check_conninfo
        try:
            check_conninfo(str(p["realserver_discovery_conninfo"]))
        except DiscoveryError as exc:
            raise ocf.bad_param("realserver_discovery_conninfo", "...", str(exc))
    if p["heatbeat_file"]:
        warnings.append("heatbeat_file is deprecated: use heartbeat_file")
    max_lag = parse_size(str(p["max_lag"])) if p["max_lag"] else None
    return Config(vip=str(p["vip"]), port=int(p["port"]), scheduler=scheduler, persistent_timeout=persistence,
                  default_weight=int(p["default_weight"]), weights=weights, networks=networks,
                  attribute_regex=regex, max_lag=max_lag, warnings=warnings)


def _check_command(name: str, command: str) -> None:
    """A script parameter splits into words, none of which holds a password."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ocf.bad_param(name, command, f"cannot be split into words ({exc})")
    if not words:
        raise ocf.bad_param(name, command, "is empty")
    if any(mask(word) != word for word in words):
        raise ocf.bad_param(name, "...", "puts a password on a command line: use a passfile or PGPASSWORD")


def config_of(res: ocf.Resource) -> Config:
    return res.cached("config", lambda: build_config(res))


@AGENT.validator
def validate(res: ocf.Resource) -> None:
    config = config_of(res)
    if res.action in ("start", "validate-all"):
        for warning in config.warnings:
            res.log.warning(warning)


# ---------------------------------------------------------------------- real servers

def healthy_candidates(res: ocf.Resource) -> list[Candidate]:
    """The real servers that are healthy now, by name (see pha.lvs.sources)."""
    p = res.params
    if p["realserver_discovery_conninfo"]:
        return sources.from_primary(str(p["realserver_discovery_conninfo"]))
    if p["realserver_get_real_servers_script"]:
        return sources.from_script(str(p["realserver_get_real_servers_script"]))
    config = config_of(res)
    return sources.from_pacemaker(p, list(config.weights), config.attribute_regex,
                                  config.max_lag is not None, res.log)


def allowed_networks(config: Config) -> list[ipaddress.IPv4Network]:
    """allowed_networks, or else the VIP's subnet (the networks here that hold the VIP)."""
    if config.networks:
        return config.networks
    from pha import net
    try:
        found = net.networks_holding(config.vip)
    except net.NetError as exc:
        raise SourceFailed(f"cannot read this node's networks: {exc}") from None
    if not found:
        raise SourceFailed(f"no network on this node holds vip {config.vip}: set allowed_networks")
    return found


# ---------------------------------------------------------------------- IPVS

def _client() -> IPVSClient:
    try:
        return IPVSClient()
    except IPVSUnavailable as exc:
        raise ocf.OCFError(ocf.ERR_INSTALLED, str(exc)) from None
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


def _read(client: IPVSClient, service: VirtualService) -> Optional[ServiceState]:
    try:
        return client.read(service)
    except IPVSError as exc:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(exc)) from None


def virtual_service(config: Config) -> VirtualService:
    return VirtualService(config.vip, config.port, "tcp", config.scheduler, config.persistent_timeout)


def reconcile(res: ocf.Resource, client: IPVSClient, current: Optional[ServiceState]) -> None:
    """Program the real servers that are healthy now (the heart of monitor)."""
    config = config_of(res)
    service = virtual_service(config)
    current_servers = current.real_servers if current is not None else ()
    try:
        candidates = healthy_candidates(res)
        networks = allowed_networks(config)
    except SourceFailed as exc:
        res.log.warning(f"real servers left as they are: {exc}")
        _apply(res, client, ServiceState(service, current_servers), current)
        return
    resolve = hosts.local_resolver()
    healthy, skipped = admitted(candidates, networks, resolve)
    for problem in skipped:
        res.log.warning(f"real server skipped: {problem}")
    servers = desired_real_servers(healthy, config.weights, weights_by_address(config.weights, resolve),
                                   config.default_weight, config.port, _drained(res, healthy),
                                   current_servers, bool(res.params["inhibit_on_failure"]))
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
    changes = ipvs_plan(desired, current)
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
