"""Pure lab layout and rendering: names, addresses, config files, crm_mon views.

Nothing here changes the system, so all of it is unit-tested. The one thing read
from it is which PostgreSQL versions are installed (Debian's /usr/lib/postgresql/N).
"""
from __future__ import annotations

import ipaddress
import os
import re

# Several labs can run side by side (one per developer or test run): lab
# instance N (env PHA_LAB_INSTANCE, default 0) gets its own names, subnet and
# state directory. Instance 0 is pha-*, 10.78.0.0/24, /var/tmp/pha-lab.
INSTANCE_ENV = "PHA_LAB_INSTANCE"
INSTANCE = int(os.environ.get(INSTANCE_ENV, "0") or 0)
if not 0 <= INSTANCE <= 9:
    raise ValueError(f"{INSTANCE_ENV}={INSTANCE}: must be 0-9")
_TAG = "pha" if INSTANCE == 0 else f"pha{INSTANCE}"

SUBNET = f"10.{78 + INSTANCE}.0.0/24"
PREFIXLEN = 24
_BASE = ipaddress.IPv4Address(f"10.{78 + INSTANCE}.0.0")
NODE_IP_OFFSET = 10           # node i = .10+i
CLIENT_IP = str(_BASE + 50)   # nodes stop below the client address
VIP_OFFSET = 100              # .100-.199 are kept free for VIPs
MAX_NODES = 39
MAX_VIPS = 100

SWITCH_NETNS = f"{_TAG}-sw"
CLIENT_NETNS = f"{_TAG}-client"
NETNS_PREFIX = f"{_TAG}-"
BRIDGE = f"{_TAG}br0"
NODE_IFNAME = "eth0"

DEFAULT_STATE_DIR = f"/var/tmp/{_TAG}-lab"
STATE_ENV = "PHA_LAB_STATE"
DEFAULT_TOKEN_MS = 3000
# Pacemaker waits dc-deadtime (default 20 s) for a DC before holding an election;
# the lab's CIB is pre-seeded with a short one so `up` does not sit through it.
DC_DEADTIME = "2s"

# PostgreSQL: the newest version installed, or PHA_LAB_PG (`pha lab up --pg N`). The data
# directory and log name no version, so templates/lab.ini and the tests work with any.
PG_ENV = "PHA_LAB_PG"
PG_LIB = "/usr/lib/postgresql"
PG_TOOLS = ("initdb", "pg_ctl", "pg_basebackup")
PGDATA = "/var/lib/postgresql/pha"
PG_PORT = 5432
PG_SOCKET_DIR = "/run/postgresql"
PG_LOG = "/var/log/postgresql/postgresql-pha.log"

OCF_RESOURCE_D = "/usr/lib/ocf/resource.d"
OCF_SHELLFUNCS = "/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs"

# Node directory -> (mode, owner, group) of the per-node copy in the lab state.
# "copy" in place of a mode means: start from a copy of the host directory.
NODE_DIRS: dict[str, tuple[int | str, str, str]] = {
    "/var/lib/pacemaker": ("copy", "hacluster", "haclient"),
    "/var/lib/corosync": (0o700, "root", "root"),
    "/var/log/pacemaker": (0o770, "hacluster", "haclient"),
    "/var/log/corosync": (0o755, "root", "root"),
    "/etc/corosync": (0o755, "root", "root"),
    "/etc/pacemaker": (0o755, "root", "root"),
    "/var/lib/postgresql": (0o755, "postgres", "postgres"),
    "/var/log/postgresql": (0o1775, "root", "postgres"),
    "/var/lib/pha": (0o700, "root", "root"),       # the WAL a rewind keeps (rewind_keep_dir)
    "/var/log/pha": (0o755, "root", "root"),       # pha guard's log
}
# Fresh tmpfs per node: mount point -> mode.
NODE_TMPFS: dict[str, int] = {"/run": 0o755, "/dev/shm": 0o1777, "/tmp": 0o1777}
# Directories created in the node's fresh /run: path -> (mode, owner, group).
NODE_RUN_DIRS: dict[str, tuple[int, str, str]] = {
    "/run/postgresql": (0o2775, "postgres", "postgres"),
    "/run/resource-agents": (0o1755, "root", "root"),
    "/run/lock": (0o755, "root", "root"),
    "/run/crm": (0o750, "hacluster", "haclient"),
}

_NODE_NAME = re.compile(r"node([1-9][0-9]?)")
_PG_VERSION = re.compile(r"[1-9][0-9]*")


