"""Parsers for the values pha reads from config.ini, the CIB and PostgreSQL.

One grammar per kind, shared by every caller (agents, config, health,
commands): integers, byte sizes, interface names and labels, conninfo
strings, and the rule that masks secrets in messages. Each parser raises
ValueError with a short reason that callers put after the name of what
they parsed ("parameter X=...: <reason>").
"""
from __future__ import annotations

import re
from typing import Optional

_INT = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)
_SIZE = re.compile(r"([0-9]{1,15})\s*([A-Za-z]{0,3})", re.ASCII)
SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
              "gb": 1 << 30, "gib": 1 << 30, "tb": 1 << 40, "tib": 1 << 40}
IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}", re.ASCII)      # Linux IFNAMSIZ - 1, with an IPv4 label
IFNAME_NO_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,15}", re.ASCII)
LO_LABEL = re.compile(r"lo(:[A-Za-z0-9_.-]{1,12})?", re.ASCII)
MAX_ECHO = 200                                                 # characters of a value put in a message
SECRET_KEYS = frozenset({"password", "sslpassword"})


def parse_int(text: str) -> int:
    """An integer written in ASCII digits ("12", "-3"); no "1_0", no "١٢", no floats."""
    stripped = str(text).strip()
    if not _INT.fullmatch(stripped):
        raise ValueError("is not an integer")
    return int(stripped)


def parse_size(text: str) -> int:
    """Bytes from "1048576", "16MB", "512kB", "1 GiB" (units are powers of 1024, as PostgreSQL's)."""
    match = _SIZE.fullmatch(str(text).strip())
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise ValueError("is not a size (examples: 1048576, 512kB, 16MB, 1GB)")
    return int(match.group(1)) * SIZE_UNITS[unit]


def check_ifname(text: str, label: bool = False) -> str:
    """A Linux interface name (with an IPv4 label `eth0:vip` when `label`)."""
    if not (IFNAME if label else IFNAME_NO_LABEL).fullmatch(text):
        raise ValueError("is not a network interface name (1-15 of A-Z a-z 0-9 _ . -)")
    return text


def check_lo_label(text: str) -> str:
    """`lo` or `lo:SUFFIX`, the loopback alias the LVS real servers hold the VIP on."""
    if not LO_LABEL.fullmatch(text):
        raise ValueError("must be lo or lo:SUFFIX (at most 15 characters)")
    return text


# --- conninfo ---------------------------------------------------------------------------
def conninfo_dict(text: str) -> dict[str, str]:
    """A libpq conninfo (key=value words or a postgresql:// URI), parsed by libpq itself."""
    from psycopg.conninfo import conninfo_to_dict
    import psycopg
    try:
        return {k: str(v) for k, v in conninfo_to_dict(text).items()}
    except psycopg.ProgrammingError as err:
        # libpq's message may quote the text: never echo it (it may hold a secret)
        raise ValueError("is not a valid conninfo: " + mask(str(err).split("\n")[0])) from None


def conninfo_secret(text: str) -> Optional[str]:
    """The secret key a conninfo holds (password, sslpassword, a URI's user:password@), or None."""
    if "\n" in text or "\r" in text:
        raise ValueError("must be a single line")
    keys = conninfo_dict(text)
    for key in SECRET_KEYS:
        if keys.get(key):
            return key
    return None


def check_no_secret(text: str) -> str:
    """Reject a conninfo that carries a password (they belong in a passfile)."""
    if conninfo_secret(text):
        raise ValueError("holds a password: put it in a passfile (passfile=... or PGPASSFILE)")
    return text


# --- messages ---------------------------------------------------------------------------
_SECRET_WORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SECRET_URI = re.compile(r"(://[^/@\s:]*:)[^/@\s]*@")
_SECRET_QUERY = re.compile(r"([?&]([^=&\s]*)=)([^&\s]*)")


def _mask_query(match: "re.Match[str]") -> str:
    from urllib.parse import unquote
    key = unquote(match.group(2)).strip().lower()      # libpq decodes ?pass%77ord= too
    return match.group(1) + "***" if key in SECRET_KEYS else match.group(0)


def mask(text: str) -> str:
    """`text` with every password in it masked: key=value, URI user:password@, ?password= (even
    percent-encoded)."""
    text = _SECRET_WORD.sub(r"\1***", text)
    text = _SECRET_QUERY.sub(_mask_query, text)
    return _SECRET_URI.sub(r"\1***@", text)


def shown(value: object, secret: bool = False) -> str:
    """A value as it may appear in a message or a log line: one line, short, secrets masked."""
    if secret:
        return "***"
    text = mask(str(value))
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    if len(text) > MAX_ECHO:
        text = text[:MAX_ECHO] + f"...({len(text)} characters)"
    return text


def first_line(err: BaseException) -> str:
    """An error's first line (its type's name when it says nothing), for a log line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- networks ---------------------------------------------------------------------------
def parse_networks(text: str) -> list:
    """IPv4 networks from "10.0.0.0/24, 192.168.1.0/24" (spaces or commas between them).

    Host bits may be set ("10.0.0.7/24" is 10.0.0.0/24); "0.0.0.0/0" is every address.
    Returns a list of ipaddress.IPv4Network.
    """
    import ipaddress
    networks = []
    for item in text.replace(",", " ").split():
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{shown(item)!r} is not a network (e.g. 10.0.0.0/24)") from None
        if network.version != 4:
            raise ValueError(f"{shown(item)!r} is not an IPv4 network")
        networks.append(network)
    return networks


_SECRET_NAME = re.compile(r"pass(?!file)|pas+wo?r?d|p(?:ass)?wd|secret|token|credential", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a key or parameter name looks like it holds a secret (misspellings included)."""
    return bool(_SECRET_NAME.search(name))


def check_no_secret_param(name: str, value: object) -> None:
    """Refuse a resource parameter that would put a secret into the CIB (every haclient user reads it)."""
    text = str(value)
    if is_secret_name(name) and text:
        raise ValueError(f"{name}: a password never goes into the CIB: put it in a passfile (passfile=...)")
    found = mask(text) != text
    if not found and ("=" in text or "://" in text):
        try:
            found = conninfo_secret(text) is not None
        except ValueError:
            pass                     # not a conninfo: mask() has looked at it
    if found:   # shown whole only when mask() hides the password
        raise ValueError(f"{name}={shown(text, secret=mask(text) == text)}: holds a password: put it in "
                         "a passfile (passfile=...)")
