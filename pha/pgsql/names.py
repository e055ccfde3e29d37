"""The pgsql agent's contract with the rest of pha, defined once.

Node attributes, the cluster property set, the values the agent writes,
and where it keeps its files. The commands, the health service, the
cluster builder and the agent all import these names from here.
"""
from __future__ import annotations

import os

# cluster property (crm_attribute --type crm_config --set-name PROPERTY_SET)
PROPERTY_SET = "pha-pgsql"
REPL_INFO = "REPL_INFO"                 # primary|timeline|switch-LSN

# node attributes
ATTR_STATUS = "pgsql-status"            # transient: PRI, HS:*, STOP
ATTR_DATA = "pgsql-data-status"         # forever: survives a restart of the cluster
ATTR_LSN = "pgsql-xlog-loc"             # transient, for elections
ATTR_TIMELINE = "pgsql-timeline"        # transient
ATTR_LAG = "pgsql-replay-lag"           # transient, on standbys: bytes received but not replayed
ATTR_RECEIVER = "pgsql-receiver"        # transient, on standbys: WAL receiver status
ATTR_BASELINE = "pgsql-master-baseline"  # transient, on the primary: LSN at promotion
ATTR_REWOUND = "pgsql-rewound"          # forever: "<UTC time> <bytes> <dir>" of the last automatic rewind
STANDBY_ONLY_ATTRS = (ATTR_LSN, ATTR_TIMELINE, ATTR_RECEIVER, ATTR_LAG)

# pgsql-status values
PRI = "PRI"
HS_SYNC, HS_POTENTIAL, HS_ASYNC, HS_ALONE = "HS:sync", "HS:potential", "HS:async", "HS:alone"
STOP = "STOP"
STREAMING_STANDBY_STATUSES = (HS_SYNC, HS_POTENTIAL, HS_ASYNC)

# pgsql-data-status values
LATEST = "LATEST"
STREAMING_SYNC = "STREAMING|SYNC"
STREAMING_POTENTIAL = "STREAMING|POTENTIAL"
STREAMING_ASYNC = "STREAMING|ASYNC"
DISCONNECT = "DISCONNECT"
STREAMING = (STREAMING_SYNC, STREAMING_POTENTIAL, STREAMING_ASYNC)
HEALTHY_DATA = (LATEST, *STREAMING)
CANDIDATE_DATA = frozenset({LATEST, STREAMING_SYNC})   # may be promoted in sync mode


def score_attr(resource: str) -> str:
    """The promotion score's node attribute of a promotable resource (Pacemaker's name)."""
    return f"master-{resource}"


def state_path(tmpdir: str, resource: str) -> str:
    """The agent's per-resource state file (JSON)."""
    return os.path.join(tmpdir, f"{resource}.state")


def fork_marker_path(tmpdir: str, resource: str) -> str:
    """Where the fork guard remembers a refusal until REPL_INFO changes or a repair."""
    return state_path(tmpdir, resource) + ".forked"
