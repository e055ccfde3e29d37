"""From config.ini to a running configuration: `pha gencfg` and `pha setup`.

`pcs_commands(config)` is pure: the pcs command lines of the config's
template, built on pha.cluster (the pgsql clone, writer and reader VIPs) plus
what the templates add:

- dual: no-quorum-policy=ignore, and the lock (`pha distlock`) required for
  promotion, since two nodes cannot tell quorum apart from a split;
- muti: N nodes, no-quorum-policy=stop;
- muti_with_lvs: muti plus the LVS director `ocf:pha:lvsdr` with the reader
  VIP (so on a streaming standby) and the real-server clone
  `ocf:pha:lvsdr-realsvr` on the Unpromoted nodes;
- three_plus_x: 3 Pacemaker nodes; the readers outside the cluster stream from
  the writer VIP and the director finds every streaming standby in the
  primary's pg_stat_replication.

`render_script` writes them as the shell script `pha gencfg` prints: pcs calls
against a copy of the CIB (`pcs -f`), pushed as one diff. `setup` applies the
same commands on a cluster node, idempotently: the resources pha owns are
rebuilt from scratch in a copy of the live CIB, and the copy is pushed only
when it differs from the live one (`crm_diff`), so a second run changes
nothing. Constraints that `crm_resource --move/--ban` made on pha's resources
(cli-*) are kept.
"""
from __future__ import annotations

import os
import pwd
import shlex
import time
from typing import Callable, NamedTuple, Optional, Sequence

from pha import __version__, cluster, crm, crmstatus, fencing, files, values
from pha.cib import existing_acls, existing_primitives, kept_constraints, patch_changes
from pha.cibedit import CibEdit
from pha.config import Config
from pha.pgsql import names

LVS_ID = "lvsdr"
REALSVR_ID = "lvsdr-realsvr"
REALSVR_CLONE = f"{REALSVR_ID}-clone"
STREAMING_STANDBY_REGEX = "|".join(names.STREAMING_STANDBY_STATUSES)
HEALTH_ROLE = "pha-health-read"      # the ACL role of `pha health`'s user: read the CIB, nothing else
SCRIPT_CIB = "pha-cib.xml"
SCRIPT_ORIGINAL = "pha-cib.orig.xml"
WORKDIR_PREFIX = "/tmp/pha-setup."
PUSH_TIMEOUT = 120.0
DC_WAIT = 60.0                       # seconds setup waits for a DC (a cluster just started elects one)

Progress = Callable[[str], None]


class SetupError(RuntimeError):
    """The cluster cannot be configured as config.ini says (and why)."""


# --- the commands (pure) ----------------------------------------------------------
def lock_command(config: Config, action: str) -> str:
    """The agent's distlock_lock_cmd / distlock_unlock_cmd: a `pha distlock` call."""
    argv = shlex.split(str(config["pha_command"])) + [
        "distlock", "--conninfo", str(config["pgsql_distlock_conninfo"]),
        "--name", str(config["pgsql_distlock_lockname"])]
    if action == "lock":
        argv += ["--ttl", str(config["pgsql_distlock_ttl"])]
    return shlex.join(argv + [action])


def pgsql_params(config: Config) -> dict[str, object]:
    """ocf:pha:pgsql's instance attributes from config.ini (no password: a passfile path at most)."""
    params: dict[str, object] = {
        "pgport": config["pgsql_pgport"], "pgdba": config["pgsql_pgdba"],
        "socketdir": config["pgsql_socketdir"], "repuser": config["pgsql_repuser"],
    }
    optional = {"pgctl": "pgsql_pgctl", "pgdata": "pgsql_pgdata", "config": "pgsql_config", "logfile": "pgsql_logfile", "tmpdir": "pgsql_tmpdir",
                "passfile": "pgsql_passfile", "restore_command": "pgsql_restore_command"}
    params.update({name: config[key] for name, key in optional.items() if config[key]})
    if config["max_lag"] and config["pgsql_rep_mode"] == "async":
        params["max_lag"] = config["max_lag"]   # the sync standby must stay promotable
    if config.distlock:
        params.update(enable_distlock=True, distlock_lock_cmd=lock_command(config, "lock"),
                      distlock_unlock_cmd=lock_command(config, "unlock"))
    return params


def cluster_spec(config: Config) -> cluster.ClusterSpec:
    """The pha.cluster description of the config's pgsql clone and VIPs."""
    return cluster.ClusterSpec(
        nodes=config.cluster_nodes, writer_ip=str(config["writer_vip"]),
        reader_ip=str(config["reader_vip"]) if config["reader_vip"] else None,
        rep_mode=str(config["pgsql_rep_mode"]), pgsql_params=pgsql_params(config),
        nic=str(config["vip_nic"]) if config["vip_nic"] else None,
        cidr_netmask=int(config["vip_cidr_netmask"]),  # type: ignore[arg-type]
        fencing=config.values.get("fencing") not in (None, fencing.NONE))


