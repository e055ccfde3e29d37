"""Bringing a forked node back: whether to rewind it, and doing it safely.

After a failover the old primary often comes back forked: it wrote WAL on
its timeline past the point where the new primary's timeline began. Such a
node can follow again only once pg_rewind has undone that WAL (or once it is
copied afresh). `decide` says what can be done, from facts alone (unit-tested
over timelines, positions and flags); `perform` does it:

- the diverged WAL (segments of the old timeline from the switch point on) is
  copied aside first, with a pg_waldump summary of the transactions it held
  (commit records: xid, time, LSN): these are the commits the cluster lost;
- pg_rewind runs as the database user from the primary (`--source-server`,
  the password from the passfile, never argv), with a timeout;
- the node's own configuration files are put back afterwards (pg_rewind
  copies the source's over them), through pha.files;
- a re-clone (opt-in) copies the primary with pg_basebackup into a fresh
  directory and moves the old data directory aside, renamed with a
  timestamp, never deleted.

The kept WAL goes under KEEP_ROOT (/var/lib/pha/rewind): root's own
directory, mode 0700 (WAL holds table data), outside PGDATA (pg_rewind and a
re-clone replace PGDATA's content) and outside any directory the database
user owns (so root never writes where that user could plant a link), and on
persistent storage (/run would lose it at the next boot).
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import stat
import time
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from pha import files
from pha.pgsql import process
from pha.pgsql.decide import ReplInfo, StoppedWal, format_lsn, stopped_forked, stopped_wal
from pha.pgsql.decide import left_at as decide_left_at
from pha.pgsql.process import PgError

if TYPE_CHECKING:
    from pha.pgsql.instance import Instance

NONE, REWIND, REFUSE, RECLONE = "none", "rewind", "refuse", "reclone"
NOT_REQUIRED, FAILED, DONE = "not-required", "failed", "done"
SAME_TIMELINE = "same-timeline"     # the source's pg_control still names the old timeline
KEEP_ROOT = "/var/lib/pha/rewind"
KEEP_MAX_BYTES = 1 << 30
TOOL_TIMEOUT = 3600.0
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf", "pha.conf")
RECOVERY_SIGNALS = ("standby.signal", "recovery.signal")
_SEGMENT = re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?")
_XACT = re.compile(r"tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (COMMIT|ABORT)(?:_PREPARED)? ([^;]*)")

Runner = Callable[..., "object"]     # process.run_as's signature: (who, argv, timeout, cwd=, env=)


# --- the decision (pure) -----------------------------------------------------------------
class Facts(NamedTuple):
    """What decides a rewind: this node's WAL, the cluster's history, the means."""

    local_timeline: int                       # newest timeline this node has WAL of
    local_lsn: int                            # its latest checkpoint's location
    info: Optional[ReplInfo]                  # REPL_INFO: primary|timeline|switch-LSN
    history: Optional[dict[int, int]] = None  # the cluster's timeline history (parent -> switch LSN)
    hints: bool = True                        # wal_log_hints=on or data checksums
    source_reachable: bool = True             # the primary answers (master_ip:port)
    reclone: bool = False                     # a re-clone is allowed when a rewind cannot help
    min_recovery: Optional[tuple[int, int]] = None   # pg_control's (timeline, LSN), None when 0/0
    last_rewind: Optional[str] = None         # NOT_REQUIRED or FAILED after a pg_rewind run


class Verdict(NamedTuple):
    action: str          # NONE, REWIND, REFUSE or RECLONE
    reason: str


def left_at(facts: Facts, timeline: int) -> Optional[int]:
    """Where the cluster's history left `timeline` (its successor's switch point), if known."""
    return decide_left_at(timeline, facts.info, facts.history)


def fork_reason(facts: Facts) -> Optional[str]:
    """Why this stopped node cannot follow the cluster's history, or None."""
    wal = StoppedWal(facts.local_timeline, facts.local_lsn, facts.min_recovery)
    return stopped_forked(wal, facts.info, facts.history)


