"""The namespace lab for lab tests: one bring-up per test module, always torn down."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

LOG_DIRS = ("/var/log/pacemaker", "/var/log/corosync", "/var/log/postgresql", "/var/log/pha")


@pytest.fixture(scope="module")
def lab_options() -> dict:
    """Keyword arguments of `Lab.up` for this module's lab; override it in a test module."""
    return {}


@pytest.fixture(scope="module")
def lab(request, lab_options):
    """A 3-node lab (PostgreSQL ready and stopped unless lab_options say otherwise).

    Uses $PHA_LAB_STATE or /var/tmp/pha-lab, and cleans a leftover lab first.
    With $PHA_LAB_KEEP_LOGS=DIR, the nodes' logs are copied to DIR/<module>/
    before the lab goes down.
    """
    from pha.lab import config
    from pha.lab.core import Lab, missing_prerequisites

    version = lab_options.get("pg_version") or config.PG_VERSION
    missing = missing_prerequisites(version if lab_options.get("pg", True) else None)
    if missing:
        pytest.skip("the lab needs " + ", ".join(missing))
    the_lab = Lab(os.environ.get("PHA_LAB_STATE"))
    the_lab.up(**{"nodes": 3, "force": True, **lab_options})
    try:
        yield the_lab
    finally:
        if the_lab.state_dir.exists():
            keep_logs(the_lab, request.module.__name__)
            the_lab.down()


def keep_logs(the_lab, module: str) -> None:
    """Copy the nodes' logs out of the lab state when $PHA_LAB_KEEP_LOGS names a directory."""
    keep = os.environ.get("PHA_LAB_KEEP_LOGS")
    if not keep:
        return
    for node in the_lab.nodes:
        for directory in LOG_DIRS:
            source = the_lab.node_path(node, directory)
            if source.is_dir():
                shutil.copytree(source, Path(keep) / module / node / directory.lstrip("/"), dirs_exist_ok=True)


@pytest.fixture(scope="module")
def sync_cluster(lab):
    """The lab with pha's pgsql cluster in sync mode, healthy (tests/lab/pgsql_cluster.py)."""
    from pgsql_cluster import create_pgsql_cluster
    timings = create_pgsql_cluster(lab, rep_mode="sync")
    print(f"pgsql cluster healthy {timings['healthy']:.1f}s after the pcs push")
    return lab
