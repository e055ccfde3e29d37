"""`pha distlock` against a real PostgreSQL (node1 of a streaming lab), used from the other nodes."""
from __future__ import annotations

import sys
import time

import pytest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_options() -> dict:
    return {"pg_running": True}


def distlock(lab, node: str, *args: str):
    conninfo = f"host={lab.node_ip('node1')} user=postgres dbname=postgres"
    argv = [sys.executable, "-m", "pha.cli", "distlock", "--conninfo", conninfo, "--name", "t",
            "--holder", node, *args]
    return lab.exec(node, argv, check=False, timeout=30)


def test_one_holder_at_a_time_until_the_lease_expires(lab) -> None:
    assert distlock(lab, "node2", "--ttl", "3", "lock").returncode == 0
    refused = distlock(lab, "node3", "--ttl", "3", "lock")
    assert refused.returncode == 1 and "held by node2" in refused.stderr
    assert distlock(lab, "node2", "--ttl", "3", "lock").returncode == 0        # renewal
    assert "t: node2 until" in distlock(lab, "node3", "status").stdout
    time.sleep(3.5)
    assert distlock(lab, "node3", "--ttl", "3", "lock").returncode == 0        # expired: taken over
    assert distlock(lab, "node2", "--ttl", "3", "lock").returncode == 1


def test_unlock_releases_only_ones_own_lease(lab) -> None:
    assert distlock(lab, "node3", "--ttl", "30", "lock").returncode == 0
    assert distlock(lab, "node2", "unlock").returncode == 0                    # not node2's: no effect
    assert distlock(lab, "node2", "lock").returncode == 1
    assert distlock(lab, "node3", "unlock").returncode == 0
    assert "t: free" in distlock(lab, "node2", "status").stdout
    assert distlock(lab, "node2", "lock").returncode == 0


def test_a_password_in_the_conninfo_is_refused(lab) -> None:
    argv = [sys.executable, "-m", "pha.cli", "distlock", "--conninfo",
            f"host={lab.node_ip('node1')} password=secret", "lock"]
    out = lab.exec("node2", argv, check=False)
    assert out.returncode == 2 and "put it in a passfile" in out.stderr and "secret" not in out.stderr


def test_an_unreachable_lock_server_is_exit_2(lab) -> None:
    argv = [sys.executable, "-m", "pha.cli", "distlock", "--conninfo",
            f"host={lab.vip(99)} user=postgres connect_timeout=1", "--timeout", "1", "lock"]
    out = lab.exec("node2", argv, check=False, timeout=30)
    assert out.returncode == 2 and "cannot reach the lock server" in out.stderr
