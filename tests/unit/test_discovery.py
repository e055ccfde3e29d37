"""pha.discovery without a server: the original tools' argument shapes, conninfo checks, exit codes.

(Against real PostgreSQL, get_active_slaves and check_active_slave run in the UML end-to-end test.)
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pha import discovery
from pha.cli import main

pytestmark = pytest.mark.unit

NOWHERE = "host=/nonexistent/pha-test port=5499 user=postgres dbname=postgres"   # a unix socket that is not there


@pytest.mark.parametrize("args, conninfo", [
    (["host=10.0.0.1 user=rep"], "host=10.0.0.1 user=rep"),
    (["/usr/bin/psql", "host=10.0.0.1 user=rep"], "host=10.0.0.1 user=rep"),
    (["psql", "host=10.0.0.1"], "host=10.0.0.1"),
    (['psql "host=10.0.0.1 port=5433"'], "host=10.0.0.1 port=5433"),
    (["/usr/pgsql-15/bin/psql \"host=10.0.0.1\""], "host=10.0.0.1"),
    (["postgresql://rep@10.0.0.1/postgres"], "postgresql://rep@10.0.0.1/postgres"),
])
def test_get_args(args: list[str], conninfo: str) -> None:
    assert discovery.parse_get_args(args) == conninfo


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["host=x", "host=y"]])
def test_get_args_usage(args: list[str]) -> None:
    with pytest.raises(discovery.DiscoveryError, match="usage: get_active_slaves"):
        discovery.parse_get_args(args)


@pytest.mark.parametrize("args, expected", [
    (["port=5432 user=rep", "-h", "node2"], ("port=5432 user=rep", "node2")),
    (["port=5432 user=rep", "node2"], ("port=5432 user=rep", "node2")),
    (["/usr/bin/psql", "port=5432", "-h", "10.0.0.2"], ("port=5432", "10.0.0.2")),
    (['psql "port=5432 user=rep"', "-h", "node3"], ("port=5432 user=rep", "node3")),
])
def test_check_args(args: list[str], expected: tuple[str, str]) -> None:
    assert discovery.parse_check_args(args) == expected


@pytest.mark.parametrize("args", [[], ["port=5432"], ["port=5432", "-h"], ["a", "b", "c", "d"]])
def test_check_args_usage(args: list[str]) -> None:
    with pytest.raises(discovery.DiscoveryError, match="usage: check_active_slave"):
        discovery.parse_check_args(args)


def test_password_in_conninfo_is_refused() -> None:
    for conninfo in ("host=x password=secret", "host=x password = 'se cret'", "postgresql://u:secret@x/db",
                     "host=x sslpassword=secret"):
        with pytest.raises(discovery.DiscoveryError, match="holds a (ssl)?password") as info:
            discovery.check_conninfo(conninfo)
        assert "secret" not in str(info.value)


def test_bad_conninfo_is_named() -> None:
    with pytest.raises(discovery.DiscoveryError, match="the connection string is not a valid conninfo"):
        discovery.check_conninfo("host=x nosuchoption=1")
    with pytest.raises(discovery.DiscoveryError, match="single line"):
        discovery.check_conninfo("host=x\nuser=y")


def test_connection_params_add_timeouts_but_keep_the_users() -> None:
    params = discovery.connection_params("host=10.0.0.1 user=rep options='-c work_mem=4MB'", 7)
    assert params["connect_timeout"] == "7"
    assert params["options"] == "-c work_mem=4MB -c statement_timeout=5000"
    assert params["application_name"] == "pha-discovery"
    assert discovery.connection_params("host=x connect_timeout=2", 7)["connect_timeout"] == "2"
    assert discovery.connection_params("host=x", host="node2")["host"] == "node2"


def test_get_active_slaves_failure_exits_1_with_the_error_on_stderr() -> None:
    result = CliRunner().invoke(main, ["get-active-slaves", "/usr/bin/psql", NOWHERE])
    assert result.exit_code == 1
    assert "get_active_slaves" not in result.stdout and result.stdout == ""
    assert "/nonexistent/pha-test/.s.PGSQL.5499" in result.stderr


def test_get_active_slaves_refuses_a_password_in_argv() -> None:
    result = CliRunner().invoke(main, ["get-active-slaves", "host=x password=hunter2"])
    assert result.exit_code == 1 and "passfile" in result.stderr and "hunter2" not in result.stderr


def test_check_active_slave_failure_exits_1() -> None:
    result = CliRunner().invoke(main, ["check-active-slave", "port=5499 user=postgres", "-h", "/nonexistent/pha"])
    assert result.exit_code == 1 and result.stdout == "" and "/nonexistent/pha" in result.stderr


def test_check_active_slave_h_is_not_help() -> None:
    result = CliRunner().invoke(main, ["check-active-slave", "-h"])
    assert result.exit_code == 1 and "usage: check_active_slave" in result.stderr
    assert "Usage:" in CliRunner().invoke(main, ["check-active-slave", "--help"]).stdout


# ---- get_active_slaves prints only names that are the address the standby connects from

HOSTS = {"node2": ["10.0.0.2"], "node3": ["10.0.0.3"]}


def fake_resolver(name: str) -> list[str]:
    if name not in HOSTS:
        raise OSError(-2, "Name or service not known")
    return HOSTS[name]


@pytest.fixture
def primary(monkeypatch: pytest.MonkeyPatch) -> list[discovery.Standby]:
    from pha.lvs import hosts
    rows = [("node2", "10.0.0.2"), ("node3", "10.0.0.3"), ("10.0.0.5 10.0.0.6", "10.0.0.5"),
            ("node2\n10.0.0.9", "10.0.0.2"), ("198.51.100.7", "127.0.0.1"), ("node3", "10.0.0.4"),
            ("10.0.0.8", "10.0.0.8"), ("node9", None)]
    standbys = [discovery.Standby(name, "streaming", "async", addr, 0, 0.0) for name, addr in rows]
    monkeypatch.setattr(discovery, "active_standbys", lambda conninfo, timeout=5: standbys)
    monkeypatch.setattr(hosts, "local_resolver", lambda: fake_resolver)
    return standbys


def test_get_active_slaves_prints_valid_matching_names_one_a_line(primary: list) -> None:
    result = CliRunner().invoke(main, ["get-active-slaves", "host=10.0.0.1 user=rep"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "node2\nnode3\n10.0.0.8\n"
    assert result.stderr.count("skipped") == 5
    assert "10.0.0.6" not in result.stdout and "198.51.100.7" not in result.stdout


def test_get_active_slaves_json_keeps_the_same_standbys(primary: list) -> None:
    import json
    result = CliRunner().invoke(main, ["get-active-slaves", "--json", "host=10.0.0.1 user=rep"])
    assert [s["name"] for s in json.loads(result.stdout)] == ["node2", "node3", "10.0.0.8"]


def test_serving_is_the_same_rule_as_the_director(primary: list) -> None:
    usable, skipped = discovery.serving(primary, fake_resolver)
    assert [s.client_addr for s in usable] == ["10.0.0.2", "10.0.0.3", "10.0.0.8"]
    assert any("loopback" in p for p in skipped) and any("unix socket" in p for p in skipped)
