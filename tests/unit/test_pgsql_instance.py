"""pha.pgsql.instance, process and binaries: no shell, safe files, real PIDs, stops that end.

The tests marked `needs_pg` run a real PostgreSQL (the machine's binaries) in a
temporary directory as the postgres user: they need root, and skip otherwise.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pha.pgsql import binaries, process
from pha.pgsql.instance import Instance, PgError, conf_line, split_options

pytestmark = pytest.mark.unit
SERVERS = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
try:
    PG_USER = pwd.getpwnam("postgres")
except KeyError:
    PG_USER = None
needs_pg = pytest.mark.skipif(os.geteuid() != 0 or not SERVERS or PG_USER is None,
                              reason="needs root, a postgres user and PostgreSQL's binaries")
CANARY = "$(touch {dir}/canary)"


# --- pha.conf grammar -------------------------------------------------------------------
@pytest.mark.parametrize("value, line", [
    ("plain", "k = 'plain'\n"),
    ("it's", "k = 'it''s'\n"),
    ("C:\\dir\\", "k = 'C:\\\\dir\\\\'\n"),     # a trailing backslash no longer eats the quote
    ("cp %p /x/'%f'", "k = 'cp %p /x/''%f'''\n"),
    ("", "k = ''\n"),
])
def test_conf_values_are_escaped(value: str, line: str) -> None:
    assert conf_line("k", value) == line


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_conf_values_with_a_newline_or_nul_are_refused(value: str) -> None:
    with pytest.raises(PgError, match="newline or NUL"):
        conf_line("restore_command", value)


def test_conf_names_are_checked() -> None:
    with pytest.raises(PgError, match="not a PostgreSQL parameter name"):
        conf_line("a = 'b'\nc", "x")


@needs_pg
def test_escaped_values_read_back_by_postgresql(pgdata: Path) -> None:
    """PostgreSQL itself parses what conf_line writes, backslashes and quotes included."""
    value = "it's C:\\dir\\"
    (pgdata / "pha.conf").write_text(conf_line("cluster_name", value))
    os.chown(pgdata / "pha.conf", PG_USER.pw_uid, PG_USER.pw_gid)
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write(f"include = '{pgdata}/pha.conf'\n")
    done = subprocess.run([os.path.join(os.path.dirname(SERVERS[-1]), "postgres"), "-D", str(pgdata),
                           "-C", "cluster_name"], capture_output=True, text=True, user=PG_USER.pw_uid,
                          group=PG_USER.pw_gid, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == value


# --- options ----------------------------------------------------------------------------
def test_options_are_split_without_a_shell() -> None:
    assert split_options("start_opt", "-c 'work_mem=4MB' -c x=$(id);y") == ["-c", "work_mem=4MB", "-c", "x=$(id);y"]
    assert split_options("start_opt", "") == []


def test_an_unbalanced_quote_names_the_parameter() -> None:
    with pytest.raises(PgError, match=r"parameter start_opt=-c 'x: .*unbalanced quote"):
        split_options("start_opt", "-c 'x")
    pg = Instance("", "/nonexistent", 5432, "/tmp", "root", "postgres", None, "", "-W \"", None)
    with pytest.raises(PgError, match="parameter ctl_opt"):
        pg.check_options()


# --- files ------------------------------------------------------------------------------
def _instance(pgdata: Path, user: str = "root", **kw) -> Instance:
    return Instance(kw.get("pgctl", ""), str(pgdata), kw.get("port", 5432), kw.get("socketdir", str(pgdata)),
                    user, "postgres", kw.get("config"), kw.get("start_opt", ""), "", kw.get("logfile"))


def test_write_conf_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (pgdata / "pha.conf").symlink_to(victim)            # the target
    (pgdata / "pha.conf.pha-tmp").symlink_to(victim)    # the old temporary name
    pg = _instance(pgdata)
    assert pg.write_conf({"primary_conninfo": "host=x", "restore_command": "cp 'a' b"})
    assert victim.read_text() == "precious\n"
    conf = pgdata / "pha.conf"
    assert not conf.is_symlink() and os.stat(conf).st_mode & 0o777 == 0o600
    assert "restore_command = 'cp ''a'' b'\n" in conf.read_text()
    assert not pg.write_conf({"primary_conninfo": "host=x", "restore_command": "cp 'a' b"})  # unchanged
    assert sorted(p.name for p in pgdata.iterdir()) == ["pha.conf", "pha.conf.pha-tmp"]


@pytest.mark.skipif(PG_USER is None or os.geteuid() != 0, reason="needs root and a postgres user")
def test_files_belong_to_the_database_user(tmp_path: Path) -> None:
    pg = _instance(tmp_path, user="postgres")
    pg.write_conf({"hot_standby": "on"})
    pg.set_standby(True)
    for name in ("pha.conf", "standby.signal"):
        st = os.stat(tmp_path / name)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (PG_USER.pw_uid, PG_USER.pw_gid, 0o600)
    pg.set_standby(False)
    assert not (tmp_path / "standby.signal").exists()


def test_a_bad_value_leaves_pha_conf_alone(tmp_path: Path) -> None:
    pg = _instance(tmp_path)
    pg.write_conf({"a": "1"})
    with pytest.raises(PgError, match="restore_command"):
        pg.write_conf({"a": "1", "restore_command": "cp\nx"})
    assert (tmp_path / "pha.conf").read_text().endswith("a = '1'\n")


def test_ensure_included_keeps_owner_and_mode_and_refuses_a_link(tmp_path: Path) -> None:
    config = tmp_path / "postgresql.conf"
    config.write_text("port = 5432")
    os.chmod(config, 0o640)
    pg = _instance(tmp_path, config=str(config))
    pg.ensure_included()
    pg.ensure_included()
    text = config.read_text()
    assert text.startswith("port = 5432\ninclude_if_exists = ") and text.count("include_if_exists") == 1
    assert os.stat(config).st_mode & 0o777 == 0o640
    victim = tmp_path / "victim"
    victim.write_text("x")
    config.unlink()
    config.symlink_to(victim)
    with pytest.raises(PgError, match=r"parameter config=.*symlink"):
        pg.ensure_included()
    assert victim.read_text() == "x"


def test_auto_conf_is_read_without_following_a_link(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("primary_conninfo = 'password=x'\n")
    (tmp_path / "postgresql.auto.conf").symlink_to(tmp_path / "secret")
    with pytest.raises(PgError, match="postgresql.auto.conf"):
        _instance(tmp_path).auto_conf_settings()


# --- binaries ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, major", [("15\n", 15), ("9.6\n", 9), ("12", 12)])
def test_pg_version(tmp_path: Path, text: str, major: int) -> None:
    (tmp_path / "PG_VERSION").write_text(text)
    assert binaries.pg_version(str(tmp_path)) == major


@pytest.mark.parametrize("text", ["junk\n", "", "15\n16\n", "1" * 40])
def test_pg_version_junk_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "PG_VERSION").write_text(text)
    with pytest.raises(PgError, match=r"parameter pgdata=.*PG_VERSION holds .*not a PostgreSQL version"):
        binaries.pg_version(str(tmp_path))


def test_pg_version_missing(tmp_path: Path) -> None:
    with pytest.raises(PgError, match="cannot read PG_VERSION"):
        binaries.pg_version(str(tmp_path))


def _fake_bindir(root: Path, name: str, version: str = "") -> Path:
    bindir = root / name
    bindir.mkdir(parents=True)
    server = bindir / "postgres"
    server.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")
    server.chmod(0o755)
    return bindir


def test_bindir_from_pg_version_in_the_distribution_layouts(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PG_VERSION").write_text("16\n")
    _fake_bindir(tmp_path, "debian/15/bin")
    rpm = _fake_bindir(tmp_path, "pgsql-16/bin")
    layouts = (str(tmp_path / "debian/{major}/bin"), str(tmp_path / "pgsql-{major}/bin"))
    never = lambda argv: pytest.fail("no program should run")  # noqa: E731
    assert binaries.bindir_for(str(tmp_path / "data"), layouts=layouts, run=never) == str(rpm)


def test_bindir_from_pg_config_then_path_checks_the_version(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PG_VERSION").write_text("14\n")
    wrong = _fake_bindir(tmp_path, "pgconfig", "16.1")
    right = _fake_bindir(tmp_path, "onpath", "14.9")

    def run(argv: list[str]):
        if argv == ["pg_config", "--bindir"]:
            return f"{wrong}\n"
        return subprocess.run(argv, capture_output=True, text=True).stdout

    found = binaries.bindir_for(str(tmp_path / "data"), layouts=(str(tmp_path / "none/{major}"),),
                                search_path=f"{tmp_path}/empty:{right}", run=run)
    assert found == str(right)
    with pytest.raises(PgError, match=r"PostgreSQL 14 .*not installed.*none/14.*pg_config --bindir, PATH.*pgctl"):
        binaries.bindir_for(str(tmp_path / "data"), layouts=(str(tmp_path / "none/{major}"),),
                            search_path=str(tmp_path / "empty"), run=run)


def test_bindir_from_pgctl(tmp_path: Path) -> None:
    bindir = _fake_bindir(tmp_path, "bin")
    (bindir / "pg_ctl").write_text("")
    with pytest.raises(PgError, match="parameter pgctl=.*not an executable"):
        binaries.bindir_for("/nonexistent", str(bindir / "pg_ctl"))
    (bindir / "pg_ctl").chmod(0o755)
    assert binaries.bindir_for("/nonexistent", str(bindir / "pg_ctl")) == str(bindir)


# --- PIDs ---------------------------------------------------------------------------------
def _fake_proc(root: Path, pgdata: Path, procs: dict[int, tuple[str, Path, str, int]]) -> Path:
    """A /proc with `procs`: pid -> (exe, cwd, state, ppid)."""
    proc = root / "proc"
    proc.mkdir()
    (proc / "self").symlink_to(str(os.getpid()))
    for pid, (exe, cwd, state, ppid) in procs.items():
        d = proc / str(pid)
        d.mkdir()
        (d / "exe").symlink_to(exe)
        (d / "cwd").symlink_to(cwd)
        (d / "stat").write_text(f"{pid} (post gres) {state} {ppid} 1 1 0 -1\n")
    return proc


def _pid_file(pgdata: Path, pid: int, status: str = "ready") -> None:
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n1700000000\n5432\n/tmp\n*\n  1 2\n{status}\n")


def test_a_reused_pid_is_not_the_postmaster(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    server = "/usr/lib/postgresql/15/bin/postgres"
    proc = _fake_proc(tmp_path, pgdata, {
        100: (server, pgdata, "S", 1),                    # the postmaster
        101: (server, pgdata, "T", 100),                  # a child
        200: ("/usr/bin/sleep", pgdata, "S", 1),          # a reused PID, in PGDATA even
        300: (server, other, "S", 1),                     # another instance's postmaster
        400: (server + " (deleted)", pgdata, "Z", 1),     # a zombie
    })
    for pid, expected in ((100, 100), (200, None), (300, None), (400, None), (999, None)):
        _pid_file(pgdata, pid)
        assert process.postmaster_pid(str(pgdata), str(proc)) == expected, pid
    assert sorted(process.server_processes(str(pgdata), 100, str(proc))) == [100, 101]
    (pgdata / "postmaster.pid").write_text("junk\n")
    assert process.postmaster_pid(str(pgdata), str(proc)) is None


def test_an_upgraded_binary_still_counts(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    proc = _fake_proc(tmp_path, pgdata, {7: ("/usr/lib/postgresql/15/bin/postgres (deleted)", pgdata, "S", 1)})
    _pid_file(pgdata, 7)
    pg = Instance("", str(pgdata), 5432, "/tmp", "root", "postgres", None, "", "", None, proc=str(proc))
    assert pg.is_running()


@pytest.mark.skipif(PG_USER is None or os.geteuid() != 0, reason="needs root and a postgres user")
def test_a_real_reused_pid_gives_not_running(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        _pid_file(tmp_path, sleeper.pid)
        pg = _instance(tmp_path)
        assert not pg.is_running()
        assert pg.remove_stale_pid_file() and not (tmp_path / "postmaster.pid").exists()
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# --- no shell: a fake postgres records its argv ---------------------------------------------------
@pytest.fixture
def pg_dir():
    """A directory the postgres user can use (pytest's tmp_path is root's 0700)."""
    path = tempfile.mkdtemp(prefix="pha-pg-test-")
    os.chmod(path, 0o755)
    if PG_USER:
        os.chown(path, PG_USER.pw_uid, PG_USER.pw_gid)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(PG_USER is None or os.geteuid() != 0, reason="needs root and a postgres user")
@pytest.mark.parametrize("param", ["socketdir", "start_opt", "config", "logfile"])
def test_no_parameter_reaches_a_shell(pg_dir: Path, param: str) -> None:
    bindir = pg_dir / "bin"
    bindir.mkdir()
    argv_file = pg_dir / "argv"
    (bindir / "pg_ctl").write_text("")
    (bindir / "pg_ctl").chmod(0o755)
    (bindir / "postgres").write_text(f"#!/usr/bin/python3\nimport sys\nopen('{argv_file}', 'w').write("
                                     "'\\0'.join(sys.argv[1:]))\nsys.exit(3)\n")
    (bindir / "postgres").chmod(0o755)
    pgdata = pg_dir / "data"
    pgdata.mkdir(mode=0o700)
    os.chown(pgdata, PG_USER.pw_uid, PG_USER.pw_gid)
    os.chown(pg_dir, PG_USER.pw_uid, PG_USER.pw_gid)
    canary = CANARY.format(dir=pg_dir)
    values = {"socketdir": str(pg_dir), "start_opt": "", "config": str(pgdata / "postgresql.conf"),
              "logfile": str(pg_dir / "log")}
    values[param] = {"start_opt": f"-c 'cluster_name={canary}' ; touch {pg_dir}/canary2",
                     "logfile": str(pg_dir / "log$(touch canary)")}.get(param, canary)
    pg = Instance(str(bindir / "pg_ctl"), str(pgdata), 5432, values["socketdir"], "postgres", "postgres",
                  values["config"], values["start_opt"], "", values["logfile"])
    started = time.monotonic()
    with pytest.raises(PgError, match="postgres exited at start"):
        pg.start(10)
    assert time.monotonic() - started < 5
    assert not any((d / name).exists() for d in (pg_dir, pgdata) for name in ("canary", "canary2"))
    argv = argv_file.read_text().split("\0")
    assert argv[:2] == ["-D", str(pgdata)]
    if param == "start_opt":
        assert argv[8:] == ["-c", f"cluster_name={canary}", ";", "touch", f"{pg_dir}/canary2"]
    elif param == "config":
        assert f"config_file={canary}" in argv
    elif param == "socketdir":
        assert argv[argv.index("-k") + 1] == canary
    else:
        assert (pg_dir / "log$(touch canary)").is_file()   # created by name, nothing run


# --- a real PostgreSQL -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template():
    if os.geteuid() != 0 or not SERVERS or PG_USER is None:
        pytest.skip("needs root, a postgres user and PostgreSQL's binaries")
    path = tempfile.mkdtemp(prefix="pha-pg-template-")
    os.chmod(path, 0o755)
    os.chown(path, PG_USER.pw_uid, PG_USER.pw_gid)
    initdb = os.path.join(os.path.dirname(SERVERS[-1]), "initdb")
    subprocess.run([initdb, "-D", f"{path}/data", "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                   capture_output=True, user=PG_USER.pw_uid, group=PG_USER.pw_gid, cwd="/", timeout=60)
    with open(f"{path}/data/postgresql.conf", "a") as f:
        f.write("listen_addresses = ''\nfsync = off\nshared_buffers = 1MB\nmax_connections = 10\n")
    yield Path(path) / "data"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pgdata(template: Path) -> Path:
    """The module's data directory, stopped (each test leaves it stopped; one initdb for all)."""
    yield template
    process.kill_all(process.server_processes(str(template), None))


