"""The cluster commands, for pha.cli: pha subcommand -> ("module:attribute", one-line help).

The `cls_*` console scripts map to these names through pha.cli.CLS_COMMANDS.
"""
from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "gencfg": ("pha.commands.configure:gencfg_cmd", "Print the pcs script of a config.ini."),
    "setup": ("pha.commands.configure:setup_cmd", "Configure the cluster from a config.ini (idempotent)."),
    "status": ("pha.commands.status:status_cmd", "cls_status: crm_mon, pha's summary, health verdict."),
    "master": ("pha.commands.status:master_cmd", "cls_master: print the primary's node name."),
    "start": ("pha.commands.control:start_cmd", "cls_start: enable PostgreSQL and its VIPs, wait."),
    "stop": ("pha.commands.control:stop_cmd", "cls_stop: disable PostgreSQL and its VIPs, wait."),
    "cleanup": ("pha.commands.control:cleanup_cmd", "cls_cleanup: clear failed actions and fail counts."),
    "maintenance": ("pha.commands.control:maintenance_cmd", "cls_maintenance: cluster maintenance mode."),
    "unmaintenance": ("pha.commands.control:unmaintenance_cmd",
                      "cls_unmaintenance: leave cluster maintenance mode."),
    "maintenance-node": ("pha.commands.control:maintenance_node_cmd",
                         "cls_maintenance_node NODE: node maintenance."),
    "unmaintenance-node": ("pha.commands.control:unmaintenance_node_cmd",
                           "cls_unmaintenance_node NODE: leave node maintenance."),
    "standby-node": ("pha.commands.control:standby_node_cmd",
                     "cls_standby_node NODE: standby, wait for the resources to move."),
    "unstandby-node": ("pha.commands.control:unstandby_node_cmd",
                       "cls_unstandby_node NODE: leave standby, wait for PostgreSQL."),
    "online-switch": ("pha.commands.switch:online_switch_cmd",
                      "cls_online_switch [--to NODE]: switchover without data loss."),
    "reset-master": ("pha.commands.switch:reset_master_cmd",
                     "cls_reset_master [NODE] --yes: emergency, when no node can be primary."),
    "repair-by-pg-rewind": ("pha.commands.repair:repair_cmd",
                            "cls_repair_by_pg_rewind: rewind this node from the primary."),
    "rebuild-slave": ("pha.commands.repair:rebuild_cmd",
                      "cls_rebuild_slave: pg_basebackup this node from the primary."),
    "guard": ("pha.commands.guard:guard_cmd",
              "Stop this node's primary when its cluster is gone, before fencing (a service)."),
}
