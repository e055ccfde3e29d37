"""The namespace lab for lab tests: one bring-up per test module, always torn down."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def lab_options() -> dict:
    """Keyword arguments of `Lab.up` for this module's lab; override it in a test module."""
    return {}


@pytest.fixture(scope="module")
def lab(lab_options):
    """A 3-node lab (PostgreSQL ready and stopped unless lab_options say otherwise).

    Uses $PHA_LAB_STATE or /var/tmp/pha-lab, and cleans a leftover lab first.
    """
    from pha.lab.core import Lab, missing_prerequisites

    missing = missing_prerequisites(pg=lab_options.get("pg", True))
    if missing:
        pytest.skip("the lab needs " + ", ".join(missing))
    the_lab = Lab(os.environ.get("PHA_LAB_STATE"))
    the_lab.up(**{"nodes": 3, "force": True, **lab_options})
    try:
        yield the_lab
    finally:
        if the_lab.state_dir.exists():
            the_lab.down()


@pytest.fixture(scope="module")
def sync_cluster(lab):
    """The lab with pha's pgsql cluster in sync mode, healthy (tests/lab/pgsql_cluster.py)."""
    from pgsql_cluster import create_pgsql_cluster
    timings = create_pgsql_cluster(lab, rep_mode="sync")
    print(f"pgsql cluster healthy {timings['healthy']:.1f}s after the pcs push")
    return lab