def discovery_conninfo(config: Config) -> str:
    """three_plus_x: where the director asks for the streaming standbys (the writer VIP)."""
    parts = [f"host={config['writer_vip']}", f"port={config['pgsql_pgport']}",
             f"user={config['pgsql_repuser']}", "dbname=postgres", "connect_timeout=3"]
    if config["pgsql_passfile"]:
        parts.append(f"passfile={config['pgsql_passfile']}")
    return " ".join(parts)


def lvs_commands(config: Config, spec: cluster.ClusterSpec,
                 versions: cluster.Versions = cluster.Versions()) -> list[list[str]]:
    """The LVS director and the real-server clone (muti_with_lvs, three_plus_x with enable_lvs)."""
    reader = str(config["reader_vip"])
    params = {"vip": reader, "port": config["pgsql_pgport"], "scheduler": config["lvs_scheduler"],
              "default_weight": config["lvs_default_weight"]}
    if config["lvs_persistent_timeout"]:
        params["persistent_timeout"] = config["lvs_persistent_timeout"]
    if config["lvs_weight_of_realservers"]:
        params["weight_of_realservers"] = config["lvs_weight_of_realservers"]
    if config.template == "three_plus_x":
        params["realserver_discovery_conninfo"] = discovery_conninfo(config)
    else:
        params.update(realserver_dependent_resource=REALSVR_CLONE,
                      realserver_dependent_attribute_name=spec.status_attribute,
                      realserver_dependent_attribute_value=STREAMING_STANDBY_REGEX,
                      lag_attribute_name=names.ATTR_LAG)
    if config["max_lag"]:
        params["max_lag"] = config["max_lag"]
    if config["allowed_networks"]:
        params["allowed_networks"] = " ".join(config["allowed_networks"])  # type: ignore[arg-type]
    if config["lvs_inhibit_on_failure"]:
        params["inhibit_on_failure"] = "true"
    ops = ["op", "start", "timeout=20s", "op", "stop", "timeout=20s",
           "op", "monitor", "interval=3s", "timeout=20s"]
    return [
        ["pcs", "resource", "create", LVS_ID, "ocf:pha:lvsdr",
         *(f"{name}={value}" for name, value in params.items()), *ops],
        ["pcs", "resource", "create", REALSVR_ID, "ocf:pha:lvsdr-realsvr", f"vip={reader}",
         f"nic_lo={config['lvs_realsvr_nic_lo']}",
         "op", "start", "timeout=20s", "op", "stop", "timeout=20s",
         "op", "monitor", "interval=10s", "timeout=20s",
         *versions.clone("clone", REALSVR_CLONE, ["clone-node-max=1"])],
        # the director goes with the reader VIP, which prefers a streaming standby
        ["pcs", "constraint", "colocation", "add", LVS_ID, "with", spec.reader_vip_id, "score=INFINITY"],
        ["pcs", "constraint", "order", "start", LVS_ID, "then", "start", spec.reader_vip_id,
         "kind=Optional"],
        # real servers: the standbys (VIP on lo, ARP sysctls); never the primary
        ["pcs", "constraint", "colocation", "add", REALSVR_CLONE, "with", "Unpromoted", spec.clone_id,
         "score=INFINITY", "influence=false"],
        ["pcs", "constraint", "order", "start", REALSVR_CLONE, "then", "start", LVS_ID, "kind=Optional"],
    ]


def acl_commands(user: str) -> list[list[str]]:
    """Read-only CIB access for `pha health`'s user (a member of haclient): an ACL role, the user,
    and enable-acl=true, without which every haclient member may write the CIB (and so run
    anything as root through a resource's parameters). root and hacluster are not subject to ACLs."""
    return [
        ["pcs", "acl", "role", "create", HEALTH_ROLE, "description=pha health: read the CIB only",
         "read", "xpath", "/cib"],
        ["pcs", "acl", "user", "create", user, HEALTH_ROLE],
        ["pcs", "property", "set", "enable-acl=true"],
    ]


