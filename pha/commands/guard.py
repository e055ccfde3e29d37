"""`pha guard`: stop this node's primary when its cluster is gone (pha.pgsql.guard).

Runs in the foreground on every node (templates/pha-guard.service; the lab
starts it in each node), as root. Each line it prints says what it saw and did.
"""
from __future__ import annotations

import signal
import sys
import time
from typing import Callable, Optional

import click

from pha import crm, files
from pha.pgsql import guard
from pha.pgsql.guard import Record, Stack
from pha.pgsql.instance import Instance, PgError

STOP_BUDGET = 0.0        # no fast shutdown: immediate at once, then SIGKILL


def ask_stack(cli: crm.Crm, timeout: float) -> Stack:
    """Whether this node's partition is quorate, as `crm_node -q` says (None: no answer)."""
    try:
        return Stack(cli.has_quorum(timeout=timeout))
    except crm.CrmError as err:
        return Stack(None, str(err))


def read_cib(path: str = guard.CIB_ON_DISK) -> Optional[str]:
    try:
        return files.read_nofollow(path, limit=64 << 20)
    except OSError:
        return None


def stop_primary(record: Record) -> None:
    """Immediate shutdown, then SIGKILL of whatever is left (PgError if even that fails)."""
    Instance(record.pgctl, record.pgdata, record.port, record.socketdir, record.user, "postgres", None,
             "", "", None).stop(STOP_BUDGET, immediate=True)


class Guard:
    """One check per interval; the I/O is injected for the unit tests."""

    def __init__(self, interval: float = guard.INTERVAL, grace: float = guard.GRACE,
                 directory: str = guard.GUARD_DIR, stack: Optional[Callable[[], Stack]] = None,
                 cib: Callable[[], Optional[str]] = read_cib, stop: Callable[[Record], None] = stop_primary,
                 say: Callable[[str], None] = lambda line: print(f"{time.strftime('%H:%M:%S')} {line}",
                                                                 flush=True),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.grace, self.directory = interval, grace, directory
        self.stack = stack or (lambda: ask_stack(crm.Crm(), timeout=max(1.0, 2 * interval)))
        self.cib, self.stop, self.say, self.clock = cib, stop, say, clock
        self.unheard = 0.0
        self.checked: Optional[float] = None      # when the last question was answered
        self.held_back: Optional[str] = None      # the maintenance reason last reported

    def check(self) -> None:
        records, problems = guard.read_records(self.directory)
        for problem in problems:
            self.say(f"cannot read a primary's record: {problem}")
        if not records:
            self.unheard, self.checked = 0.0, None
            return
        stack = self.stack()
        now = self.clock()
        elapsed = self.interval if self.checked is None else now - self.checked
        self.checked = now
        cib_text = None if stack.quorate else self.cib()
        facts = {} if stack.quorate else {r.resource: guard.cib_facts(cib_text, r.resource, r.node) for r in records}
        policy = facts[records[0].resource].no_quorum_policy if facts else "stop"
        unheard = guard.unheard_after(self.unheard, stack, policy, elapsed)
        if unheard and not self.unheard:
            self.say("the cluster does not answer for this node's primary: "
                     + (stack.why or "its partition has no quorum") + f"; stopping it after {self.grace:g}s")
        if not unheard and self.unheard:
            self.say("the cluster answers again")
        self.unheard = unheard
        if not unheard:
            self.held_back = None
            return
        for record in records:
            maintenance = facts[record.resource].maintenance
            if not guard.must_stop(self.unheard, self.grace, maintenance):
                if maintenance and maintenance != self.held_back:
                    self.say(f"leaving {record.resource} ({record.pgdata}) running: {maintenance}")
                    self.held_back = maintenance
                continue
            self.say(f"no cluster for {self.unheard:.1f}s: shutting down the primary {record.resource} "
                     f"({record.pgdata}) so that it accepts no more commits")
            try:
                self.stop(record)
            except (PgError, OSError) as err:
                self.say(f"could not stop {record.resource}: {err}")
                continue
            guard.remove_record(record.resource, self.directory)
            self.say(f"{record.resource} stopped; Pacemaker starts it as a standby once the node rejoins")

    def run(self) -> None:
        self.say(f"guarding this node's primaries: stop after {self.grace:g}s without a quorate cluster")
        while True:
            started = time.monotonic()
            self.check()
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


@click.command("guard")
@click.option("--interval", type=click.FloatRange(0.2, 60), default=guard.INTERVAL, show_default=True,
              help="Seconds between two checks.")
@click.option("--grace", type=click.FloatRange(1, 600), default=guard.GRACE, show_default=True,
              help="Seconds without a quorate cluster before the primary is shut down.")
def guard_cmd(interval: float, grace: float) -> None:
    """Shut this node's primary down when its cluster is gone (Pacemaker or corosync dead,
    or no quorum), before fencing; never in maintenance. Runs in the foreground."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Guard(interval=interval, grace=grace).run()