class LabConfigError(ValueError):
    """Bad lab option or state."""


def check_pg_version(version: str) -> str:
    if not isinstance(version, str) or not _PG_VERSION.fullmatch(version):
        raise LabConfigError(f"--pg: {version!r} is not a PostgreSQL major version (e.g. 17)")
    return version


def pg_bin(version: str) -> str:
    """Where Debian puts PostgreSQL `version`'s programs."""
    return f"{PG_LIB}/{check_pg_version(version)}/bin"


def pg_versions(lib: str = PG_LIB) -> list[str]:
    """The PostgreSQL major versions installed with the lab's tools, oldest first."""
    try:
        names = os.listdir(lib)
    except FileNotFoundError:
        return []
    found = [n for n in names if _PG_VERSION.fullmatch(n)
             and all(os.access(f"{lib}/{n}/bin/{tool}", os.X_OK) for tool in PG_TOOLS)]
    return sorted(found, key=int)


def default_pg_version() -> str:
    """PHA_LAB_PG, else the newest version installed; "" when there is none."""
    chosen = os.environ.get(PG_ENV, "")
    if chosen:
        return check_pg_version(chosen)
    installed = pg_versions()
    return installed[-1] if installed else ""


PG_VERSION = default_pg_version()
PG_BIN = f"{PG_LIB}/{PG_VERSION or 'NONE'}/bin"
"""The default version's programs (a lab records its own: Lab.pg_bin)."""


def check_node_count(nodes: int) -> int:
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise LabConfigError(f"--nodes: {nodes!r} is not a node count between 1 and {MAX_NODES}")
    return nodes


def check_token(token_ms: int) -> int:
    if not isinstance(token_ms, int) or not 200 <= token_ms <= 60000:
        raise LabConfigError(f"--token: {token_ms!r} ms is not between 200 and 60000")
    return token_ms


def node_names(count: int) -> list[str]:
    return [f"node{i}" for i in range(1, check_node_count(count) + 1)]


def node_index(name: str) -> int:
    match = _NODE_NAME.fullmatch(name)
    if not match or int(match.group(1)) > MAX_NODES:
        raise LabConfigError(f"node: {name!r} is not a lab node name (node1..node{MAX_NODES})")
    return int(match.group(1))


def node_ip(name: str) -> str:
    return str(_BASE + NODE_IP_OFFSET + node_index(name))


def node_netns(name: str) -> str:
    return NETNS_PREFIX + name


def switch_port(name: str) -> str:
    """The switch-side veth of a node (or of the client)."""
    return "sw-" + name


def vip(n: int) -> str:
    if not isinstance(n, int) or not 0 <= n < MAX_VIPS:
        raise LabConfigError(f"vip: {n!r} is not a VIP number between 0 and {MAX_VIPS - 1}")
    return str(_BASE + VIP_OFFSET + n)


