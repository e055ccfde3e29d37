"""One PostgreSQL instance on this node: files, the postmaster, pg_controldata and SQL.

The recovery settings live in `pha.conf`, a file the agent owns inside
PGDATA and includes from postgresql.conf; postgresql.auto.conf is never
written by hand. PGDATA belongs to the database user: every file root writes
there goes through pha.files (no planted symlink is followed), and the
postmaster is started without a shell (pha.pgsql.process).
"""
from __future__ import annotations

import os
import re
import shlex
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from pha import files
from pha.pgsql import binaries, process
from pha.pgsql.process import PgError

__all__ = ["Instance", "PgError", "conf_line", "split_options"]

CONF_NAME = "pha.conf"
INCLUDE_LINE = "include_if_exists = '{path}'  # added by pha: recovery and sync settings\n"
IMMEDIATE_WAIT = 5.0      # seconds an immediate shutdown gets before SIGKILL
TOOL_TIMEOUT = 30.0
_GUC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)


def split_options(name: str, text: str) -> list[str]:
    """A parameter holding options (start_opt), split as a POSIX shell would split
    words, without any shell; PgError naming the parameter when it cannot be."""
    try:
        words = shlex.split(text or "")
    except ValueError as err:
        raise PgError(f"parameter {name}={text}: {err} (unbalanced quote)") from None
    if any("\0" in w for w in words):
        raise PgError(f"parameter {name}: holds a NUL character")
    return words


def conf_line(key: str, value: str) -> str:
    """`key = 'value'` in PostgreSQL's configuration-file grammar: quotes doubled,
    backslashes escaped. A newline or NUL cannot be written there: PgError."""
    if not _GUC_NAME.fullmatch(key):
        raise PgError(f"setting name {key!r} is not a PostgreSQL parameter name")
    if any(c in value for c in "\n\r\0"):
        raise PgError(f"setting {key}: its value holds a newline or NUL, which PostgreSQL's "
                      "configuration files cannot hold")
    return f"{key} = '" + value.replace("\\", "\\\\").replace("'", "''") + "'\n"


