"""The operator commands: `pha <command>` and the `cls_*` console scripts.

One module per family: `setup` (gencfg, setup), `status` (status, master),
`control` (start, stop, cleanup, maintenance, standby), `switch`
(online-switch, reset-master), `repair` (repair-by-pg-rewind, rebuild-slave).
`common` holds what they share; `registry.COMMANDS` lists them for pha.cli.
"""