def decide(facts: Facts) -> Verdict:
    """What to do with this node's data directory before it may start as a standby."""
    info = facts.info
    if info is None:
        return Verdict(NONE, "no REPL_INFO: no cluster history to compare with")
    if facts.local_timeline > info.timeline:
        return Verdict(REFUSE, f"this node is ahead of the cluster: its WAL is on timeline {facts.local_timeline}, "
                               f"REPL_INFO records timeline {info.timeline} (primary {info.primary}); it may hold "
                               "the newest data: decide by hand (cls_reset_master), nothing is rewound")
    why = fork_reason(facts)
    if why is None:
        if facts.local_timeline < info.timeline and left_at(facts, facts.local_timeline) is None:
            return Verdict(NONE, f"timeline {facts.local_timeline} is not in the cluster's known history: "
                                 "PostgreSQL itself refuses to stream if it forked")
        return Verdict(NONE, "not forked: this node can follow the cluster's history")
    if not facts.source_reachable:
        return Verdict(REFUSE, f"{why}; the primary ({info.primary}) cannot be reached to rewind or copy from: "
                               "retry once it answers")
    if facts.last_rewind == FAILED:
        cannot = "pg_rewind failed"
    elif facts.last_rewind == NOT_REQUIRED:
        cannot = ("pg_rewind found nothing to rewind, yet PostgreSQL cannot start here (requested timeline "
                  f"{info.timeline} does not contain the minimum recovery point)")
    elif not facts.hints:
        cannot = "pg_rewind needs wal_log_hints=on or data checksums, and this data directory has neither"
    else:
        return Verdict(REWIND, why)
    if facts.reclone:
        return Verdict(RECLONE, f"{why}; {cannot}: copying the primary afresh (the old data is kept aside)")
    return Verdict(REFUSE, f"{why}; {cannot}: re-clone it (cls_repair_by_pg_rewind --reclone, "
                           "or cls_rebuild_slave)")


def facts_from_controldata(control: dict[str, str], wal_timeline: int = 0) -> tuple[int, int, bool,
                                                                                   Optional[tuple[int, int]]]:
    """(local timeline, latest checkpoint, hints, min recovery point) from pg_controldata's fields."""
    wal = stopped_wal(control, wal_timeline)
    hints = control.get("wal_log_hints setting") == "on" or control.get("Data page checksum version", "0") not in ("0", "")
    return wal.timeline, wal.checkpoint, hints, wal.min_recovery


# --- where the node and its source are ------------------------------------------------------
class Target(NamedTuple):
    """The node to repair and the primary to repair it from."""

    pgdata: str
    bindir: str
    user: str                     # the database user (OS account) the tools run as
    source_conninfo: str          # libpq conninfo of the primary, no password
    passfile: str = ""            # libpq passfile holding the password
    keep_root: str = KEEP_ROOT    # where diverged WAL is kept
    keep_max_bytes: int = KEEP_MAX_BYTES

    def env(self) -> dict[str, str]:
        return process.user_env(process.account(self.user), {"PGPASSFILE": self.passfile} if self.passfile else {})


def source_conninfo(host: str, port: int, user: str, application_name: str = "pha-rewind") -> str:
    """The primary's conninfo for pg_rewind and pg_basebackup: no password (the passfile has it)."""
    return (f"host={_conn_value(host)} port={int(port)} user={_conn_value(user)} dbname=postgres "
            f"connect_timeout=10 target_session_attrs=read-write application_name={_conn_value(application_name)}")


