"""Where the LVS director's candidate real servers come from.

First match wins (pha4pgsql's parameters keep their meaning):
1. realserver_discovery_conninfo: the primary's pg_stat_replication, asked in-process
   (each standby with the address it connects from and its replay lag), or
   realserver_get_real_servers_script: a command printing names (space or newline between);
2. otherwise the nodes running realserver_dependent_resource, else the names in
   weight_of_realservers, else the partition's nodes, each healthy when
   realserver_check_active_real_server_script NAME prints "t", else when its node
   attribute realserver_dependent_attribute_name fully matches the regex, else always.

A failing source raises SourceFailed: the director then leaves IPVS as it is.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from pha import ocf, ocflog
from pha.lvs.plan import Candidate, name_problem, parse_lag

if TYPE_CHECKING:   # imported lazily, inside the calls
    from pha.crm import Crm

SCRIPT_TIMEOUT = 10.0


class SourceFailed(Exception):
    """The list of real servers could not be obtained; leave IPVS as it is."""


# ---------------------------------------------------------------------- candidates

def from_primary(conninfo: str) -> list[Candidate]:
    """The standbys streaming to the primary now (in-process get_active_slaves)."""
    from pha.discovery import DiscoveryError, active_standbys
    try:
        standbys = active_standbys(conninfo)
    except DiscoveryError as exc:
        raise SourceFailed(f"asking the primary for its standbys failed: {exc}") from None
    return [Candidate(s.name, s.lag_bytes, from_primary=True, client_addr=s.client_addr) for s in standbys]


def from_script(command: str) -> list[Candidate]:
    """The names a script prints (pha4pgsql's realserver_get_real_servers_script)."""
    result = run_script(command, [])
    if result.returncode != 0:
        raise SourceFailed(f"realserver_get_real_servers_script exited {result.returncode}: "
                           f"{result.stderr.strip()[:200]}")
    return [Candidate(name) for name in dict.fromkeys(result.stdout.split())]


def from_pacemaker(params: Mapping[str, ocf.Value], weight_names: Sequence[str],
                   attribute_regex: re.Pattern, want_lag: bool, log: ocflog.Log) -> list[Candidate]:
    """Candidates from Pacemaker (see the module docstring), with their lag attribute when wanted."""
    from pha.crm import CrmError
    crm = _crm()
    try:
        if params["realserver_dependent_resource"]:
            names = [loc.node for loc in crm.locate_resource(str(params["realserver_dependent_resource"]))]
        elif weight_names:
            names = list(weight_names)
        else:
            names = crm.partition_members()
    except CrmError as exc:
        raise SourceFailed(str(exc)) from None
    names = list(dict.fromkeys(names))
    if params["realserver_check_active_real_server_script"]:
        check = str(params["realserver_check_active_real_server_script"])
        healthy = [n for n in names if _run_check(check, n, log)]
    elif params["realserver_dependent_attribute_name"]:
        attribute = str(params["realserver_dependent_attribute_name"])
        healthy = [n for n in names if _matches(crm, attribute, n, attribute_regex, log)]
    else:
        healthy = names
    lag_attribute = str(params["lag_attribute_name"] or "") if want_lag else ""
    return [Candidate(n, _lag(crm, lag_attribute, n) if lag_attribute else None) for n in healthy]


def _crm() -> Crm:
    from pha.crm import Crm
    return Crm()


def run_script(command: str, extra: list[str]) -> subprocess.CompletedProcess:
    """Run a command given as words (split like a shell would, never run by one)."""
    argv = shlex.split(command) + extra
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"{argv[0]} timed out after {SCRIPT_TIMEOUT:g}s") from None
    except OSError as exc:
        raise SourceFailed(f"{argv[0]} could not be run: {exc.strerror or exc}") from None


def _run_check(command: str, name: str, log: ocflog.Log) -> bool:
    if name_problem(name):
        return False        # never hand a hostile name to a command
    try:
        result = run_script(command, [name])
    except SourceFailed as exc:
        log.warning(f"checking {name}: {exc}")
        return False
    return result.returncode == 0 and result.stdout.strip() == "t"


def _matches(crm: Crm, attribute: str, node: str, regex: re.Pattern, log: ocflog.Log) -> bool:
    from pha.crm import CrmError
    try:
        value = crm.get_node_attr(attribute, node=node, lifetime="reboot")
    except CrmError as exc:
        log.warning(f"reading {attribute} of {node}: {exc}")
        return False
    return value is not None and regex.fullmatch(value) is not None


def _lag(crm: Crm, attribute: str, node: str) -> Optional[int]:
    from pha.crm import CrmError
    try:
        return parse_lag(crm.get_node_attr(attribute, node=node, lifetime="reboot"))
    except CrmError:
        return None
