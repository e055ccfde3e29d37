"""One PostgreSQL instance on this node: files, pg_ctl, pg_controldata and SQL.

The recovery settings live in `pha.conf`, a file the agent owns inside
PGDATA and includes from postgresql.conf; postgresql.auto.conf is never
written by hand.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator, Optional

CONF_NAME = "pha.conf"
INCLUDE_LINE = "include_if_exists = '{path}'  # added by pha: recovery and sync settings\n"


class PgError(Exception):
    """PostgreSQL did not do what was asked."""


class Instance:
    """The instance described by the agent's parameters."""

    def __init__(self, pgctl: str, pgdata: str, port: int, socketdir: str, user: str, dbname: str,
                 config: Optional[str], start_opt: str, ctl_opt: str, logfile: Optional[str]) -> None:
        self.pgctl = pgctl
        self.bindir = os.path.dirname(pgctl)
        self.pgdata = pgdata
        self.port = port
        self.socketdir = socketdir
        self.user = user
        self.dbname = dbname
        self.config = config or os.path.join(pgdata, "postgresql.conf")
        self.start_opt = start_opt
        self.ctl_opt = ctl_opt
        self.logfile = logfile
        self.conf_path = os.path.join(pgdata, CONF_NAME)

    # --- processes ------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        account = pwd.getpwnam(self.user)
        env = {"PATH": "/usr/bin:/bin", "HOME": account.pw_dir, "LANG": "C", "LC_ALL": "C"}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              user=account.pw_uid, group=account.pw_gid, cwd=self.pgdata)

    def is_running(self) -> bool:
        """Whether a postmaster serves PGDATA (pg_ctl status)."""
        pidfile = os.path.join(self.pgdata, "postmaster.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socketdir, f".s.PGSQL.{self.port}")

    def port_in_use(self) -> bool:
        """Whether some server already answers on this port's unix socket."""
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(self.socket_path)
            except OSError:
                return False
        return True

    def start(self, timeout: float) -> None:
        options = f"-p {self.port} -k {self.socketdir} -c config_file={self.config} {self.start_opt}".strip()
        argv = [self.pgctl, "start", "-D", self.pgdata, "-w", "-t", str(int(timeout)), "-o", options]
        if self.logfile:
            argv += ["-l", self.logfile]
        argv += self.ctl_opt.split()
        out = self._run(argv, timeout + 5)
        if out.returncode != 0:
            raise PgError(f"pg_ctl start failed: {(out.stderr or out.stdout).strip()[-300:]}")

    def stop(self, escalate_after: float, immediate: bool = False) -> None:
        """Stop: fast shutdown, escalating to immediate after `escalate_after` seconds."""
        if not self.is_running():
            return
        modes = ["immediate"] if immediate else ["fast", "immediate"]
        for mode in modes:
            out = self._run([self.pgctl, "stop", "-D", self.pgdata, "-w", "-m", mode,
                             "-t", str(max(1, int(escalate_after)))], escalate_after + 10)
            if out.returncode == 0 or not self.is_running():
                return
        raise PgError(f"pg_ctl stop failed: {(out.stderr or out.stdout).strip()[-300:]}")

    def controldata(self) -> dict[str, str]:
        out = self._run([os.path.join(self.bindir, "pg_controldata"), "-D", self.pgdata], 30)
        if out.returncode != 0:
            raise PgError(f"pg_controldata failed: {out.stderr.strip()}")
        fields = {}
        for line in out.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields

    def version(self) -> int:
        with open(os.path.join(self.pgdata, "PG_VERSION")) as f:
            return int(f.read().strip().split(".")[0])

    # --- files --------------------------------------------------------------------
    @property
    def standby_signal(self) -> str:
        return os.path.join(self.pgdata, "standby.signal")

    def set_standby(self, standby: bool) -> None:
        if standby and not os.path.exists(self.standby_signal):
            self._write(self.standby_signal, "")
        elif not standby and os.path.exists(self.standby_signal):
            os.unlink(self.standby_signal)

    def write_conf(self, settings: dict[str, str]) -> bool:
        """Write pha.conf (0600, owned by the database user); True when it changed."""
        text = "# Written by the pha pgsql agent: do not edit, it is rewritten.\n" + "".join(
            f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in sorted(settings.items()))
        try:
            with open(self.conf_path) as f:
                if f.read() == text:
                    return False
        except FileNotFoundError:
            pass
        self._write(self.conf_path, text)
        return True

    def ensure_included(self) -> None:
        """postgresql.conf includes pha.conf, last, so its settings win."""
        line = INCLUDE_LINE.format(path=self.conf_path)
        with open(self.config) as f:
            text = f.read()
        if f"include_if_exists = '{self.conf_path}'" in text:
            return
        with open(self.config, "a") as f:
            f.write(("" if text.endswith("\n") else "\n") + line)

    def auto_conf_settings(self) -> dict[str, str]:
        """Settings in postgresql.auto.conf (ALTER SYSTEM, pg_basebackup -R)."""
        found = {}
        try:
            with open(os.path.join(self.pgdata, "postgresql.auto.conf")) as f:
                for line in f:
                    key, sep, value = line.partition("=")
                    if sep and not key.strip().startswith("#"):
                        found[key.strip()] = value.strip()
        except FileNotFoundError:
            pass
        return found

    def wal_timeline(self) -> int:
        """The newest timeline this node holds WAL segments of (0 when none).

        The checkpoint's timeline lags after a promotion; history files can
        name timelines a forked node fetched but never followed. Segments are
        only ever written on a timeline the node wrote or received WAL on.
        """
        newest = 0
        with os.scandir(os.path.join(self.pgdata, "pg_wal")) as entries:
            for entry in entries:
                name = entry.name
                if len(name) == 24 and all(c in "0123456789ABCDEF" for c in name):
                    newest = max(newest, int(name[:8], 16))
        return newest

    def history(self, timeline: int) -> Optional[str]:
        """Text of pg_wal/<timeline>.history, when this node has it."""
        try:
            with open(os.path.join(self.pgdata, "pg_wal", f"{timeline:08X}.history")) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _write(self, path: str, text: str) -> None:
        account = pwd.getpwnam(self.user)
        tmp = path + ".pha-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fchown(fd, account.pw_uid, account.pw_gid)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    # --- SQL ------------------------------------------------------------------------
    @contextmanager
    def connect(self, timeout: int = 5) -> Iterator["object"]:
        """A psycopg connection over the unix socket, as the database user
        (peer authentication sees the effective uid while connecting)."""
        import psycopg
        account = pwd.getpwnam(self.user)
        euid, egid = os.geteuid(), os.getegid()
        switched = euid == 0 and account.pw_uid != 0
        if switched:
            os.setegid(account.pw_gid)
            os.seteuid(account.pw_uid)
        try:
            conn = psycopg.connect(host=self.socketdir, port=self.port, user=self.user,
                                   dbname=self.dbname, connect_timeout=timeout, autocommit=True,
                                   application_name="pha-pgsql-agent")
        finally:
            if switched:
                os.seteuid(euid)
                os.setegid(egid)
        try:
            yield conn
        finally:
            conn.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect(timeout=2) as conn:
                    conn.execute("select 1")
                    return
            except Exception as err:
                if time.monotonic() > deadline:
                    raise PgError(f"PostgreSQL does not accept connections: {err}") from None
                time.sleep(0.1)