def _conn_value(value: str) -> str:
    """A conninfo value, quoted (backslash escapes) unless it is a plain word."""
    if value and re.fullmatch(r"[A-Za-z0-9_.:/-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def reachable(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether something accepts connections at host:port (cheap, no authentication);
    a host starting with / is a unix socket directory, as for libpq."""
    try:
        if host.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(os.path.join(host, f".s.PGSQL.{int(port)}"))
                return True
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# --- keeping the diverged WAL ---------------------------------------------------------------
class Kept(NamedTuple):
    directory: str
    segments: int
    bytes: int
    truncated: bool
    summary_path: str
    commits: int


def diverged_segments(pg_wal: str, timeline: int, switch_lsn: int, segment_size: int) -> list[str]:
    """Names of this timeline's segments holding WAL at or past `switch_lsn`, oldest first."""
    per_id = 0x100000000 // segment_size
    found = []
    with os.scandir(pg_wal) as entries:
        names = [e.name for e in entries if e.is_file(follow_symlinks=False)]   # a planted link is skipped
    for name in names:
        match = _SEGMENT.fullmatch(name)
        if not match or int(match.group(1), 16) != timeline:
            continue
        segno = int(match.group(2), 16) * per_id + int(match.group(3), 16)
        if (segno + 1) * segment_size > switch_lsn:
            found.append(name)
    return sorted(found)


def _copy_nofollow(source: str, target: str) -> int:
    """Copy a regular file (never through a link) to a new file of root's; bytes copied."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise files.UnsafePath(0, "not a regular file", source)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        copied = 0
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
                copied += len(chunk)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return copied


def summarize(waldump_output: str) -> tuple[list[tuple[str, str, str]], int]:
    """(commits as (xid, time, LSN), aborts) from `pg_waldump --rmgr=Transaction` output."""
    commits, aborts = [], 0
    for line in waldump_output.splitlines():
        match = _XACT.search(line)
        if not match:
            continue
        if match.group(3) == "COMMIT":
            commits.append((match.group(1), match.group(4).strip(), match.group(2)))
        else:
            aborts += 1
    return commits, aborts


def already_kept(keep_root: str, timeline: int, switch_lsn: int) -> Optional[Kept]:
    """The newest complete copy (summary.txt written) of this fork's WAL, if an earlier
    attempt made one: a start retried after a failed pg_rewind does not copy it again."""
    suffix = re.escape(f"-timeline{timeline}-{format_lsn(switch_lsn).replace('/', '-')}")
    pattern = re.compile(r"[0-9]{8}T[0-9]{6}Z" + suffix + r"(?:-[0-9]+)?")
    try:
        with os.scandir(keep_root) as entries:
            found = sorted((e.name for e in entries if pattern.fullmatch(e.name)
                            and e.is_dir(follow_symlinks=False)), reverse=True)
    except FileNotFoundError:
        return None
    for name in found:
        directory = os.path.join(keep_root, name)
        summary = os.path.join(directory, "summary.txt")
        try:
            text = files.read_nofollow(summary)
        except OSError:
            continue
        with os.scandir(directory) as entries:
            sizes = [e.stat(follow_symlinks=False).st_size for e in entries
                     if e.name != "summary.txt" and e.is_file(follow_symlinks=False)]
        commits = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        return Kept(directory, len(sizes), sum(sizes), "(stopped at" in text, summary, commits)
    return None


def keep_diverged_wal(target: Target, timeline: int, switch_lsn: int, segment_size: int,
                      run: Runner = process.run_as, now: Optional[float] = None) -> Kept:
    """Copy the WAL this node wrote on `timeline` from `switch_lsn` on into a new
    directory under target.keep_root, with summary.txt (pg_waldump's commits);
    a copy an earlier attempt made is used again."""
    earlier = already_kept(files.private_dir(target.keep_root), timeline, switch_lsn)
    if earlier is not None:
        return earlier
    pg_wal = os.path.join(target.pgdata, "pg_wal")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    base = os.path.join(files.private_dir(target.keep_root),
                        f"{stamp}-timeline{timeline}-{format_lsn(switch_lsn).replace('/', '-')}")
    directory = base
    for attempt in itertools.count(2):
        try:
            os.mkdir(directory, 0o700)
            break
        except FileExistsError:
            directory = f"{base}-{attempt}"
    total = count = 0
    truncated = False
    for name in diverged_segments(pg_wal, timeline, switch_lsn, segment_size):
        if total >= target.keep_max_bytes:
            truncated = True
            break
        total += _copy_nofollow(os.path.join(pg_wal, name), os.path.join(directory, name))
        count += 1
    who = process.account(target.user)
    try:
        done = run(who, [os.path.join(target.bindir, "pg_waldump"), f"--path={pg_wal}", f"--timeline={timeline}",
                         f"--start={format_lsn(switch_lsn)}", "--rmgr=Transaction"], TOOL_TIMEOUT / 6,
                   cwd="/", env=target.env())
        stdout, stderr = done.stdout, done.stderr
    except PgError as err:                 # the WAL is kept all the same
        stdout, stderr = "", str(err)
    commits, aborts = summarize(stdout)
    lines = [f"# WAL this node wrote on timeline {timeline} after the cluster's history left it at "
             f"{format_lsn(switch_lsn)}: kept by pha before pg_rewind undid it",
             f"# {count} segment(s), {total} bytes in {directory}" + (
                 f" (stopped at {target.keep_max_bytes} bytes)" if truncated else ""),
             f"# {len(commits)} commit(s), {aborts} abort(s): these commits are not on the new primary",
             "# xid\tcommit time\tLSN"]
    lines += [f"{xid}\t{when}\t{lsn}" for xid, when, lsn in commits]
    errors = [e for e in stderr.splitlines() if e.strip()]
    if errors:  # pg_waldump ends with an error at the end of the WAL: that is where it stopped
        lines.append(f"# pg_waldump: {errors[-1].strip()}")
    summary = os.path.join(directory, "summary.txt")
    files.write_atomic(summary, "\n".join(lines) + "\n", mode=0o600)
    return Kept(directory, count, total, truncated, summary, len(commits))


# --- the node's own configuration --------------------------------------------------------------
class SavedFile(NamedTuple):
    data: bytes
    mode: int
    uid: int
    gid: int


def save_config(pgdata: str, extra: tuple[str, ...] = ()) -> dict[str, SavedFile]:
    """The node's configuration files in PGDATA (regular files only, never through a link)."""
    saved = {}
    for name in dict.fromkeys((*CONFIG_FILES, *extra)):
        path = os.path.join(pgdata, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue          # missing, or a link: not ours to keep
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
                continue
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        saved[name] = SavedFile(b"".join(chunks), st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return saved


def restore_config(pgdata: str, saved: dict[str, SavedFile]) -> None:
    """Put the saved files back (new files, owner and mode set before the content)."""
    for name, kept in saved.items():
        files.write_atomic(os.path.join(pgdata, name), kept.data, mode=kept.mode, uid=kept.uid, gid=kept.gid)


def config_names(pgdata: str, config: str = "") -> tuple[str, ...]:
    """The agent's `config` file too, when it lives in PGDATA."""
    if config and os.path.dirname(os.path.abspath(config)) == os.path.abspath(pgdata):
        return (os.path.basename(config),)
    return ()


# --- the tools ------------------------------------------------------------------------------------
class ToolRun(NamedTuple):
    outcome: str         # DONE, NOT_REQUIRED or FAILED
    output: str


def run_pg_rewind(target: Target, timeout: float = TOOL_TIMEOUT, dry_run: bool = False,
                  run: Runner = process.run_as) -> ToolRun:
    """pg_rewind from the primary, as the database user; never raises for its failure."""
    from pha.values import check_no_secret, mask
    try:
        check_no_secret(target.source_conninfo)
    except ValueError as err:
        return ToolRun(FAILED, f"source conninfo {err}")
    argv = [os.path.join(target.bindir, "pg_rewind"), f"--target-pgdata={target.pgdata}",
            f"--source-server={target.source_conninfo}", "--progress", *(["--dry-run"] if dry_run else [])]
    try:
        done = run(process.account(target.user), argv, timeout, cwd="/", env=target.env())
    except PgError as err:
        return ToolRun(FAILED, str(err))
    output = mask((done.stdout + done.stderr).strip())
    if done.returncode != 0:
        return ToolRun(FAILED, output)
    if "no rewind required" in output.lower():
        return ToolRun(SAME_TIMELINE if "on the same timeline" in output else NOT_REQUIRED, output)
    return ToolRun(DONE, output)


def clear_recovery_signals(pgdata: str) -> None:
    """pg_rewind first brings a target that was not shut down cleanly (a standby
    stopped in recovery: a primary demoted while cut off, then stopped) to a
    consistent end in single-user mode, which refuses standby mode ("standby mode
    is not supported by single-user servers", measured): the signal files go. The
    agent's start writes standby.signal again."""
    for name in RECOVERY_SIGNALS:
        try:
            os.unlink(os.path.join(pgdata, name))
        except FileNotFoundError:
            pass


def checkpoint_source(target: Target, timeout: int = 60) -> Optional[str]:
    """CHECKPOINT on the primary, None when done, else why not.

    Right after a promotion the new primary's pg_control still names the old
    timeline (the end-of-recovery checkpoint is spread out), and pg_rewind then
    says "same timeline, no rewind required" about a forked node."""
    import psycopg
    from pha.values import mask
    try:
        extra = {"passfile": target.passfile} if target.passfile else {}
        with psycopg.connect(target.source_conninfo, autocommit=True, options=f"-c statement_timeout={timeout}s",
                             **extra) as conn:
            conn.execute("checkpoint")
    except psycopg.Error as err:
        return mask(str(err).strip().split("\n")[0])
    return None


def _own_dir(path: str, who) -> None:
    """A new directory of the database user's, mode 0700 (set on the descriptor: no link followed)."""
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, who.pw_uid, who.pw_gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def reclone(target: Target, config_extra: tuple[str, ...] = (), timeout: float = TOOL_TIMEOUT,
            run: Runner = process.run_as, now: Optional[float] = None) -> str:
    """Copy the primary into a fresh directory with pg_basebackup, move the old data
    directory aside (renamed PGDATA.pha-old-<time>, never deleted) and put the copy in
    its place, with the node's configuration files. Returns where the old data went."""
    who = process.account(target.user)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    pgdata = os.path.abspath(target.pgdata)
    fresh, aside = f"{pgdata}.pha-clone-{stamp}", f"{pgdata}.pha-old-{stamp}"
    _own_dir(fresh, who)
    done = run(who, [os.path.join(target.bindir, "pg_basebackup"), f"--dbname={target.source_conninfo}",
                     f"--pgdata={fresh}", "--wal-method=stream", "--checkpoint=fast", "--no-password"],
               timeout, cwd="/", env=target.env())
    if done.returncode != 0:
        shutil.rmtree(fresh, ignore_errors=True)      # our own partial copy, not the node's data
        from pha.values import mask
        raise PgError(f"pg_basebackup failed (exit {done.returncode}): {mask(done.stderr.strip()[-300:])}")
    saved = save_config(pgdata, config_extra)
    try:
        os.rename(pgdata, aside)
    except OSError as err:
        raise PgError(f"cannot move {pgdata} aside ({err.strerror}; a mount point?): the fresh copy is in "
                      f"{fresh}; move the data by hand or use cls_rebuild_slave --force") from None
    os.rename(fresh, pgdata)
    restore_config(pgdata, saved)
    return aside


# --- doing it -------------------------------------------------------------------------------------
class Result(NamedTuple):
    action: str                       # NONE, REWIND (done), REFUSE or RECLONE (done)
    reason: str
    kept: Optional[Kept] = None
    output: str = ""                  # pg_rewind's words
    moved_aside: str = ""             # a re-clone: where the old data directory went


def perform(target: Target, facts: Facts, segment_size: int, config_extra: tuple[str, ...] = (),
            timeout: float = TOOL_TIMEOUT, run: Runner = process.run_as,
            checkpoint: Callable[[Target], Optional[str]] = checkpoint_source) -> Result:
    """Decide, then keep the diverged WAL and rewind, or re-clone; PostgreSQL must be stopped.
    Raises PgError only for a re-clone that failed (the old data is then untouched)."""
    verdict = decide(facts)
    if verdict.action in (NONE, REFUSE):
        return Result(verdict.action, verdict.reason)
    if verdict.action == RECLONE:
        return Result(RECLONE, verdict.reason, moved_aside=reclone(target, config_extra, timeout, run))
    # Right after a promotion the primary's control file still names an older timeline (its
    # checkpoint is spread out, or the last restartpoint of the standby it was): pg_rewind then
    # takes the wrong divergence point and leaves a minimum recovery point on that timeline,
    # which PostgreSQL refuses to start from (measured in the lab). A checkpoint first.
    not_yet = checkpoint(target)
    if not_yet is not None:
        return Result(REFUSE, f"{verdict.reason}; CHECKPOINT on the primary failed ({not_yet}): pg_rewind needs "
                              "the primary's control file to name its timeline; grant pg_checkpoint (or "
                              "superuser) to the replication user, or run CHECKPOINT there, and retry")
    left = left_at(facts, facts.local_timeline)
    kept = None
    if left is not None:
        kept = keep_diverged_wal(target, facts.local_timeline, left, segment_size, run)
    saved = save_config(target.pgdata, config_extra)
    clear_recovery_signals(target.pgdata)
    outcome = run_pg_rewind(target, timeout, run=run)
    if outcome.outcome == SAME_TIMELINE:       # the checkpoint had not reached the control file yet
        not_yet = checkpoint(target)
        outcome = run_pg_rewind(target, timeout, run=run) if not_yet is None else outcome
    restore_config(target.pgdata, saved)
    if outcome.outcome == DONE:
        return Result(REWIND, verdict.reason, kept, outcome.output)
    if outcome.outcome == SAME_TIMELINE:
        return Result(REFUSE, f"{verdict.reason}; the primary's control file still names the old timeline "
                              f"(no checkpoint since its promotion; CHECKPOINT failed: {not_yet or 'no change'}): "
                              "run CHECKPOINT on the primary and retry", kept, outcome.output)
    again = decide(facts._replace(last_rewind=outcome.outcome))
    reason = again.reason + (f" ({outcome.output[-300:]})" if outcome.outcome == FAILED else "")
    if again.action == RECLONE:
        return Result(RECLONE, reason, kept, outcome.output, reclone(target, config_extra, timeout, run))
    return Result(REFUSE, reason, kept, outcome.output)


def rewind_instance(pg: "Instance", info: Optional[ReplInfo], source_host: str, source_port: int, repuser: str,
                    passfile: str = "", reclone_allowed: bool = False, keep_root: str = KEEP_ROOT,
                    timeout: float = TOOL_TIMEOUT) -> Result:
    """perform() for a stopped pha.pgsql.instance.Instance: its facts read from
    pg_controldata, pg_wal and the history file REPL_INFO's timeline names."""
    from pha.pgsql.decide import parse_history
    control = pg.controldata()
    timeline, lsn, hints, min_recovery = facts_from_controldata(control, pg.wal_timeline())
    history_text = pg.history(info.timeline) if info else None
    facts = Facts(timeline, lsn, info, parse_history(history_text) if history_text else None, hints,
                  reachable(source_host, source_port), reclone_allowed, min_recovery)
    target = Target(pg.pgdata, pg.bindir, pg.user, source_conninfo(source_host, source_port, repuser),
                    passfile, keep_root)
    segment_size = int(control.get("Bytes per WAL segment") or 16 << 20)
    extra = config_names(pg.pgdata, pg.config)
    return perform(target, facts, segment_size, extra, timeout)
