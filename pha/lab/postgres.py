"""PostgreSQL in the lab (the version `Lab.pg_version` names): a primary on the first node, base-backed-up standbys on the others.

Left stopped and ready for the pgsql agent (no primary_conninfo, no
standby.signal: the agent owns recovery configuration), or running as a plain
streaming cluster whose standbys name themselves with application_name=<node>.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from pha.lab import config

if TYPE_CHECKING:
    from pha.lab.core import Lab

STREAMING_TIMEOUT = 30

_WAIT_STREAMING = """
import json, sys, time
import psycopg
want = set({standbys!r})
deadline = time.monotonic() + {timeout}
with psycopg.connect(host={socket_dir!r}, port={port}, user="postgres", dbname="postgres",
                     autocommit=True) as conn:
    while True:
        rows = conn.execute("select application_name, state from pg_stat_replication").fetchall()
        streaming = {{name for name, state in rows if state == "streaming"}}
        if want <= streaming or time.monotonic() > deadline:
            break
        time.sleep(0.1)
print(json.dumps(sorted(streaming)))
sys.exit(0 if want <= streaming else 1)
"""


def _pg(lab: "Lab", node: str, tool: str, *args: str, timeout: float = 120):
    return lab.exec(node, [f"{lab.pg_bin}/{tool}", *args], user="postgres", timeout=timeout)


def start(lab: "Lab", node: str) -> None:
    _pg(lab, node, "pg_ctl", "-D", config.PGDATA, "-l", config.PG_LOG, "-w", "-t", "60", "start")


def stop(lab: "Lab", node: str) -> None:
    _pg(lab, node, "pg_ctl", "-D", config.PGDATA, "-m", "fast", "-w", "-t", "60", "stop")


def _configure(lab: "Lab", node: str) -> None:
    conf = lab.node_path(node, config.PGDATA + "/postgresql.conf")
    conf.write_text(config.set_pg_settings(conf.read_text(), node))


def _init_primary(lab: "Lab", node: str) -> None:
    _pg(lab, node, "initdb", "-D", config.PGDATA, "-U", "postgres", "--auth=trust",
        "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")
    _configure(lab, node)
    with lab.node_path(node, config.PGDATA + "/pg_hba.conf").open("a") as hba:
        hba.write(config.render_pg_hba())


def _init_standby(lab: "Lab", node: str, primary: str, running: bool) -> None:
    _pg(lab, node, "pg_basebackup", "-h", config.node_ip(primary), "-p", str(config.PG_PORT),
        "-U", "postgres", "-D", config.PGDATA, "-X", "stream", "-R", "-c", "fast", "--no-password")
    _configure(lab, node)
    auto_conf = lab.node_path(node, config.PGDATA + "/postgresql.auto.conf")
    conninfo = config.primary_conninfo(config.node_ip(primary), node) if running else None
    auto_conf.write_text(config.set_primary_conninfo(auto_conf.read_text(), conninfo))
    if running:
        start(lab, node)
    else:
        lab.node_path(node, config.PGDATA + "/standby.signal").unlink()


def set_up(lab: "Lab", running: bool) -> None:
    """initdb the first node, base-backup the others; leave them stopped unless `running`."""
    primary, *standbys = lab.nodes
    _init_primary(lab, primary)
    start(lab, primary)
    with ThreadPoolExecutor(max_workers=max(1, len(standbys))) as pool:
        for done in [pool.submit(_init_standby, lab, node, primary, running) for node in standbys]:
            done.result()
    if running:
        if standbys:
            wait_streaming(lab, primary, standbys)
    else:
        stop(lab, primary)


def wait_streaming(lab: "Lab", primary: str, standbys: list[str], timeout: float = STREAMING_TIMEOUT) -> None:
    """Wait until `primary`'s pg_stat_replication shows every standby streaming."""
    code = _WAIT_STREAMING.format(standbys=sorted(standbys), timeout=timeout,
                                  socket_dir=config.PG_SOCKET_DIR, port=config.PG_PORT)
    lab.python(primary, code, timeout=timeout + 30)
