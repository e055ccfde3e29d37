"""HAProxy in front of a pha cluster: after kill -9 of the primary, port 5000 follows the new one.

The cluster is ocf:pha:pgsql in sync mode (tests/lab/pgsql_cluster.py);
`pha health` runs on every node and HAProxy (the haproxy.cfg of `pha
haproxy-cfg`) in the client namespace. A writer loop inserts through port
5000 the whole time: every insert acknowledged must come from the primary of
that moment (a standby must never accept one), and once the new primary is
promoted, port 5000 must reach it within inter x fall plus a margin.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from health_client import HealthServices, client_run, http_action
from pha import haproxy
from pha.lab import config
from pha.lab.core import LabCommandError

from pgsql_cluster import create_pgsql_cluster, primary_of, wait_for
from writer import Writer

pytestmark = pytest.mark.lab

INTER_S, FALL, RISE = 1.0, 2, 1
CACHE_S = 1.0                      # pha health's default --interval
MARGIN_S = CACHE_S + 2.0           # one stale cached answer, plus slack for a busy machine


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    create_pgsql_cluster(lab, rep_mode="sync")
    services = HealthServices(lab, tmp_path_factory.mktemp("health"))
    try:
        for node in lab.nodes:
            services.start(node, "--details-allow", lab.subnet)    # primaries() reads the timeline
        yield services
    finally:
        services.stop_all()


@pytest.fixture(scope="module")
def haproxy_proc(lab, cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("haproxy")
    ini = work / "config.ini"
    addresses = " ".join(f"{n}={lab.node_ip(n)}" for n in lab.nodes)
    ini.write_text("".join(f"node{i}={n}\n" for i, n in enumerate(lab.nodes, 1))
                   + f'haproxy_addresses="{addresses}"\nhaproxy_inter={int(INTER_S * 1000)}ms\n'
                   + f"haproxy_fall={FALL}\nhaproxy_rise={RISE}\n")
    cfg = work / "haproxy.cfg"
    cfg.write_text(haproxy.render(haproxy.read_config(str(ini))))
    proc = subprocess.Popen(lab.client_command(["haproxy", "-db", "-f", str(cfg)]), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_write_states(lab) -> dict[str, str]:
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:7000/;csv').read().decode())"
    try:
        csv = lab.python("client", code).stdout
    except LabCommandError:      # HAProxy is not listening yet
        return {}
    rows = [line.split(",") for line in csv.splitlines()
            if line.startswith("pgsql-read-write,")]
    return {r[1]: r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


def primaries(lab) -> dict[str, dict]:
    """node -> /primary body, for the nodes whose pha health says primary."""
    results = client_run(lab, [http_action(lab, n, "/primary") for n in lab.nodes])
    return {n: r["body"] for n, r in zip(lab.nodes, results) if r["status"] == 200}


def test_port_5000_follows_the_new_primary_after_kill_9(lab, cluster, haproxy_proc, tmp_path):
    old = primary_of(lab)
    wait_for(f"HAProxy read-write on {old} only",
             lambda: read_write_states(lab) == {n: "UP" if n == old else "DOWN" for n in lab.nodes}, timeout=20)
    old_timeline = primaries(lab)[old]["timeline"]
    writer = Writer(lab, "127.0.0.1", port=5000, interval=0.05, log_dir=tmp_path).start()
    try:
        time.sleep(1.0)
        postmaster = lab.node_path(old, config.PGDATA + "/postmaster.pid").read_text().split()[0]
        killed_at = writer.mark("fault")
        lab.exec(old, ["kill", "-9", postmaster])
        wait_for(f"HAProxy marks {old} down", lambda: read_write_states(lab).get(old) == "DOWN", timeout=30)
        marked_down = time.time() - killed_at
        promoted, _ = wait_for("a new primary on a later timeline", lambda: {
            n: b for n, b in primaries(lab).items() if b["timeline"] > old_timeline}, timeout=90, step=0.05)
        promoted_at = time.time()
        (new, new_body), = promoted.items()
        assert new != old
        first = writer.wait_ack_after(promoted_at, timeout=INTER_S * FALL + MARGIN_S + 5)
        assert first is not None, writer.tail()
        reached_after = first.t - promoted_at
        writer.stop()
        writer.port = config.PG_PORT      # read the ids on the new primary itself, not through HAProxy
        result = writer.check(new)
    finally:
        writer.stop()
    print(f"old primary {old} marked down {marked_down:.2f}s after kill -9; {new} promoted "
          f"{promoted_at - killed_at:.2f}s after; port 5000 reached it {reached_after:.2f}s later; "
          f"{result.summary()}; errors seen: {result.error_samples}")
    assert marked_down <= INTER_S * FALL + MARGIN_S
    assert first.node == new and reached_after <= INTER_S * FALL + MARGIN_S
    # No write was accepted by a standby: every acknowledgement came from the primary of its time.
    assert result.node_runs == [old, new] and not result.interleaved
    assert not [e for e in result.error_samples if "read-only" in e], result.error_samples
    assert result.lost == []
    assert json.dumps(new_body).count("password") == 0