def pcs_commands(config: Config, versions: cluster.Versions = cluster.Versions()) -> list[list[str]]:
    """Every pcs command line of the config's template, in order, for pcs/Pacemaker `versions`."""
    spec = cluster_spec(config)
    commands = cluster.pcs_commands(spec, versions)
    if config.template == "dual":
        commands = [_with_property(argv, "no-quorum-policy", "ignore") for argv in commands]
    if config.lvs:
        commands += lvs_commands(config, spec, versions)
    if config["health_user"]:
        commands += acl_commands(str(config["health_user"]))
    commands += fencing.pcs_commands(config)      # refuses a config that says nothing of fencing
    for argv in commands:
        check_no_secrets(argv)
    return commands


def check_no_secrets(argv: Sequence[str]) -> None:
    """Refuse a `pcs resource create` whose parameters would put a password into the CIB."""
    if list(argv[:3]) != ["pcs", "resource", "create"]:
        return
    for word in argv[5:]:
        if word == "op":
            break
        name, _, value = word.partition("=")
        try:
            values.check_no_secret_param(name, value)
        except ValueError as exc:
            raise SetupError(f"resource {argv[3]}: {exc}") from None


def _with_property(argv: list[str], name: str, value: str) -> list[str]:
    if argv[:3] != ["pcs", "property", "set"]:
        return argv
    return [f"{name}={value}" if word.startswith(f"{name}=") else word for word in argv]


def managed_ids(config: Config) -> tuple[str, ...]:
    """The primitives `pha setup` owns: it rebuilds exactly these (and their clones)."""
    spec = cluster_spec(config)
    return (spec.resource_id, spec.writer_vip_id, spec.reader_vip_id, LVS_ID, REALSVR_ID,
            *fencing.managed_ids(config))


def render_script(config: Config, commands: Sequence[Sequence[str]]) -> str:
    """The pcs script `pha gencfg` prints: edits of a CIB copy, pushed as one diff."""
    nodes = " ".join(config.cluster_nodes)
    header = [
        "#!/bin/sh",
        f"# pha {__version__}: Pacemaker configuration of template {config.template} "
        f"({len(config.cluster_nodes)} nodes: {nodes})",
        f"# generated by `pha gencfg {config.path}`; `pha setup {config.path}` applies the same",
        "# commands idempotently. Run on a cluster node; every command edits a copy of the CIB",
        "# (pcs -f) and the last one pushes the difference in one transaction.",
    ]
    if config.outside_readers:
        header.append("# readers outside the cluster (stream from the writer VIP): "
                      + " ".join(config.outside_readers))
    header += [f"# fencing: {note}" for note in fencing.notes(config)]
    lines = [*header, "set -e", f"pcs cluster cib {SCRIPT_ORIGINAL}", f"cp {SCRIPT_ORIGINAL} {SCRIPT_CIB}"]
    for argv in commands:
        if not argv or argv[0] != "pcs":
            raise ValueError(f"{shlex.join(argv)!r} is not a pcs command")
        lines.append(shlex.join(["pcs", "-f", SCRIPT_CIB, *argv[1:]]))
    lines.append(f"pcs cluster cib-push {SCRIPT_CIB} diff-against={SCRIPT_ORIGINAL}")
    return "\n".join(lines) + "\n"


def cluster_members(status: crmstatus.ClusterStatus) -> list[str]:
    return [node.name for node in status.nodes]


# --- applying ------------------------------------------------------------------------
class SetupResult(NamedTuple):
    """What setup found and did."""

    changes: list[str]          # the patch, one line per change; empty: already configured
    pushed: bool
    where: str                  # the node the commands ran on


