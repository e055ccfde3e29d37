"""Issue 13 (security review) for config.ini, `pha setup`, `pha distlock` and `pha health`.

Each test is one finding of the review: it failed on the reviewed commit (9ce2ee9) and
passes now. Findings of other modules are tested in those modules' own test files.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from pha import config, deploy, distlock
from pha.health.server import HealthService, Settings
from pha.health.state import Snapshot

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BASE = "pcs_template=muti\nwriter_vip=192.0.2.10\n" + "".join(f"node{i}=n{i}\n" for i in (1, 2, 3))
SECRET = "hunter2"
# Every way libpq lets a conninfo carry a password: the review's four misses among them.
SECRET_CONNINFOS = [
    f"host=lock password={SECRET}",
    f"host=lock PaSsWoRd={SECRET}".lower(),
    f"host=lock password\t={SECRET}",
    f"host=lock password = '{SECRET} x'",
    f"postgresql://pha:{SECRET}@lock/pha",
    f"postgresql://pha@lock/pha?password={SECRET}",
    f"postgresql://pha@lock/pha?connect_timeout=3&password={SECRET}",
    f"postgresql://pha@lock/pha?pass%77ord={SECRET}",
    f"host=lock sslpassword={SECRET}",
]


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "c.ini")
    return [str(p) for p in caught.value.problems]


# --- secrets: config.ini ------------------------------------------------------------------------
@pytest.mark.parametrize("conninfo", SECRET_CONNINFOS)
def test_config_refuses_a_password_in_the_lock_conninfo_and_never_shows_it(conninfo: str) -> None:
    found = problems(BASE + f"pgsql_distlock_conninfo=\"{conninfo}\"\n")
    joined = "\n".join(found)
    assert "holds a password" in joined or "cannot be read" in joined, joined
    assert SECRET not in joined


@pytest.mark.parametrize("conninfo", [c for c in SECRET_CONNINFOS if "'" not in c])   # inside '...'
def test_config_refuses_a_password_in_pha4pgsqls_psql_command(conninfo: str) -> None:
    found = "\n".join(problems(BASE + f"pgsql_distlock_psql_cmd='/usr/bin/psql \"{conninfo}\"'\n"))
    assert "holds a password" in found and SECRET not in found


@pytest.mark.parametrize("line", [
    f"pgsql_reppasword={SECRET}",             # misspelled secret key: unknown, its value hidden
    f"pgsql_rep_password={SECRET}",
    f"pgsql_reppasord={SECRET}",
    f"pgsql_reppassword='{SECRET}",           # malformed (unbalanced quote)
    f"pgsql_reppassword={SECRET} more",       # malformed (several words)
    f"pgsql_reppassword {SECRET}",            # not a key=value line at all
    f"monitor_password={SECRET}",
    f"pgsql_distlock_conninfo='host=x password={SECRET}' extra",
    f"pgsql_restore_command='cp %f /x?password={SECRET}'  'y'",
    f"colour='postgresql://u:{SECRET}@h/db'",
])
def test_config_errors_never_echo_a_secret(line: str) -> None:
    joined = "\n".join(problems(BASE + line + "\n"))
    assert joined and SECRET not in joined


def test_config_error_values_are_one_short_line() -> None:
    found = problems(BASE + "colour='" + "x" * 5000 + "'\n")
    assert len(found) == 1 and len(found[0]) < 400 and "(5000 characters)" in found[0]
    found = problems(BASE + "colour='a\x1b[2Jb'\n")
    assert "\x1b" not in found[0] and "\\x1b" in found[0]


# --- secrets: the lock command ----------------------------------------------------------------
@pytest.mark.parametrize("conninfo", SECRET_CONNINFOS)
def test_distlock_refuses_every_password_form_before_connecting(conninfo: str, capsys, monkeypatch) -> None:
    import psycopg
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: pytest.fail("connected"))
    assert distlock.run_inline(["--conninfo", conninfo, "lock"]) == 2
    err = capsys.readouterr().err
    assert "holds a password" in err and SECRET not in err


# --- secrets: the CIB -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("monitor_password", SECRET),
    ("primary_conninfo_opt", f"keepalives_idle=10 password={SECRET}"),
    ("primary_conninfo_opt", f"keepalives_idle=10 password\t={SECRET}"),
    ("realserver_discovery_conninfo", f"postgresql://u@h/db?pass%77ord={SECRET}"),
])
def test_setup_refuses_a_password_bound_for_the_cib(name: str, value: str) -> None:
    argv = ["pcs", "resource", "create", "pgsql", "ocf:pha:pgsql", "pgport=5432", f"{name}={value}",
            "op", "monitor", "interval=2s"]
    with pytest.raises(deploy.SetupError, match=f"resource pgsql: {name}") as caught:
        deploy.check_no_secrets(argv)
    assert SECRET not in str(caught.value)


def test_setup_accepts_a_passfile_and_plain_options() -> None:
    deploy.check_no_secrets(["pcs", "resource", "create", "pgsql", "ocf:pha:pgsql", "passfile=/etc/pha/pgpass",
                             "primary_conninfo_opt=keepalives_idle=10", "op", "monitor", "password=not-a-param"])


# --- write_passfile: root writing into the postgres user's directory -----------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def passfile_config(path: Path, pgdba: str = "nobody") -> config.Config:
    return config.parse(BASE + f"pgsql_repuser=rep\npgsql_reppassword={SECRET}\npgsql_passfile={path}\n"
                               f"pgsql_pgdba={pgdba}\n", "c.ini")


@needs_root
def test_a_symlink_planted_at_the_temp_path_is_not_followed(tmp_path: Path) -> None:
    root_only = tmp_path / "root-only"
    root_only.write_text("root's\n")
    os.chmod(root_only, 0o600)
    path = tmp_path / "home" / ".pgpass"
    path.parent.mkdir()
    os.symlink(root_only, f"{path}.pha-tmp")          # the old code's fixed temp name
    assert deploy.write_passfile(passfile_config(path)) == str(path)
    st = os.stat(root_only)
    assert root_only.read_text() == "root's\n" and st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    st = os.lstat(path)
    assert not path.is_symlink() and st.st_uid == 65534 and st.st_mode & 0o777 == 0o600


@needs_root
def test_a_precreated_readable_temp_file_does_not_make_the_passfile_readable(tmp_path: Path) -> None:
    path = tmp_path / ".pgpass"
    tmp = Path(f"{path}.pha-tmp")
    tmp.write_text("")
    os.chmod(tmp, 0o644)
    deploy.write_passfile(passfile_config(path))
    assert os.stat(path).st_mode & 0o777 == 0o600 and SECRET in path.read_text()


@needs_root
def test_a_symlinked_passfile_is_refused_not_read(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$secret-hash:19000::::::\n")
    path = tmp_path / ".pgpass"
    os.symlink(shadow, path)
    with pytest.raises(deploy.SetupError, match="a symlink is never followed"):
        deploy.write_passfile(passfile_config(path))
    assert path.is_symlink() and shadow.read_text().startswith("root:")


# --- pha health: details only for allowed networks ------------------------------------------------
PRIMARY = Snapshot(running=True, role="primary", timeline=3, wal_lsn="0/5000000", replication=(
    {"application_name": "node2", "client_addr": "10.82.0.12", "state": "streaming", "sync_state": "sync",
     "replay_lsn": "0/5000000", "lag_bytes": 0},), taken_at=1.0)


class FakeCache:
    refreshes = 0

    def fresh(self) -> Snapshot:
        return PRIMARY


class FakeTransport:
    def __init__(self, peer: tuple) -> None:
        self.peer, self.written, self.closed = peer, b"", False

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


def ask(peer: tuple, target: str = "/primary", **settings: object) -> tuple[int, bytes]:
    from pha.health.server import _HttpConnection
    service = HealthService(Settings(**settings), FakeCache())  # type: ignore[arg-type]
    conn = _HttpConnection(service)
    transport = FakeTransport(peer)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = transport.written.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", ["/primary", "/health", "/", "/read-only"])
def test_health_details_are_refused_to_a_network_not_allowed(target: str) -> None:
    status, body = ask(("198.51.100.7", 40000), target)
    assert status == 200 and b"node2" not in body and b"10.82.0.12" not in body and b"lag" not in body
    assert b'"role":"primary"' in body


def test_health_details_are_shown_to_loopback_and_to_allowed_networks() -> None:
    assert b"10.82.0.12" in ask(("127.0.0.1", 40000))[1]
    assert b"10.82.0.12" in ask(("::ffff:127.0.0.1", 40000, 0, 0))[1]
    lan = (ipaddress.ip_network("10.82.0.0/24"),)
    assert b"node2" in ask(("10.82.0.50", 40000), details=lan)[1]
    assert b"node2" not in ask(("127.0.0.1", 40000), details=lan)[1]


def test_status_codes_stay_the_same_for_everyone() -> None:
    for target, code in (("/primary", 200), ("/replica", 503), ("/", 200), ("/sync", 503)):
        assert ask(("198.51.100.7", 1), target)[0] == ask(("127.0.0.1", 1), target)[0] == code


def test_the_answer_cache_keeps_details_apart() -> None:
    service = HealthService(Settings(), FakeCache())  # type: ignore[arg-type]
    head = b"GET /primary HTTP/1.1"
    detailed = service.answer_head(head, PRIMARY, details=True)
    assert b"node2" in detailed and b"node2" not in service.answer_head(head, PRIMARY, details=False)
    assert service.answer_head(head, PRIMARY, details=True) == detailed


# --- the health service's unit -----------------------------------------------------------------------
def test_the_health_service_runs_as_its_own_user_with_read_only_cib_access() -> None:
    unit = (ROOT / "templates" / "pha-health.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] not in ("root", "postgres", "hacluster") and settings["Group"] != "haclient"
    assert "enable-acl=true" in unit and "health_user=" + settings["User"] in unit
    loaded = config.parse(BASE + f"fencing=none\nhealth_user={settings['User']}\n", "c.ini")
    acl = [argv for argv in deploy.pcs_commands(loaded) if argv[:2] == ["pcs", "acl"]]
    assert acl[0][-3:] == ["read", "xpath", "/cib"] and acl[1][-2:] == [settings["User"], deploy.HEALTH_ROLE]


@pytest.mark.parametrize("euid, acl, warned", [
    (0, "true", "runs as root"), (1000, None, "enable-acl is not true"), (1000, "false", "enable-acl is not true"),
    (1000, "true", None)])
def test_the_health_service_says_when_it_could_write_the_cib(euid, acl, warned, monkeypatch) -> None:
    from pha import crm
    from pha.health.probe import cib_write_warning
    monkeypatch.setattr(crm.Crm, "get_property", lambda self, name, *a, **k: acl if name == "enable-acl" else None)
    warning = cib_write_warning(1.0, euid=euid)
    assert warning is None if warned is None else warned in warning
