"""IPVS (LVS) virtual services over generic netlink: model, kernel state, plan, apply.

The model is two frozen dataclasses, `VirtualService` and `RealServer`, grouped in a
`ServiceState`. `plan(desired, actual)` is pure: it returns the `Change`s that turn `actual`
into `desired`. `IPVSClient` reads the kernel's state and applies changes idempotently,
counting every netlink write it sends; no ipvsadm anywhere.

Reads go through pyroute2 (0.9.7), from the raw IPVS_*_ATTR_* attributes: its
`from_message()` reports class defaults for the forwarding method and the flags.
Writes do not use pyroute2's request objects, whose "update" sends a delete and whose
"set" silently fills omitted fields with defaults, and whose Python encoding costs ~0.6 ms
a message on a real host (~2.4 ms in UML), more than an ipvsadm process costs there. The
six fixed-layout write messages (NEW/SET/DEL of SERVICE/DEST; an add or set always carries
every field) are packed with struct at the end of this module and sent in batches on a
plain socket of pyroute2's "IPVS" family; the kernel acks each one. The unit tests decode
them with pyroute2's parser. See ../shared/reference/uml-ipvs/README.md.
pyroute2 is imported lazily: agents import this module on their hot path.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

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
BATCH_SIZE = 256                     # write messages per socket write (their acks fit any rcvbuf)
ACK_TIMEOUT = 10.0                   # seconds to wait for the kernel's acks
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
        self._seq = 0
        try:
            self._socket = IPVS()
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise IPVSUnavailable() from None
            raise IPVSError(f"cannot open the IPVS netlink socket: {exc}") from None
        self._family = self._socket.prid
        self._raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self._raw.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)     # acks without the request echoed
        self._raw.bind((0, 0))
        self._raw.settimeout(ACK_TIMEOUT)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._raw.close()
            self._socket = None

    def __enter__(self) -> "IPVSClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _service_key(service: VirtualService) -> Any:
        """A pyroute2 record naming the service, for reads."""
        from pyroute2 import IPVSService
        return IPVSService(addr=service.address, port=service.port, protocol=PROTOCOLS[service.protocol])

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
            messages = list(self._socket.service("get", service=self._service_key(service)))
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
            messages = list(self._socket.dest("dump", service=self._service_key(service)))
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return ()
            raise IPVSError(f"reading the real servers of {service} failed: {exc}") from None
        found = (real_server_from_nla(m.get("IPVS_CMD_ATTR_DEST")) for m in messages)
        return tuple(rs for rs in found if rs is not None)

    # ---- writing
    def _send(self, writes: list[tuple[Change, str]]) -> list[int]:
        """Send ("add" | "set" | "del", change) writes in batches; return each one's error code."""
        codes: list[int] = []
        for start in range(0, len(writes), BATCH_SIZE):
            batch = writes[start:start + BATCH_SIZE]
            first = self._seq + 1
            self._seq += len(batch)
            data = b"".join(encode_write(self._family, first + n, change, command)
                            for n, (change, command) in enumerate(batch))
            self.writes += len(batch)
            try:
                self._raw.send(data)
                answers = self._acks(range(first, first + len(batch)))
            except OSError as exc:
                raise IPVSError(f"sending {len(batch)} IPVS requests failed: {exc}") from None
            codes += [answers[first + n] for n in range(len(batch))]
        return codes

    def _acks(self, expected: range) -> dict[int, int]:
        """Error code (0 = done) of every sequence number in `expected`, from the kernel's acks."""
        answers: dict[int, int] = {}
        while len(answers) < len(expected):
            try:
                data = self._raw.recv(1 << 16)
            except socket.timeout:
                raise IPVSError(f"no answer from IPVS after {ACK_TIMEOUT:g}s") from None
            for seq, code in parse_acks(data):
                if seq in expected:
                    answers[seq] = code
        return answers

    @staticmethod
    def _done(change: Change, code: int) -> bool:
        return code == 0 or (change.kind in (DEL_SERVICE, DEL_REAL_SERVER) and code in GONE)

    @staticmethod
    def _failure(change: Change, code: int) -> IPVSError:
        name = errno.errorcode.get(code, str(code))
        hint = ""
        if change.kind in (ADD_SERVICE, SET_SERVICE) and code == errno.ENOENT:
            hint = f" (is {change.service.scheduler!r} an IPVS scheduler the kernel can load?)"
        return IPVSError(f"{change} failed: {name} {os.strerror(code)}{hint}")

    def apply(self, changes: Iterable[Change]) -> int:
        """Apply changes in order, idempotently; return the number of netlink writes sent.

        The kernel runs a batch's messages in order and acks each. Then an "add" of
        something that already exists is retried as a "set", a "set" of something missing
        as an "add", and deleting something already gone counts as done; any other error
        raises IPVSError naming the change.
        """
        changes = list(changes)
        before = self.writes
        codes = self._send([(change, FIRST_COMMAND[change.kind]) for change in changes])
        for change, code in zip(changes, codes):      # failures are rare: one write at a time
            if self._done(change, code):
                continue
            if change.real_server is not None and code == errno.ESRCH:
                code = self._send([(change, FIRST_COMMAND[change.kind])])[0]   # its service may exist now
                if self._done(change, code):
                    continue
            retry = RETRY_COMMAND.get((change.kind, code))
            if retry is not None:
                code = self._send([(change, retry)])[0]
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


