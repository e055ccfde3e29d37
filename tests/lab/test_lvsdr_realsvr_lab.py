"""ocf:pha:lvsdr-realsvr as a Pacemaker clone on the standbys of the lab's pgsql cluster.

(IPVS itself needs a kernel with ip_vs: tests/uml covers the director.)
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pgsql_cluster import CLONE, create_pgsql_cluster, primary_of, status, wait_for
from pha.lab import config

pytestmark = pytest.mark.lab
RSC = "reader-realsvr"
SYSCTLS = ("net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce",
           "net.ipv4.conf.lo.arp_ignore", "net.ipv4.conf.lo.arp_announce")
PROBE = """
import json, sys
from pha import net
print(json.dumps({"vip": net.has_address("lo", sys.argv[1]),
                  "sysctls": [net.sysctl_get(n) for n in sys.argv[2:]]}))
"""


@pytest.fixture(scope="module")
def cluster(lab):
    create_pgsql_cluster(lab, rep_mode="async", reader=False)
    reader = lab.vip(1)
    lab.exec("node1", ["pcs", "resource", "create", RSC, "ocf:pha:lvsdr-realsvr", f"vip={reader}",
                       "op", "monitor", "interval=5s", "clone"])
    lab.exec("node1", ["pcs", "constraint", "colocation", "add", f"{RSC}-clone", "with", "Unpromoted",
                       CLONE, "INFINITY"])
    return lab, reader


def probe(lab, node: str, reader: str) -> dict:
    import json
    import sys
    out = lab.exec(node, [sys.executable, "-c", PROBE, reader, *SYSCTLS])
    return json.loads(out.stdout)


def test_realsvr_runs_on_the_standbys_only(cluster) -> None:
    lab, reader = cluster
    primary = primary_of(lab)
    standbys = sorted(n for n in lab.nodes if n != primary)
    wait_for("realsvr on both standbys",
             lambda: sorted(status(lab).resource_nodes(f"{RSC}-clone")) == standbys, timeout=60)
    for node in standbys:
        assert probe(lab, node, reader) == {"vip": True, "sysctls": ["1", "2", "1", "2"]}
    assert probe(lab, primary, reader) == {"vip": False, "sysctls": ["0", "0", "0", "0"]}


def test_stop_restores_the_sysctls_and_removes_the_vip(cluster) -> None:
    lab, reader = cluster
    lab.exec("node1", ["pcs", "resource", "disable", f"{RSC}-clone", "--wait=60"])
    for node in lab.nodes:
        assert probe(lab, node, reader) == {"vip": False, "sysctls": ["0", "0", "0", "0"]}


def test_get_active_slaves_prints_only_standbys_named_by_their_own_address(cluster, tmp_path) -> None:
    """Real standbys are printed one a line; a WAL receiver in the client namespace that calls
    itself 198.51.100.7, or node3, or "10.78.0.5 10.78.0.6", streams too but is never printed."""
    lab, _ = cluster
    primary = primary_of(lab)
    standbys = sorted(n for n in lab.nodes if n != primary)
    writer = f"host={lab.vip(0)} port={config.PG_PORT} user=postgres dbname=postgres connect_timeout=5"
    impostors = []
    try:
        for n, name in enumerate(("198.51.100.7", standbys[-1], "10.78.0.5 10.78.0.6")):
            folder = tmp_path / f"wal{n}"
            folder.mkdir()
            argv = [f"{config.PG_BIN}/pg_receivewal", "-D", str(folder), "--no-sync", "-d",
                    f"{writer} application_name='{name}'"]
            impostors.append(subprocess.Popen(lab.client_command(argv), env=lab.command_env(),
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        pha = os.path.join(os.path.dirname(sys.executable), "pha")

        def asked() -> subprocess.CompletedProcess | None:
            out = lab.exec(primary, [pha, "get-active-slaves", writer], check=False)
            return out if out.returncode == 0 and out.stderr.count("skipped") == 3 else None
        out, _ = wait_for("the three impostors streaming", asked, timeout=30)
        assert out.stdout.splitlines() == standbys, out.stdout + out.stderr
        assert "198.51.100.7" not in out.stdout and "10.78.0.5" not in out.stdout
    finally:
        for process in impostors:
            process.kill()
            process.wait()