def render_hosts(nodes: list[str]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{node_ip(n)}\t{n}" for n in nodes]
    lines.append(f"{CLIENT_IP}\tclient")
    return "\n".join(lines) + "\n"


def render_corosync_conf(nodes: list[str], token_ms: int, cluster_name: str = "pha-lab",
                         two_node: bool = False) -> str:
    """corosync.conf of the lab; `two_node` (2 nodes only) keeps quorum on each side of a
    cut, as 2-node clusters run: then only fencing or pha's lock tells who may write."""
    if two_node and len(nodes) != 2:
        raise LabConfigError(f"--two-node: needs exactly 2 nodes, not {len(nodes)}")
    node_blocks = "".join(
        f"    node {{\n        ring0_addr: {node_ip(n)}\n        name: {n}\n"
        f"        nodeid: {node_index(n)}\n    }}\n"
        for n in nodes)
    return (
        "totem {\n"
        "    version: 2\n"
        f"    cluster_name: {cluster_name}\n"
        "    transport: knet\n"
        "    crypto_cipher: aes256\n"
        "    crypto_hash: sha256\n"
        f"    token: {check_token(token_ms)}\n"
        "}\n"
        f"nodelist {{\n{node_blocks}}}\n"
        "quorum {\n    provider: corosync_votequorum\n"
        + ("    two_node: 1\n" if two_node else "")
        + "}\n"
        "logging {\n"
        "    to_logfile: yes\n"
        "    logfile: /var/log/corosync/corosync.log\n"
        "    to_syslog: no\n"
        "    to_stderr: no\n"
        "    timestamp: on\n"
        "}\n")


def render_seed_cib(dc_deadtime: str = DC_DEADTIME, fencing: str = "stonith-enabled") -> str:
    """The CIB every node starts from: no fencing (`fencing` names the option: it is
    fencing-enabled since Pacemaker 3.0.2), short DC election wait."""
    options = {fencing: "false", "dc-deadtime": dc_deadtime}
    nvpairs = "".join(
        f'        <nvpair id="cib-bootstrap-options-{name}" name="{name}" value="{value}"/>\n'
        for name, value in options.items())
    return (
        '<cib validate-with="pacemaker-3.9" '
        'epoch="1" num_updates="0" admin_epoch="0">\n'
        "  <configuration>\n"
        "    <crm_config>\n"
        '      <cluster_property_set id="cib-bootstrap-options">\n'
        f"{nvpairs}"
        "      </cluster_property_set>\n"
        "    </crm_config>\n"
        "    <nodes/>\n    <resources/>\n    <constraints/>\n"
        "  </configuration>\n"
        "  <status/>\n"
        "</cib>\n")


OCF_PROMOTION_CALL = "${HA_SBIN_DIR}/crm_attribute -p $@"
OCF_PROMOTION_CALLS_FIXED = ("${HA_SBIN_DIR}/crm_attribute --promotion $@",
                             "${HA_SBIN_DIR}/crm_attribute -p ${OCF_RESOURCE_INSTANCE} $@")


def patch_ocf_shellfuncs(text: str) -> str:
    """Make ocf_promotion_score call `crm_attribute --promotion`, where it needs to.

    resource-agents 4.12 runs `crm_attribute -p $@`, and pacemaker 2.1.5
    mis-parses `-p -v -INFINITY` (the stock pgsql agent then cannot demote).
    resource-agents 4.16 (Debian 13) names the resource itself, and pacemaker
    3.0 parses it: that text is returned unchanged.
    """
    if OCF_PROMOTION_CALL in text:
        return text.replace(OCF_PROMOTION_CALL, OCF_PROMOTION_CALLS_FIXED[0], 1)
    if any(call in text for call in OCF_PROMOTION_CALLS_FIXED):
        return text
    raise LabConfigError(f"{OCF_SHELLFUNCS}: expected line {OCF_PROMOTION_CALL!r} not found; cannot patch it")


PG_BLOCK_BEGIN = "# --- pha lab settings (begin) ---"
PG_BLOCK_END = "# --- pha lab settings (end) ---"


def render_pg_settings(node: str) -> str:
    """postgresql.conf settings of a lab node, as a marked block.

    listen_addresses is '*': inside the node's netns that is the node address
    (and any VIP an agent adds later), never a host address.
    """
    settings = {
        "listen_addresses": "'*'",
        "port": str(PG_PORT),
        "unix_socket_directories": f"'{PG_SOCKET_DIR}'",
        "cluster_name": f"'{node}'",
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "wal_keep_size": "128MB",
        "wal_log_hints": "on",
        "logging_collector": "off",
    }
    body = "".join(f"{key} = {value}\n" for key, value in settings.items())
    return f"{PG_BLOCK_BEGIN}\n{body}{PG_BLOCK_END}\n"


def set_pg_settings(conf: str, node: str) -> str:
    """conf with the lab block replaced (or appended) for `node`."""
    block = render_pg_settings(node)
    begin, end = conf.find(PG_BLOCK_BEGIN), conf.find(PG_BLOCK_END)
    if begin == -1 or end == -1:
        return conf.rstrip("\n") + "\n\n" + block
    return conf[:begin] + block + conf[end + len(PG_BLOCK_END) + 1:]


def render_pg_hba() -> str:
    return (f"# pha lab: trust inside the lab subnet only\n"
            f"host all all {SUBNET} trust\n"
            f"host replication all {SUBNET} trust\n")


def primary_conninfo(primary_ip: str, application_name: str) -> str:
    return f"host={primary_ip} port={PG_PORT} user=postgres application_name={application_name}"


def set_primary_conninfo(auto_conf: str, conninfo: str | None) -> str:
    """postgresql.auto.conf without pg_basebackup's primary_conninfo, plus `conninfo` if given."""
    lines = [line for line in auto_conf.splitlines()
             if not line.strip().startswith("primary_conninfo")]
    if conninfo is not None:
        lines.append(f"primary_conninfo = '{conninfo}'")
    return "\n".join(lines) + "\n"


