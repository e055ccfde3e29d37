"""IPVS (LVS) virtual services through pyroute2 netlink: model, kernel state, plan, apply.

The model is two frozen dataclasses, `VirtualService` and `RealServer`, grouped in a
`ServiceState`. `plan(desired, actual)` is pure: it returns the `Change`s that turn `actual`
into `desired`. `IPVSClient` reads the kernel's state from raw netlink attributes and applies
changes idempotently, counting every netlink write it sends.

pyroute2 0.9.7 pitfalls handled here (see ../shared/reference/uml-ipvs/README.md):
- its "update" command sends IPVS_CMD_DEL_*; only "add", "set" and "del" are used;
- "set" sends a whole record, so every field is always filled in;
- `from_message()` reports class defaults for the forwarding method and the flags, so the
  raw IPVS_*_ATTR_* attributes are read instead.
pyroute2 is imported lazily: agents import this module on their hot path.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Iterable

PROTOCOLS: dict[str, int] = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
FORWARDING: dict[str, int] = {"nat": 0, "tunnel": 2, "dr": 3}   # IP_VS_CONN_F_MASQ/TUNNEL/DROUTE
PERSISTENT_FLAG = 0x0001                                         # IP_VS_SVC_F_PERSISTENT
MAX_WEIGHT = 65535
SCHEDULER_NAME = re.compile(r"[a-z][a-z0-9]{0,14}")             # IP_VS_SCHEDNAME_MAXLEN is 16

ADD_SERVICE = "add-service"
SET_SERVICE = "set-service"
DEL_SERVICE = "del-service"
ADD_REAL_SERVER = "add-real-server"
SET_REAL_SERVER = "set-real-server"
DEL_REAL_SERVER = "del-real-server"


GONE = (errno.ESRCH, errno.ENOENT)   # no such service / no such real server
FIRST_COMMAND = {ADD_SERVICE: "add", SET_SERVICE: "set", DEL_SERVICE: "del",
                 ADD_REAL_SERVER: "add", SET_REAL_SERVER: "set", DEL_REAL_SERVER: "del"}
RETRY_COMMAND = {(ADD_SERVICE, errno.EEXIST): "set", (SET_SERVICE, errno.ESRCH): "add",
                 (ADD_REAL_SERVER, errno.EEXIST): "set", (SET_REAL_SERVER, errno.ENOENT): "add"}


class IPVSError(RuntimeError):
    """A netlink request to IPVS failed."""


class IPVSUnavailable(IPVSError):
    """The running kernel has no IPVS (the generic netlink family "IPVS" is missing)."""

    def __init__(self) -> None:
        super().__init__("this kernel has no IPVS: load ip_vs")


def _address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def _port(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"{what}: {value!r} is not a port (1-65535)")
    return value


@dataclass(frozen=True)
class VirtualService:
    """A virtual service: address, port and protocol identify it; scheduler and persistence tune it."""

    address: str
    port: int
    protocol: str = "tcp"
    scheduler: str = "rr"
    persistent_timeout: int = 0          # seconds; 0 = not persistent

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _address(self.address, "virtual service address"))
        _port(self.port, "virtual service port")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if not SCHEDULER_NAME.fullmatch(self.scheduler):
            raise ValueError(f"scheduler: {self.scheduler!r} is not an IPVS scheduler name")
        if isinstance(self.persistent_timeout, bool) or not isinstance(self.persistent_timeout, int) \
                or self.persistent_timeout < 0:
            raise ValueError(f"persistent_timeout: {self.persistent_timeout!r} must be an integer >= 0")

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.protocol)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET

    def __str__(self) -> str:
        return f"{self.protocol.upper()} {self.address}:{self.port}"


@dataclass(frozen=True)
class RealServer:
    """A real server behind a virtual service; address and port identify it."""

    address: str
    port: int
    weight: int = 1
    forwarding: str = "dr"

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _address(self.address, "real server address"))
        _port(self.port, "real server port")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) \
                or not 0 <= self.weight <= MAX_WEIGHT:
            raise ValueError(f"weight of {self.address}: {self.weight!r} is not in 0-{MAX_WEIGHT}")
        if self.forwarding not in FORWARDING:
            raise ValueError(f"forwarding: {self.forwarding!r} is not one of {', '.join(FORWARDING)}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def __str__(self) -> str:
        return f"{self.address}:{self.port} ({self.forwarding}, weight {self.weight})"


@dataclass(frozen=True)
class ServiceState:
    """A virtual service and its real servers (unique by address and port)."""

    service: VirtualService
    real_servers: tuple[RealServer, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "real_servers", tuple(self.real_servers))
        seen: set[tuple[str, int]] = set()
        for rs in self.real_servers:
            if rs.key in seen:
                raise ValueError(f"real server {rs.address}:{rs.port} is listed twice")
            seen.add(rs.key)

    def real_server(self, address: str, port: int) -> RealServer | None:
        for rs in self.real_servers:
            if rs.key == (address, port):
                return rs
        return None


@dataclass(frozen=True)
class Change:
    """One step of a plan: `kind` is one of the *_SERVICE / *_REAL_SERVER constants."""

    kind: str
    service: VirtualService
    real_server: RealServer | None = None

    def __str__(self) -> str:
        target = f"{self.service}" + (f" -> {self.real_server}" if self.real_server else "")
        return f"{self.kind} {target}"


def plan(desired: ServiceState | None, actual: ServiceState | None) -> list[Change]:
    """Changes that turn `actual` into `desired` (None = no such service). Pure.

    Order: create or retune the service, add new real servers, change weights or the
    forwarding method, and only then delete: the service never goes through a moment with
    fewer real servers than either end state.
    """
    if desired is None:
        return [] if actual is None else [Change(DEL_SERVICE, actual.service)]
    if actual is not None and actual.service.key != desired.service.key:
        raise ValueError(f"cannot plan {desired.service} from the state of {actual.service}")
    service = desired.service
    changes: list[Change] = []
    if actual is None:
        changes.append(Change(ADD_SERVICE, service))
        current: dict[tuple[str, int], RealServer] = {}
    else:
        if (actual.service.scheduler, actual.service.persistent_timeout) != \
                (service.scheduler, service.persistent_timeout):
            changes.append(Change(SET_SERVICE, service))
        current = {rs.key: rs for rs in actual.real_servers}
    wanted = {rs.key: rs for rs in desired.real_servers}
    for key, rs in wanted.items():
        if key not in current:
            changes.append(Change(ADD_REAL_SERVER, service, rs))
    for key, rs in wanted.items():
        old = current.get(key)
        if old is not None and (old.weight, old.forwarding) != (rs.weight, rs.forwarding):
            changes.append(Change(SET_REAL_SERVER, service, rs))
    for key, rs in current.items():
        if key not in wanted:
            changes.append(Change(DEL_REAL_SERVER, service, rs))
    return changes


def service_from_nla(nla: Any) -> VirtualService | None:
    """A VirtualService from a raw IPVS_CMD_ATTR_SERVICE attribute (None for fwmark services)."""
    address = nla.get("IPVS_SVC_ATTR_ADDR")
    port = nla.get("IPVS_SVC_ATTR_PORT")
    if address is None or not port:
        return None
    number = nla.get("IPVS_SVC_ATTR_PROTOCOL")
    protocol = next((name for name, value in PROTOCOLS.items() if value == number), None)
    if protocol is None:
        return None
    flags = nla.get("IPVS_SVC_ATTR_FLAGS")
    persistent = bool(flags and flags.get("flags", 0) & PERSISTENT_FLAG)
    timeout = nla.get("IPVS_SVC_ATTR_TIMEOUT") or 0
    return VirtualService(address=address, port=port, protocol=protocol,
                          scheduler=nla.get("IPVS_SVC_ATTR_SCHED_NAME") or "",
                          persistent_timeout=timeout if persistent else 0)


def real_server_from_nla(nla: Any) -> RealServer | None:
    """A RealServer from a raw IPVS_CMD_ATTR_DEST attribute (None for unknown forwarding methods)."""
    method = nla.get("IPVS_DEST_ATTR_FWD_METHOD")
    forwarding = next((name for name, value in FORWARDING.items() if value == method), None)
    if forwarding is None:
        return None
    return RealServer(address=nla.get("IPVS_DEST_ATTR_ADDR"), port=nla.get("IPVS_DEST_ATTR_PORT"),
                      weight=nla.get("IPVS_DEST_ATTR_WEIGHT"), forwarding=forwarding)


class IPVSClient:
    """A pyroute2 IPVS socket with idempotent apply and a count of the netlink writes it sent."""

    def __init__(self) -> None:
        from pyroute2 import IPVS
        from pyroute2.netlink.exceptions import NetlinkError
        self.writes = 0
        try:
            self._socket = IPVS()
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise IPVSUnavailable() from None
            raise IPVSError(f"cannot open the IPVS netlink socket: {exc}") from None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "IPVSClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- pyroute2 records: every field filled in, because "set" sends the whole record
    @staticmethod
    def _service_record(service: VirtualService, full: bool = True) -> Any:
        from pyroute2 import IPVSService
        fields: dict[str, Any] = {"addr": service.address, "port": service.port,
                                  "protocol": PROTOCOLS[service.protocol]}
        if full:
            persistent = service.persistent_timeout > 0
            fields.update(sched_name=service.scheduler,
                          flags={"flags": PERSISTENT_FLAG if persistent else 0, "mask": 0xFFFFFFFF},
                          timeout=service.persistent_timeout,
                          netmask="255.255.255.255" if service.family == socket.AF_INET else 128)
        return IPVSService(**fields)

    @staticmethod
    def _dest_record(rs: RealServer, full: bool = True) -> Any:
        from pyroute2 import IPVSDest
        if not full:
            return IPVSDest(addr=rs.address, port=rs.port)
        return IPVSDest(addr=rs.address, port=rs.port, fwd_method=FORWARDING[rs.forwarding],
                        weight=rs.weight, u_thresh=0, l_thresh=0, tun_type=0, tun_port=0, tun_flags=0)

    # ---- reading
    def services(self) -> list[ServiceState]:
        """Every address/port virtual service in the kernel with its real servers."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            messages = list(self._socket.service("dump"))
        except NetlinkError as exc:
            raise IPVSError(f"dumping IPVS services failed: {exc}") from None
        states = []
        for message in messages:
            service = service_from_nla(message.get("IPVS_CMD_ATTR_SERVICE"))
            if service is not None:
                states.append(ServiceState(service, self._real_servers(service)))
        return states

    def read(self, service: VirtualService) -> ServiceState | None:
        """The kernel's state of the service with `service`'s key, or None if it does not exist."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            messages = list(self._socket.service("get", service=self._service_record(service, full=False)))
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return None
            raise IPVSError(f"reading {service} failed: {exc}") from None
        for message in messages:
            current = service_from_nla(message.get("IPVS_CMD_ATTR_SERVICE"))
            if current is not None and current.key == service.key:
                return ServiceState(current, self._real_servers(current))
        return None

    def _real_servers(self, service: VirtualService) -> tuple[RealServer, ...]:
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            messages = list(self._socket.dest("dump", service=self._service_record(service, full=False)))
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return ()
            raise IPVSError(f"reading the real servers of {service} failed: {exc}") from None
        found = (real_server_from_nla(m.get("IPVS_CMD_ATTR_DEST")) for m in messages)
        return tuple(rs for rs in found if rs is not None)

    # ---- writing
    def _send(self, change: Change, command: str) -> int:
        """Send one write ("add", "set" or "del") for `change`; return 0 or the netlink error code."""
        from pyroute2.netlink.exceptions import NetlinkError
        full = command != "del"
        self.writes += 1
        try:
            if change.real_server is None:
                self._socket.service(command, service=self._service_record(change.service, full))
            else:
                self._socket.dest(command, service=self._service_record(change.service, full=False),
                                  dest=self._dest_record(change.real_server, full))
        except NetlinkError as exc:
            return exc.code
        return 0

    @staticmethod
    def _failure(change: Change, code: int) -> IPVSError:
        name = errno.errorcode.get(code, str(code))
        hint = ""
        if change.kind in (ADD_SERVICE, SET_SERVICE) and code == errno.ENOENT:
            hint = f" (is {change.service.scheduler!r} an IPVS scheduler the kernel can load?)"
        return IPVSError(f"{change} failed: {name} {os.strerror(code)}{hint}")

    def apply(self, changes: Iterable[Change]) -> int:
        """Apply changes in order, idempotently; return the number of netlink writes sent.

        An "add" of something that already exists is retried as a "set", a "set" of
        something missing as an "add", and deleting something already gone counts as done;
        any other error raises IPVSError naming the change.
        """
        before = self.writes
        for change in changes:
            code = self._send(change, FIRST_COMMAND[change.kind])
            if code == 0 or (change.kind in (DEL_SERVICE, DEL_REAL_SERVER) and code in GONE):
                continue
            retry = RETRY_COMMAND.get((change.kind, code))
            if retry is not None:
                code = self._send(change, retry)
            if code:
                raise self._failure(change, code)
        return self.writes - before

    def reconcile(self, desired: ServiceState) -> list[Change]:
        """Read the kernel's state of `desired.service`, apply the plan, return the changes made."""
        changes = plan(desired, self.read(desired.service))
        self.apply(changes)
        return changes

    def remove(self, service: VirtualService) -> bool:
        """Delete the service if it exists; return whether it did."""
        changes = plan(None, self.read(service))
        self.apply(changes)
        return bool(changes)