# ---------------------------------------------------------------------- write messages
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
GENL_VERSION = 1
COMMANDS = {("service", "add"): 1, ("service", "set"): 2, ("service", "del"): 3,   # IPVS_CMD_*
            ("dest", "add"): 5, ("dest", "set"): 6, ("dest", "del"): 7}
REQUEST_FLAGS = {"add": NLM_F_CREATE | NLM_F_EXCL, "set": NLM_F_REPLACE, "del": 0}
CMD_ATTR_SERVICE, CMD_ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT = 1, 2, 3, 4
SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = 6, 7, 8, 9
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH, DEST_ADDR_FAMILY = \
    1, 2, 3, 4, 5, 6, 11
NLMSG_HEADER = struct.Struct("=IHHII")    # length, type, flags, sequence, port id
GENL_HEADER = struct.Struct("=BBH")       # command, version, reserved
NLA_HEADER = struct.Struct("=HH")         # length, type


def _nla(kind: int, payload: bytes) -> bytes:
    length = NLA_HEADER.size + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def _packed(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed


def service_attributes(service: VirtualService, full: bool) -> bytes:
    """IPVS_SVC_ATTR_* of a service: its key, plus every tunable field when `full`."""
    family, raw = _packed(service.address)
    attrs = (_nla(SVC_AF, struct.pack("=H", family))
             + _nla(SVC_PROTOCOL, struct.pack("=H", PROTOCOLS[service.protocol]))
             + _nla(SVC_ADDR, raw) + _nla(SVC_PORT, struct.pack("!H", service.port)))
    if full:
        flags = PERSISTENT_FLAG if service.persistent_timeout else 0
        netmask = b"\xff\xff\xff\xff" if family == socket.AF_INET else struct.pack("=I", 128)
        attrs += (_nla(SVC_SCHED_NAME, service.scheduler.encode() + b"\0")
                  + _nla(SVC_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF))
                  + _nla(SVC_TIMEOUT, struct.pack("=I", service.persistent_timeout))
                  + _nla(SVC_NETMASK, netmask))
    return attrs


def dest_attributes(rs: RealServer, full: bool) -> bytes:
    """IPVS_DEST_ATTR_* of a real server: its key, plus every field of a "set" when `full`."""
    family, raw = _packed(rs.address)
    attrs = (_nla(DEST_ADDR_FAMILY, struct.pack("=H", family)) + _nla(DEST_ADDR, raw)
             + _nla(DEST_PORT, struct.pack("!H", rs.port)))
    if full:
        attrs += (_nla(DEST_FWD_METHOD, struct.pack("=I", FORWARDING[rs.forwarding]))
                  + _nla(DEST_WEIGHT, struct.pack("=I", rs.weight))
                  + _nla(DEST_U_THRESH, struct.pack("=I", 0)) + _nla(DEST_L_THRESH, struct.pack("=I", 0)))
    return attrs


def encode_write(family_id: int, seq: int, change: Change, command: str) -> bytes:
    """One generic netlink IPVS request ("add", "set" or "del" of `change`'s object), acked."""
    full = command != "del"
    if change.real_server is None:
        cmd = COMMANDS[("service", command)]
        attrs = _nla(CMD_ATTR_SERVICE, service_attributes(change.service, full))
    else:
        cmd = COMMANDS[("dest", command)]
        attrs = (_nla(CMD_ATTR_SERVICE, service_attributes(change.service, False))
                 + _nla(CMD_ATTR_DEST, dest_attributes(change.real_server, full)))
    body = GENL_HEADER.pack(cmd, GENL_VERSION, 0) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | REQUEST_FLAGS[command]
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), family_id, flags, seq, 0) + body


def parse_acks(data: bytes) -> Iterator[tuple[int, int]]:
    """(sequence number, error code) of every ack (NLMSG_ERROR) in a netlink read; 0 = success."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _, seq, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            break
        if kind == NLMSG_ERROR and length >= NLMSG_HEADER.size + 4:
            (error,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
            yield seq, -error
        offset += (length + 3) & ~3
