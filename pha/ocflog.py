"""Logging and exit reasons for OCF agents, the way ocf-shellfuncs does them.

Every line goes through `one_line`: control characters escaped, passwords
masked (pha.values.mask), at most MAX_LINE characters.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Mapping

from pha.values import mask

MAX_LINE = 2000  # characters of one log line or exit reason
_SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "crit": 2}


class Log:
    """Logging like ocf-shellfuncs' ocf_log: tagged with the resource instance,
    written to stderr, and to HA_LOGFILE or syslog (HA_LOGFACILITY); debug only
    with HA_debug=1."""

    def __init__(self, agent: str, env: Mapping[str, str]) -> None:
        instance = env.get("OCF_RESOURCE_INSTANCE", agent)
        self.tag = env.get("HA_LOGTAG") or f"{agent}({instance})[{os.getpid()}]"
        self.debug_on = env.get("HA_debug", "0") not in ("", "0")
        self.logfile = env.get("HA_LOGFILE") or env.get("HA_DEBUGLOG") or ""
        facility = env.get("HA_LOGFACILITY", "")
        self.facility = "" if facility in ("", "none") else facility

    def log(self, level: str, msg: str) -> None:
        """One log line: `msg` is made one line (escaped), masked and truncated."""
        if level == "debug" and not self.debug_on:
            return
        msg = one_line(msg)
        line = f"{self.tag}: {level.upper()}: {msg}"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        if self.logfile:
            try:
                with open(self.logfile, "a") as f:
                    f.write(f"{time.strftime('%b %d %H:%M:%S')} {line}\n")
            except OSError:
                pass
        if self.facility:
            import syslog
            fac = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
            syslog.openlog(self.tag, 0, fac)
            syslog.syslog(_SYSLOG_PRIORITY[level], f"{level.upper()}: {msg}")

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def info(self, msg: str) -> None:
        self.log("info", msg)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def error(self, msg: str) -> None:
        self.log("error", msg)


def exit_reason(reason: str) -> None:
    """Tell Pacemaker why an action failed (shown in crm_mon's failures)."""
    sys.stderr.write("ocf-exit-reason:" + one_line(reason.replace("\n", " ")) + "\n")
    sys.stderr.flush()


def one_line(text: str) -> str:
    """`text` as one line of a log or an exit reason: control characters escaped
    (a value cannot forge a line), passwords masked, at most MAX_LINE characters."""
    text = mask(str(text))
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) > MAX_LINE:
        text = text[:MAX_LINE] + f"...({len(text)} characters)"
    return text