def elected_status(bridge: crm.Crm, where: str, timeout: float = DC_WAIT,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> crmstatus.ClusterStatus:
    """The cluster's status once it has a DC: a push before the first DC election
    races the DC's own write of cib-bootstrap-options and is refused."""
    deadline = clock() + timeout
    status = bridge.status()
    while status.summary.dc is None:
        if clock() >= deadline:
            raise SetupError(f"{where}: the cluster has no DC after {timeout:g}s; is pacemaker running "
                             "on a quorate partition?")
        sleep(1.0)
        status = bridge.status()
    return status


def preflight(config: Config, bridge: crm.Crm, where: str) -> None:
    """The cluster has a DC and the config's nodes, and the nodes have pha's agents."""
    members = cluster_members(elected_status(bridge, where))
    strangers = [n for n in config.cluster_nodes if n not in members]
    if strangers:
        raise SetupError(f"{config.path}: {', '.join(strangers)} "
                         f"{'is not a node' if len(strangers) == 1 else 'are not nodes'} of this cluster "
                         f"({' '.join(members) or 'no nodes'}); check node1..nodeN and othernodes")
    agents = ["pgsql", "vip"] + (["lvsdr", "lvsdr-realsvr"] if config.lvs else [])
    for agent in agents:
        path = f"{config['OCF_ROOT']}/resource.d/pha/{agent}"
        if bridge.call(["test", "-x", path], ok=(0, 1)).returncode != 0:
            raise SetupError(f"{where}: {path} is missing (OCF_ROOT={config['OCF_ROOT']}): "
                             "run `pha install-agents` on every node")


def setup(config: Config, run: crm.Runner, where: str, dry_run: bool = False,
          progress: Optional[Progress] = None) -> SetupResult:
    """Make the cluster's configuration what config.ini says; push only a real change."""
    say = progress or (lambda _text: None)
    bridge = crm.Crm(run, timeout=60.0)
    preflight(config, bridge, where)
    commands = pcs_commands(config, cluster.detect_versions(run))
    with CibEdit(bridge, WORKDIR_PREFIX) as edit:
        return _rebuild(edit, config, commands, where, dry_run, say)


def _rebuild(edit: CibEdit, config: Config, commands: list[list[str]], where: str, dry_run: bool,
             say: Progress) -> SetupResult:
    """Rebuild pha's resources in the copy; push the difference unless dry_run or none."""
    ids = managed_ids(config)
    live = edit.live()
    existing = existing_primitives(live, ids)
    kept = kept_constraints(live, ids)
    for rsc_id in existing:
        edit.pcs(fencing.delete_command(rsc_id))
    user = str(config["health_user"])
    if user:                                      # pha owns its health user's ACL: rebuilt too
        targets, roles = existing_acls(live)
        if user in targets:
            edit.pcs(["pcs", "acl", "user", "delete", user])
        if HEALTH_ROLE in roles:
            edit.pcs(["pcs", "acl", "role", "delete", HEALTH_ROLE])
        _warn_about_haclient(edit, user, targets, where, say)
    say(f"{where}: building the configuration ({len(commands)} pcs commands"
        + (f", rebuilding {', '.join(existing)}" if existing else "") + ")")
    for argv in commands:
        edit.pcs(argv)
    for xml_text in kept:
        edit.run(["cibadmin", "--create", "--scope=constraints", f"--xml-text={xml_text}"],
                 ok=(0, 1, 105))  # gone with its resource: dropped
    changes = patch_changes(edit.diff())
    if not changes or dry_run:
        return SetupResult(changes, False, where)
    say(f"{where}: pushing {len(changes)} change{'s' if len(changes) != 1 else ''} in one CIB diff")
    edit.push(timeout=PUSH_TIMEOUT)
    return SetupResult(changes, True, where)


def _warn_about_haclient(edit: CibEdit, user: str, targets: set[str], where: str, say: Progress) -> None:
    """With enable-acl=true, a haclient member without an ACL of its own loses all CIB access."""
    found = edit.bridge.call(["getent", "group", "haclient"], ok=(0, 2)).stdout.strip()
    members = set(found.split(":")[3].split(",")) if found.count(":") == 3 else set()
    stranded = sorted(members - {"", "root", "hacluster", user} - targets)
    if stranded:
        say(f"{where}: enable-acl=true: {', '.join(stranded)} (in haclient, no ACL) will have no access to "
            "the CIB; give them a role (pcs acl user create NAME ROLE) if they need one")


def _passfile_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def passfile_prefix(config: Config) -> str:
    """host:port:database:user: of the replication user's passfile entry (any host and database)."""
    return f"*:{config['pgsql_pgport']}:*:{_passfile_escape(str(config['pgsql_repuser']))}:"


def write_passfile(config: Config) -> Optional[str]:
    """Put pgsql_reppassword into pgsql_passfile on this machine (0600, owned by pgsql_pgdba).

    Other entries of the file are kept. Returns the path when it was written.
    """
    password, path = config["pgsql_reppassword"], config["pgsql_passfile"]
    if password is None or path is None:
        return None
    path = str(path)
    prefix = passfile_prefix(config)
    entry = prefix + _passfile_escape(str(password)) + "\n"
    try:
        lines = files.read_nofollow(path).splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    except OSError as exc:          # ELOOP: a symlink (another user may have planted it)
        raise SetupError(f"pgsql_passfile={path}: cannot be read safely: {exc.strerror or exc} "
                         "(a symlink is never followed): remove it") from None
    if entry in lines:
        return None
    lines = [line for line in lines if not line.startswith(prefix)] + [entry]
    account = pwd.getpwnam(str(config["pgsql_pgdba"]))
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    # a fresh O_EXCL|O_NOFOLLOW file, 0600 and owned by pgdba before the password is written
    files.write_atomic(path, "".join(lines), 0o600, account.pw_uid, account.pw_gid)
    return path