def _real(pgdata: Path, **kw) -> Instance:
    port = 40000 + os.getpid() % 20000
    return Instance("", str(pgdata), port, str(pgdata.parent), "postgres", "postgres", None,
                    kw.get("start_opt", ""), "", kw.get("logfile", str(pgdata.parent / "log")))


@needs_pg
def test_start_and_stop_a_real_server(pgdata: Path) -> None:
    canary = CANARY.format(dir=pgdata.parent)
    pg = _real(pgdata, start_opt=f"-c 'cluster_name={canary}' -c work_mem=2MB")
    pg.start(30)
    try:
        pid = pg.postmaster_pid()
        assert pid and pg.is_running()
        with pg.connect() as conn:
            assert conn.execute("show cluster_name").fetchone()[0] == canary
        assert os.getsid(pid) == pid                     # its own session
        assert not (pgdata.parent / "canary").exists()
        started = time.monotonic()
        pg.stop(10)
        assert time.monotonic() - started < 5
    finally:
        process.kill_all(process.server_processes(str(pgdata), pg.postmaster_pid()))
    assert not pg.is_running() and not (pgdata / "postmaster.pid").exists()


@needs_pg
def test_a_stopped_server_is_ended_within_its_budget(pgdata: Path) -> None:
    pg = _real(pgdata)
    pg.start(30)
    pid = pg.postmaster_pid()
    everyone = process.server_processes(str(pgdata), pid)
    try:
        assert len(everyone) > 2
        for each in everyone:
            os.kill(each, signal.SIGSTOP)
        budget = 3
        started = time.monotonic()
        pg.stop(budget)
        took = time.monotonic() - started
        assert took < budget + 3, took
        assert not process.server_processes(str(pgdata), pid)
        assert not pg.is_running() and not (pgdata / "postmaster.pid").exists()
        pg.start(30)                                     # and it comes back
        pg.stop(5, immediate=True)
    finally:
        process.kill_all(process.server_processes(str(pgdata), pg.postmaster_pid()) or everyone)


@needs_pg
def test_start_after_a_crash_with_a_reused_pid(pgdata: Path) -> None:
    """postmaster.pid names a live process of the postgres user: PostgreSQL would
    refuse to start ("lock file already exists"); the stale file is removed."""
    sleeper = subprocess.Popen(["sleep", "30"], cwd=pgdata, user=PG_USER.pw_uid, group=PG_USER.pw_gid)
    try:
        _pid_file(pgdata, sleeper.pid)
        pg = _real(pgdata)
        assert not pg.is_running()
        pg.start(30)
        assert pg.postmaster_pid() != sleeper.pid
        pg.stop(5)
    finally:
        sleeper.kill()
        sleeper.wait()
        process.kill_all(process.server_processes(str(pgdata), None))


@needs_pg
def test_controldata_and_a_start_that_fails(pgdata: Path) -> None:
    pg = _real(pgdata, start_opt="-c no_such_setting=1")
    assert pg.controldata()["Database cluster state"] in ("shut down", "in production")
    with pytest.raises(PgError, match=r"postgres exited at start .*no_such_setting"):
        pg.start(30)
    assert not pg.is_running()