class Instance:
    """The instance described by the agent's parameters.

    `pgctl` may be empty: the programs are then found from PGDATA's PG_VERSION
    (pha.pgsql.binaries.bindir_for). `ctl_opt` is checked and otherwise unused:
    pg_ctl is no longer run (it passes its command line to /bin/sh)."""

    def __init__(self, pgctl: str, pgdata: str, port: int, socketdir: str, user: str, dbname: str,
                 config: Optional[str], start_opt: str, ctl_opt: str, logfile: Optional[str],
                 proc: str = process.PROC) -> None:
        self.pgctl = pgctl
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
        self.proc = proc
        self._bindir: Optional[str] = None

    @property
    def bindir(self) -> str:
        """Where PostgreSQL's programs are (found once, when first needed)."""
        if self._bindir is None:
            self._bindir = binaries.bindir_for(self.pgdata, self.pgctl)
        return self._bindir

    @property
    def account(self):
        return process.account(self.user)

    # --- processes ------------------------------------------------------------
    def check_options(self) -> None:
        """start_opt and ctl_opt split into words (PgError naming the parameter otherwise)."""
        split_options("start_opt", self.start_opt)
        split_options("ctl_opt", self.ctl_opt)

    def server_argv(self) -> list[str]:
        """The postmaster's command line: an argument list, no shell."""
        return [os.path.join(self.bindir, "postgres"), "-D", self.pgdata, "-p", str(self.port),
                "-k", self.socketdir, "-c", f"config_file={self.config}",
                *split_options("start_opt", self.start_opt)]

    def postmaster_pid(self) -> Optional[int]:
        """The PID of the postmaster serving PGDATA: postmaster.pid's, checked in /proc."""
        return process.postmaster_pid(self.pgdata, self.proc)

    def is_running(self) -> bool:
        """Whether a postmaster serves PGDATA (a PID reused by another process does not count)."""
        return self.postmaster_pid() is not None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socketdir, f".s.PGSQL.{self.port}")

    def port_in_use(self) -> bool:
        """Whether some server already answers on this port's unix socket."""
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(self.socket_path)
            except OSError:
                return False
        return True

    def start(self, timeout: float) -> None:
        """Start the postmaster (postgres -D ..., as the database user, in its own
        session) and wait until it is ready or a standby, as pg_ctl -w would."""
        self.check_options()
        argv = self.server_argv()
        self.remove_stale_pid_file()
        who = self.account
        log_start = self._log_size()
        child = process.spawn_postmaster(who, argv, self.pgdata, self.logfile, process.user_env(who))
        try:
            process.wait_started(child, self.pgdata, timeout)
        except PgError as err:
            raise PgError(f"{err}{self._log_since(log_start)}") from None

    def _log_size(self) -> int:
        try:
            return os.stat(self.logfile).st_size if self.logfile else 0
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        """The last lines the server logged since `offset`, for an error message."""
        if not self.logfile or self.logfile == os.devnull:
            return "; no server log (logfile is empty)"
        try:
            with process.acting_as(self.account):
                fd = os.open(self.logfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                os.lseek(fd, max(offset, size - 4096) if size >= offset else 0, os.SEEK_SET)
                text = os.read(fd, 4096).decode("utf-8", "replace")
            finally:
                os.close(fd)
        except OSError:
            return f"; see {self.logfile}"
        from pha.values import mask
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        lines = [line for line in lines if "FATAL:" in line or "PANIC:" in line][-2:] or lines[-3:]
        return f"; {self.logfile}: " + mask(" / ".join(lines))[-400:] if lines else f"; see {self.logfile}"

    def remove_stale_pid_file(self) -> bool:
        """Remove a postmaster.pid whose PID is not this instance's postmaster, when
        no server process works in PGDATA (a reused PID would block postgres' start)."""
        found = process.read_pid_file(self.pgdata)
        if found is None or self.is_running() or process.server_processes(self.pgdata, None, self.proc):
            return False
        if process.gone(found.pid, self.proc) or not process.is_postgres_in(found.pid, self.pgdata, self.proc):
            try:
                os.unlink(os.path.join(self.pgdata, process.PID_FILE))
            except FileNotFoundError:
                return False
            return True
        return False

    def stop(self, escalate_after: float, immediate: bool = False) -> None:
        """Stop, whatever state PostgreSQL is in: fast shutdown for `escalate_after`
        seconds, then immediate, then SIGKILL of the postmaster and every server
        process left (a SIGSTOPped postmaster is not waited for). Returns once no
        process is left; PgError only when even SIGKILL leaves one."""
        pid = self.postmaster_pid()
        if pid is not None:
            if not immediate:
                process.signal_quietly(pid, process.SHUTDOWN_SIGNALS["fast"])
            if immediate or not process.wait_gone(pid, escalate_after, self.proc):
                process.signal_quietly(pid, process.SHUTDOWN_SIGNALS["immediate"])
                process.wait_gone(pid, min(IMMEDIATE_WAIT, max(1.0, escalate_after)), self.proc)
        left = process.server_processes(self.pgdata, pid, self.proc)
        if left:
            left = process.kill_all(left, proc=self.proc)
        if left:
            raise PgError(f"PostgreSQL did not stop: processes {', '.join(map(str, left))} survive SIGKILL")
        self.remove_stale_pid_file()

    def controldata(self) -> dict[str, str]:
        out = process.run_as(self.account, [os.path.join(self.bindir, "pg_controldata"), "-D", self.pgdata],
                             TOOL_TIMEOUT, cwd="/")
        if out.returncode != 0:
            raise PgError(f"pg_controldata failed: {out.stderr.strip()[-300:]}")
        fields = {}
        for line in out.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields

    # --- files --------------------------------------------------------------------
    @property
    def standby_signal(self) -> str:
        return os.path.join(self.pgdata, "standby.signal")

    def set_standby(self, standby: bool) -> None:
        if standby and not os.path.lexists(self.standby_signal):
            self._write(self.standby_signal, "")
        elif not standby and os.path.lexists(self.standby_signal):
            os.unlink(self.standby_signal)

    def write_conf(self, settings: dict[str, str]) -> bool:
        """Write pha.conf (0600, owned by the database user); True when it changed.
        PgError for a value PostgreSQL could not read back (a newline, a NUL)."""
        text = "# Written by the pha pgsql agent: do not edit, it is rewritten.\n" + "".join(
            conf_line(k, v) for k, v in sorted(settings.items()))
        try:
            if files.read_nofollow(self.conf_path) == text:
                return False
        except OSError:
            pass
        self._write(self.conf_path, text)
        return True

    def ensure_included(self) -> None:
        """postgresql.conf includes pha.conf, last, so its settings win. The file is
        rewritten whole (owner and mode kept), never appended to through a link."""
        try:
            text = files.read_nofollow(self.config, limit=16 << 20)
            st = os.lstat(self.config)
        except OSError as err:
            raise PgError(f"parameter config={self.config}: cannot read it ({err.strerror}; "
                          "a symlink is refused: name the real file)") from None
        if f"include_if_exists = '{self.conf_path}'" in text:
            return
        line = INCLUDE_LINE.format(path=self.conf_path.replace("'", "''"))
        text += ("" if not text or text.endswith("\n") else "\n") + line
        files.write_atomic(self.config, text, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)

    def auto_conf_settings(self) -> dict[str, str]:
        """Settings in postgresql.auto.conf (ALTER SYSTEM, pg_basebackup -R)."""
        found = {}
        try:
            text = files.read_nofollow(os.path.join(self.pgdata, "postgresql.auto.conf"))
        except FileNotFoundError:
            return found
        except OSError as err:
            raise PgError(f"{self.pgdata}/postgresql.auto.conf: cannot read it ({err.strerror})") from None
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#"):
                found[key.strip()] = value.strip()
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
            return files.read_nofollow(os.path.join(self.pgdata, "pg_wal", f"{timeline:08X}.history"))
        except FileNotFoundError:
            return None

    def _write(self, path: str, text: str) -> None:
        """Replace a file in PGDATA, owned by the database user, mode 0600 (pha.files)."""
        who = self.account
        files.write_atomic(path, text, mode=0o600, uid=who.pw_uid, gid=who.pw_gid)

    # --- SQL ------------------------------------------------------------------------
    @contextmanager
    def connect(self, timeout: int = 5, walsender: bool = False) -> Iterator["object"]:
        """A psycopg connection over the unix socket, as the database user
        (peer authentication sees the effective uid while connecting).

        walsender: a walsender in database mode, which takes one of
        max_wal_senders' slots, not max_connections'. It runs SQL through the
        simple protocol only: queries without parameters (compose literals
        with psycopg.sql)."""
        import psycopg
        account = self.account
        euid, egid = os.geteuid(), os.getegid()
        switched = euid == 0 and account.pw_uid != 0
        if switched:
            os.setegid(account.pw_gid)
            os.seteuid(account.pw_uid)
        try:
            conn = psycopg.connect(host=self.socketdir, port=self.port, user=self.user,
                                   dbname=self.dbname, connect_timeout=timeout, autocommit=True,
                                   application_name="pha-pgsql-agent",
                                   **({"replication": "database"} if walsender else {}))
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
