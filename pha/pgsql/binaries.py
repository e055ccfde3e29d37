"""Which PostgreSQL a data directory needs, and where its programs are.

No version is written into pha: PGDATA/PG_VERSION says which major version
the data directory belongs to, and the programs are looked for where the
distributions put them (Debian's /usr/lib/postgresql/N/bin, the PGDG RPMs'
/usr/pgsql-N/bin), then where `pg_config --bindir` says, then on PATH. A
directory found by the last two must hold a `postgres` of that major version.
"""
from __future__ import annotations

import os
import re
import subprocess
from typing import Callable, Optional, Sequence

from pha.pgsql.process import PgError

LAYOUTS = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin")
SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
_VERSION_FILE = re.compile(r"([0-9]{1,3})(?:\.[0-9]{1,3})?\n?", re.ASCII)
_SERVER_VERSION = re.compile(r"\(PostgreSQL\) ([0-9]{1,3})", re.ASCII)

Runner = Callable[[list[str]], Optional[str]]     # argv -> stdout, None when it failed


def pg_version(pgdata: str) -> int:
    """The major version PGDATA/PG_VERSION names (9.6 -> 9, 15 -> 15)."""
    path = os.path.join(pgdata, "PG_VERSION")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            data = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as err:
        raise PgError(f"parameter pgdata={pgdata}: cannot read PG_VERSION ({err.strerror}): "
                      "not a PostgreSQL data directory?") from None
    match = _VERSION_FILE.fullmatch(data.decode("ascii", "replace"))
    if not match:
        raise PgError(f"parameter pgdata={pgdata}: PG_VERSION holds {data[:20]!r}, not a PostgreSQL version")
    return int(match.group(1))


def _run_quietly(argv: list[str]) -> Optional[str]:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10,
                              env={"PATH": SEARCH_PATH, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def server_major(bindir: str, run: Runner = _run_quietly) -> Optional[int]:
    """The major version of `bindir/postgres` (`postgres --version`), None if it does not answer."""
    out = run([os.path.join(bindir, "postgres"), "--version"])
    match = _SERVER_VERSION.search(out or "")
    return int(match.group(1)) if match else None


def bindir_for(pgdata: str, pgctl: str = "", *, layouts: Sequence[str] = LAYOUTS,
               search_path: str = SEARCH_PATH, run: Runner = _run_quietly) -> str:
    """The directory of the PostgreSQL programs for `pgdata`.

    `pgctl` (the agent's parameter), when given, names it: its directory is
    used as is. Otherwise the version comes from PG_VERSION. PgError says
    what was looked for and where."""
    if pgctl:
        if not _executable(pgctl):
            raise PgError(f"parameter pgctl={pgctl}: not an executable")
        return os.path.dirname(os.path.abspath(pgctl))
    major = pg_version(pgdata)
    tried = []
    for layout in layouts:
        bindir = layout.format(major=major)
        tried.append(bindir)
        if _executable(os.path.join(bindir, "postgres")):
            return bindir
    candidates = []
    out = run(["pg_config", "--bindir"])
    if out and out.strip():
        candidates.append(out.strip())
    tried.append("pg_config --bindir")
    candidates += [d for d in search_path.split(":") if d]
    tried.append("PATH")
    for bindir in dict.fromkeys(candidates):
        if _executable(os.path.join(bindir, "postgres")) and server_major(bindir, run) == major:
            return bindir
    raise PgError(f"PostgreSQL {major} (PG_VERSION of {pgdata}) is not installed: no postgres {major} in "
                  f"{', '.join(tried)}; install it or set the pgctl parameter")


def newest_installed(layouts: Sequence[str] = LAYOUTS) -> Optional[str]:
    """The bindir of the newest PostgreSQL installed in the distribution layouts (for a
    client tool when no data directory says which version: an empty PGDATA to fill)."""
    import glob
    found = {}
    for layout in layouts:
        pattern = layout.replace("{major}", "*")
        prefix, suffix = pattern.split("*", 1)
        for bindir in glob.glob(pattern):
            middle = bindir[len(prefix):len(bindir) - len(suffix)]
            if middle.isdigit() and _executable(os.path.join(bindir, "postgres")):
                found[int(middle)] = bindir
    return found[max(found)] if found else None
