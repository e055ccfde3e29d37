"""`pha health` on a real streaming cluster, and real HAProxy in front of it.

One lab (node1 primary, node2 and node3 streaming standbys, Pacemaker running
without resources) for the whole module. The services run in the nodes; every
check comes from the lab's client namespace.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from health_client import HealthServices, client_run, http_action, pg_sql
from pgsql_cluster import wait_for
from pha import haproxy
from pha.lab import postgres
from pha.lab.core import LabCommandError

pytestmark = pytest.mark.lab

LAG = "16MB"
ENDPOINTS = ["/primary", "/master", "/read-write", "/replica", "/standby", f"/replica?lag={LAG}",
             "/replica?lag=1GB", "/read-only", f"/read-only?lag={LAG}", "/sync", "/async",
             f"/async?lag={LAG}", "/health", "/liveness", "/"]
# endpoint -> status on (primary, sync standby, lagging async standby, stopped PostgreSQL)
MATRIX = {
    "/primary": (200, 503, 503, 503), "/master": (200, 503, 503, 503),
    "/read-write": (200, 503, 503, 503),
    "/replica": (503, 200, 200, 503), "/standby": (503, 200, 200, 503),
    f"/replica?lag={LAG}": (503, 200, 503, 503), "/replica?lag=1GB": (503, 200, 200, 503),
    "/read-only": (200, 200, 200, 503), f"/read-only?lag={LAG}": (200, 200, 503, 503),
    "/sync": (503, 200, 503, 503), "/async": (503, 503, 200, 503), f"/async?lag={LAG}": (503, 503, 503, 503),
    "/health": (200, 200, 200, 503), "/liveness": (200, 200, 200, 200), "/": (200, 206, 206, 503),
}
TEXT_PORT = 5433


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"pg_running": True}


@pytest.fixture(scope="module")
def services(lab, tmp_path_factory):
    running = HealthServices(lab, tmp_path_factory.mktemp("health"))
    try:
        for node in lab.nodes:
            running.start(node, "--text-port", str(TEXT_PORT), "--details-allow", lab.subnet)
        yield running
    finally:
        running.stop_all()


def set_attrs(lab, node: str, status: str, data_status: str) -> None:
    for name, value in (("pgsql-status", status), ("pgsql-data-status", data_status)):
        lab.exec("node1", ["crm_attribute", f"--node={node}", f"--name={name}", "--lifetime=reboot",
                           f"--update={value}"])


def statuses(lab, node: str, method: str = "GET") -> dict[str, int]:
    results = client_run(lab, [http_action(lab, node, t, method=method) for t in ENDPOINTS])
    return {t: r["status"] for t, r in zip(ENDPOINTS, results)}


def text_answers(lab) -> dict[str, str]:
    results = client_run(lab, [{"kind": "raw", "host": lab.node_ip(n), "port": TEXT_PORT} for n in lab.nodes])
    return {n: r["answer"] for n, r in zip(lab.nodes, results)}


def body(lab, node: str, target: str = "/health") -> dict:
    return client_run(lab, [http_action(lab, node, target)])[0]["body"]


def test_bodies_before_any_pha_attribute(lab, services):
    primary, standby = body(lab, "node1"), body(lab, "node2")
    assert primary["role"] == "primary" and primary["timeline"] == 1 and primary["wal_lsn"]
    assert sorted(r["application_name"] for r in primary["replication"]) == ["node2", "node3"]
    assert standby["role"] == "standby" and standby["wal_receiver"] == "streaming"
    assert standby["lag_bytes"] is not None and standby["replay_lsn"]
    assert "pha" not in primary and "pha" not in standby and standby["sync_state"] is None


def test_endpoint_matrix(lab, services):
    set_attrs(lab, "node1", "PRI", "LATEST")
    set_attrs(lab, "node2", "HS:sync", "STREAMING|SYNC")
    set_attrs(lab, "node3", "HS:async", "STREAMING|ASYNC")
    pg_sql(lab, "node3", "select pg_wal_replay_pause()")
    pg_sql(lab, "node1", "create table lagmaker as select g, repeat('x', 200) as pad "
                         "from generate_series(1, 150000) g")
    lagging, _ = wait_for("node3 lagging by 32MB", lambda: (b := body(lab, "node3"))
                          and (b["lag_bytes"] or 0) > 32 * 1024 ** 2 and b, timeout=30, step=0.3)
    assert lagging["replay_paused"] is True
    wait_for("node2 caught up", lambda: body(lab, "node2")["lag_bytes"] == 0, timeout=30, step=0.3)
    time.sleep(1.1)     # every cache has read the attributes
    seen = {node: statuses(lab, node) for node in lab.nodes}
    assert seen["node2"]["/sync"] == 200, body(lab, "node2")
    assert body(lab, "node2")["pha"] == {"pgsql-status": "HS:sync", "pgsql-data-status": "STREAMING|SYNC"}
    assert statuses(lab, "node3", "HEAD") == seen["node3"]
    assert statuses(lab, "node1", "OPTIONS") == seen["node1"]
    assert text_answers(lab) == {"node1": "production\n", "node2": "standby\n", "node3": "standby\n"}

    postgres.stop(lab, "node3")
    try:
        time.sleep(1.1)
        seen["stopped"] = statuses(lab, "node3")
        down = body(lab, "node3")
        assert down.pop("checked_at") > 0
        assert down == {"role": "unknown", "running": False,
                        "pha": {"pgsql-status": "HS:async", "pgsql-data-status": "STREAMING|ASYNC"}}
        assert text_answers(lab)["node3"] == ""          # closed without a word
        assert services.alive("node3")
    finally:
        postgres.start(lab, "node3")
        postgres.wait_streaming(lab, "node1", ["node2", "node3"])
    expected = {t: dict(zip(("node1", "node2", "node3", "stopped"), codes)) for t, codes in MATRIX.items()}
    actual = {t: {where: seen[where][t] for where in ("node1", "node2", "node3", "stopped")} for t in MATRIX}
    assert actual == expected


def test_flood_costs_one_query_per_interval(lab, services):
    before = body(lab, "node1", "/liveness")
    flood = client_run(lab, [{"kind": "flood", "host": lab.node_ip("node1"), "port": 8008,
                              "target": "/primary", "threads": 50, "per_thread": 60}])[0]
    after = body(lab, "node1", "/liveness")
    assert flood["count"] == 3000 and flood["statuses"] == [200]
    refreshes = after["refreshes"] - before["refreshes"]
    assert refreshes <= flood["seconds"] / 1.0 + 3, (refreshes, flood["seconds"])
    sessions = pg_sql(lab, "node1", "select count(*) from pg_stat_activity where application_name = 'pha-health'")
    assert sessions == [1]


def test_slow_clients_do_not_starve_checks(lab, services):
    # 200 clients trickling one byte each 50 ms, reconnecting when cut, for 5 s.
    attack = {"kind": "slowloris", "host": lab.node_ip("node1"), "port": 8008, "target": "/primary",
              "count": 200, "seconds": 5.0}
    result = client_run(lab, [attack])[0]
    checks = result["checks"]
    assert len(checks) > 30
    assert all(status == 200 for status, _ in checks), checks
    assert max(seconds for _, seconds in checks) < 1.0, checks     # well inside a check timeout
    assert body(lab, "node1", "/liveness")["timed_out"] >= 200     # slow ones are cut (408) and come back


def test_when_full_the_slowest_connections_make_room(lab, services):
    services.start("node1", "--port", "8009", "--max-connections", "50", "--request-timeout", "30",
                   name="node1-small")
    try:
        attack = {"kind": "slowloris", "host": lab.node_ip("node1"), "port": 8009, "target": "/primary",
                  "count": 200, "seconds": 4.0}
        result = client_run(lab, [attack])[0]
        checks = result["checks"]
        answered = [seconds for status, seconds in checks if status == 200]
        # One check in 50 may be lost (seen once in CI on a loaded 2-core machine: the
        # entry was not kept); every answer comes well inside a check timeout.
        failed = [c for c in checks if c[0] != 200]
        print(f"slowloris: {len(answered)} checks answered, failed: {failed}")
        assert answered and len(failed) <= len(checks) // 50, failed
        assert max(answered) < 1.0, checks
        stats = client_run(lab, [http_action(lab, "node1", "/liveness", 8009)])[0]["body"]
        assert stats["evicted"] > 100 and stats["connections"] <= 50
    finally:
        services.stop("node1-small")


def test_oversized_and_garbage_requests_get_4xx(lab, services):
    host = lab.node_ip("node2")
    cases = {
        "oversized": ("GET /replica HTTP/1.1\r\nX-Big: " + "b" * 10000 + "\r\n\r\n", 431),
        "garbage": ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 junk\r\n\r\n", 400),
        "no request line": ("\r\n\r\n", 400),
        "bad header": ("GET /replica HTTP/1.1\r\nthis is no header\r\n\r\n", 400),
        "post": ("POST /primary HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 405),
        "http2 preface": ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        "unknown path": ("GET /etc/passwd HTTP/1.1\r\n\r\n", 404),
        "bad lag": ("GET /replica?lag=much HTTP/1.1\r\n\r\n", 400),
        "never finished": ("GET /replica HTTP/1.1\r\nHost: x", 408),
    }
    results = client_run(lab, [{"kind": "raw", "host": host, "port": 8008, "data": data}
                               for data, _ in cases.values()])
    got = {name: int(r["answer"].split(" ")[1]) if r["answer"].startswith("HTTP/1.1 ") else r["answer"]
           for name, r in zip(cases, results)}
    assert got == {name: status for name, (_, status) in cases.items()}
    assert services.alive("node2")
    assert client_run(lab, [http_action(lab, "node2", "/replica")])[0]["status"] == 200


def test_allowlist(lab, services):
    services.start("node1", "--port", "8010", "--text-port", "5434", "--allow", f"{lab.node_ip('node2')}/32",
                   name="node1-allow")
    try:
        from_client = client_run(lab, [http_action(lab, "node1", "/primary", 8010),
                                       {"kind": "raw", "host": lab.node_ip("node1"), "port": 5434}])
        assert from_client[0]["status"] == 403 and from_client[1]["answer"] == ""
        code = ("import urllib.request\n"
                f"print(urllib.request.urlopen('http://{lab.node_ip('node1')}:8010/primary').status)")
        assert lab.python("node2", code).stdout.strip() == "200"
    finally:
        services.stop("node1-allow")


def test_details_only_for_allowed_networks(lab, services):
    services.start("node1", "--port", "8011", name="node1-brief")     # details: loopback only
    try:
        status, body = (lambda r: (r["status"], r["body"]))(
            client_run(lab, [http_action(lab, "node1", "/primary", 8011)])[0])
        assert status == 200 and body == {"role": "primary", "running": True}
        code = ("import json, urllib.request\n"
                "print(json.dumps(json.load(urllib.request.urlopen('http://127.0.0.1:8011/primary'))))")
        local = json.loads(lab.python("node1", code).stdout)
        assert sorted(r["application_name"] for r in local["replication"]) == ["node2", "node3"]
    finally:
        services.stop("node1-brief")


def haproxy_stats(lab) -> dict[tuple[str, str], str]:
    """(listener, server) -> status, from HAProxy's CSV stats."""
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:7000/;csv').read().decode())"
    try:
        csv = lab.python("client", code).stdout
    except LabCommandError:      # HAProxy is not listening yet
        return {}
    rows = [line.split(",") for line in csv.splitlines()
            if line and not line.startswith("#")]
    return {(r[0], r[1]): r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


WHO = ("import json, sys, psycopg\nout = []\nfor port in json.loads(sys.argv[1]):\n"
       "    with psycopg.connect(host='127.0.0.1', port=port, user='postgres', dbname='postgres',"
       " connect_timeout=3) as c:\n"
       "        out.append(c.execute('select host(inet_server_addr()), pg_is_in_recovery()').fetchone())\n"
       "print(json.dumps(out))")


def test_haproxy_routes_by_role(lab, services, tmp_path):
    ini = tmp_path / "config.ini"
    addresses = " ".join(f"{n}={lab.node_ip(n)}" for n in lab.nodes)
    ini.write_text("".join(f"node{i}={n}\n" for i, n in enumerate(lab.nodes, 1))
                   + f'haproxy_addresses="{addresses}"\nhaproxy_inter=500ms\nhaproxy_fall=2\nhaproxy_rise=1\n')
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy.render(haproxy.read_config(str(ini))))
    proc = subprocess.Popen(lab.client_command(["haproxy", "-db", "-f", str(cfg)]), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        want = {("pgsql-read-write", "node1"): "UP", ("pgsql-read-write", "node2"): "DOWN",
                ("pgsql-read-write", "node3"): "DOWN", ("pgsql-read-only", "node1"): "DOWN",
                ("pgsql-read-only", "node2"): "UP", ("pgsql-read-only", "node3"): "UP"}
        wait_for(f"HAProxy server states {want}", lambda: haproxy_stats(lab) == want, timeout=20, step=0.3)
        ports = [5000] * 4 + [5001] * 6
        seen = json.loads(lab.python("client", WHO.replace("sys.argv[1]", repr(json.dumps(ports)))).stdout)
        assert seen[:4] == [[lab.node_ip("node1"), False]] * 4
        readers = [address for address, in_recovery in seen[4:] if in_recovery]
        assert len(readers) == 6 and set(readers) == {lab.node_ip("node2"), lab.node_ip("node3")}
        assert all(a != b for a, b in zip(readers, readers[1:])), readers     # round robin alternates
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_health_users_acl_reads_the_cib_and_writes_nothing(lab):
    """deploy.acl_commands on the lab's Pacemaker: a haclient member with the role reads node
    attributes (what pha health does) and cannot write; without ACLs it could."""
    from pha import cluster, crm, deploy

    def run(argv, timeout):
        done = lab.exec("node1", list(argv), check=False, timeout=timeout)
        return crm.CommandResult(done.returncode, done.stdout, done.stderr)

    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=haclient", "--"]
    write = as_user + ["crm_attribute", "--type=crm_config", "--name=pha-acl-test", "--update=1"]
    read = as_user + ["crm_attribute", "--node=node1", "--name=pgsql-status", "--lifetime=reboot",
                      "--query", "--quiet"]
    lab.exec("node1", ["crm_attribute", "--node=node1", "--name=pgsql-status", "--lifetime=reboot",
                       "--update=PRI"])
    assert lab.exec("node1", write, check=False).returncode == 0          # haclient without ACLs: writes
    lab.exec("node1", ["crm_attribute", "--type=crm_config", "--name=pha-acl-test", "--delete"])
    cluster.apply(deploy.acl_commands("nobody"), run)
    try:
        assert lab.exec("node1", read).stdout.strip() == "PRI"
        denied = lab.exec("node1", write, check=False)
        assert denied.returncode != 0 and "ermission denied" in denied.stderr, denied
    finally:
        lab.exec("node1", ["pcs", "acl", "user", "delete", "nobody"], check=False)
        lab.exec("node1", ["pcs", "acl", "role", "delete", deploy.HEALTH_ROLE], check=False)
        lab.exec("node1", ["crm_attribute", "--type=crm_config", "--name=enable-acl", "--delete"], check=False)
        lab.exec("node1", ["crm_attribute", "--node=node1", "--name=pgsql-status", "--lifetime=reboot",
                           "--delete"], check=False)
