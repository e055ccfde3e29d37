"""The `pha health` service: an asyncio HTTP server, and the optional text port.

Built on asyncio protocols (no task per connection on the fast path: a
request that finds a fresh snapshot is answered inside data_received).
Robustness, all enforced here:
- at most `max_connections` open connections; when full, the connection that
  has waited longest for its request head is closed to make room (slowloris
  clients are the ones that wait), so real checks, which send their request at
  once, keep being answered;
- `request_timeout` seconds to send the request head, then 408 and close;
- `max_request_bytes` for the head, then 431 and close; garbage gets 400;
- an optional allowlist of source networks (others get 403, or a close on the
  text port);
- details (the JSON body: standby names, addresses, LSNs, lag) only for
  sources in `details` (default: loopback); others get the same status code
  with a body of role and running only, which is all HAProxy needs;
- PostgreSQL sees at most one query per `interval` (see probe.StateCache).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import time
from typing import Callable, NamedTuple, Optional, Sequence, Union

from pha.health import http
from pha.health.probe import StateCache
from pha.health.state import (BadRequest, NotFound, Snapshot, answer, needs_snapshot,
                              parse_query, text_answer)

log = logging.getLogger("pha.health")

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class Settings(NamedTuple):
    """How the service listens and defends itself (see `pha health --help`)."""

    listen: tuple[str, ...] = ("0.0.0.0",)
    port: int = 8008
    text_port: Optional[int] = None
    max_connections: int = 256
    request_timeout: float = 2.0
    max_request_bytes: int = 4096
    allow: tuple[Network, ...] = ()
    details: tuple[Network, ...] = LOOPBACK


def is_allowed(peer: object, allow: Sequence[Network]) -> bool:
    """Whether a peer address (as asyncio gives it) is inside one of `allow` (empty: everyone)."""
    return not allow or is_inside(peer, allow)


def is_inside(peer: object, networks: Sequence[Network]) -> bool:
    """Whether a peer address (as asyncio gives it) is inside one of `networks`."""
    try:
        address = ipaddress.ip_address(peer[0])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class Stats:
    """Counters shown by /liveness (and read by the tests)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.served = 0
        self.rejected = 0    # 4xx answers, refused sources, closes for lack of room
        self.evicted = 0     # slow connections closed to make room
        self.timed_out = 0


class HealthService:
    """Owns the listeners, the open connections and the cache."""

    def __init__(self, settings: Settings, cache: StateCache) -> None:
        self.settings = settings
        self.cache = cache
        self.stats = Stats()
        self.connections: dict["_Connection", float] = {}   # -> admission time; insertion order = age
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: Optional[asyncio.Task] = None
        # Answers to the request heads seen with the current snapshot (checks repeat the same few),
        # by (details shown, head).
        self._answers: dict[tuple[bool, bytes], bytes] = {}
        self._answers_for: Optional[Snapshot] = None

    # ---- connection bookkeeping ---------------------------------------------------
    def admit(self, conn: "_Connection") -> bool:
        """Register `conn`; when full, close the oldest one still waiting for its request."""
        if len(self.connections) >= self.settings.max_connections:
            victim = next((c for c in self.connections if c.waiting), None)
            if victim is None:
                self.stats.rejected += 1
                return False
            self.stats.evicted += 1
            victim.abort()
        self.connections[conn] = time.monotonic()
        return True

    def forget(self, conn: "_Connection") -> None:
        self.connections.pop(conn, None)

    async def sweep(self) -> None:
        """Answer 408 to connections that have not sent their request within request_timeout."""
        timeout = self.settings.request_timeout
        while True:
            await asyncio.sleep(min(0.1, timeout / 4))
            limit = time.monotonic() - timeout
            for conn, admitted in list(self.connections.items()):
                if admitted > limit:
                    break           # admission order: every later one is younger
                if conn.waiting:
                    conn.timed_out()

    # ---- answers --------------------------------------------------------------------
    MAX_CACHED_ANSWERS = 64

    def answer_head(self, head: bytes, snapshot: Optional[Snapshot], details: bool = False) -> Optional[bytes]:
        """The response to a request head, given the fresh snapshot if there is one.

        `details`: the client may see the snapshot's details. None when the
        request needs a snapshot and there is none (answer it once the cache
        has one). Raises http.HttpError for a malformed request.
        """
        if snapshot is not self._answers_for:
            self._answers.clear()
            self._answers_for = snapshot
        if snapshot is not None:
            cached = self._answers.get((details, head))
            if cached is not None:
                self.stats.served += 1
                return cached
        request = http.parse_head(head)
        if not needs_snapshot(request.path):
            return self.http_answer(request, None)
        if snapshot is None:
            return None
        response = self.http_answer(request, snapshot, details)
        if len(self._answers) < self.MAX_CACHED_ANSWERS:
            self._answers[(details, head)] = response
        return response

    def liveness(self) -> bytes:
        s = self.stats
        return http.json_body({
            "alive": True, "uptime_s": round(time.monotonic() - s.started, 1),
            "connections": len(self.connections), "served": s.served, "rejected": s.rejected,
            "evicted": s.evicted, "timed_out": s.timed_out, "refreshes": self.cache.refreshes})

    def http_answer(self, request: http.Request, snapshot: Optional[Snapshot], details: bool = False) -> bytes:
        """The response to a parsed request; `snapshot` is None only when not needs_snapshot()."""
        try:
            lag = parse_query(request.path, request.query)
        except NotFound as exc:
            self.stats.rejected += 1
            return http.response(404, http.json_body({"error": str(exc)}), request.method)
        except BadRequest as exc:
            self.stats.rejected += 1
            return http.response(400, http.json_body({"error": str(exc)}), request.method)
        self.stats.served += 1
        if snapshot is None:
            return http.response(200, self.liveness(), request.method)
        body = snapshot.to_json() if details else snapshot.brief()
        return http.response(answer(request.path, lag, snapshot), http.json_body(body), request.method)

    # ---- running ---------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.settings.max_connections
        for host in self.settings.listen:
            self._servers.append(await loop.create_server(
                lambda: _HttpConnection(self), host, self.settings.port,
                backlog=limit, reuse_address=True))
            if self.settings.text_port is not None:
                self._servers.append(await loop.create_server(
                    lambda: _TextConnection(self), host, self.settings.text_port,
                    backlog=limit, reuse_address=True))
        self._sweeper = asyncio.ensure_future(self.sweep())
        ports = [str(self.settings.port)] + ([f"text {self.settings.text_port}"]
                                             if self.settings.text_port is not None else [])
        log.info("pha health listening on %s port %s", ", ".join(self.settings.listen), ", ".join(ports))

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()
        await self.cache.close()

    async def serve_forever(self) -> None:
        """Serve until SIGTERM or SIGINT."""
        await self.start()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        first_read = asyncio.ensure_future(self.cache.get())   # before the first check arrives
        try:
            await done.wait()
        finally:
            first_read.cancel()
            log.info("pha health stopping")
            await self.stop()


class _Connection(asyncio.Protocol):
    """Shared part of both protocols: admission, allowlist, one answer, close."""

    def __init__(self, service: HealthService) -> None:
        self.service = service
        self.transport: Optional[asyncio.Transport] = None
        self.waiting = False          # still reading the request (evictable)
        self.task: Optional[asyncio.Future] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        service = self.service
        if not is_allowed(transport.get_extra_info("peername"), service.settings.allow):
            service.stats.rejected += 1
            self.refused()
            return
        if not service.admit(self):
            self.abort()
            return
        self.admitted()

    def refused(self) -> None:
        self.abort()

    def admitted(self) -> None:
        raise NotImplementedError

    def timed_out(self) -> None:
        """Called by the sweeper for a connection still `waiting` after request_timeout."""
        self.abort()

    def send(self, data: Optional[bytes]) -> None:
        """Write `data` (if any) and close; the kernel buffers these few bytes."""
        self.waiting = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data:
            transport.write(data)
        transport.close()
        if transport.get_write_buffer_size():
            # A peer that does not read cannot hold us: abort if the close has not finished.
            asyncio.get_running_loop().call_later(self.service.settings.request_timeout,
                                                  transport.abort)

    def abort(self) -> None:
        self.waiting = False
        if self.transport is not None:
            self.transport.abort()

    def later(self, respond: Callable[[Snapshot], Optional[bytes]]) -> None:
        """Answer once the cache has a fresh snapshot."""
        async def run() -> None:
            snapshot = await self.service.cache.get()
            self.send(respond(snapshot))
        self.task = asyncio.ensure_future(run())

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.waiting = False
        self.service.forget(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.transport = None


class _HttpConnection(_Connection):
    def __init__(self, service: HealthService) -> None:
        super().__init__(service)
        self.buffer = bytearray()
        self.details = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.details = is_inside(transport.get_extra_info("peername"), self.service.settings.details)
        super().connection_made(transport)

    def refused(self) -> None:
        self.send(http.error_response(http.HttpError(403, "source address not allowed")))

    def admitted(self) -> None:
        self.waiting = True

    def timed_out(self) -> None:
        self.service.stats.timed_out += 1
        self.send(http.error_response(http.HttpError(408, "request head not received in time")))

    def data_received(self, data: bytes) -> None:
        if not self.waiting:
            return
        self.buffer += data
        limit = self.service.settings.max_request_bytes
        end = self.buffer.find(b"\r\n\r\n", max(0, len(self.buffer) - len(data) - 3))
        if end < 0 and len(self.buffer) <= limit:
            return
        if end < 0 or end + 4 > limit:
            self.fail(http.HttpError(431, f"request head larger than {limit} bytes"))
            return
        self.waiting = False
        head = bytes(self.buffer[:end])
        self.buffer = bytearray()
        response = self.answer(head, self.service.cache.fresh())
        if response is None:
            self.later(lambda snapshot: self.answer(head, snapshot))
        else:
            self.send(response)

    def answer(self, head: bytes, snapshot: Optional[Snapshot]) -> Optional[bytes]:
        try:
            return self.service.answer_head(head, snapshot, self.details)
        except http.HttpError as exc:
            self.service.stats.rejected += 1
            return http.error_response(exc)

    def fail(self, error: http.HttpError) -> None:
        self.service.stats.rejected += 1
        self.send(http.error_response(error))

    def eof_received(self) -> Optional[bool]:
        if self.waiting:     # the client gave up before finishing its request
            self.abort()
        return True          # keep our side open until the answer is written


class _TextConnection(_Connection):
    """The text port: "production" or "standby", or a close when PostgreSQL is down."""

    def admitted(self) -> None:
        snapshot = self.service.cache.fresh()
        if snapshot is not None:
            self.answer(snapshot)
        else:
            self.later(self.answer_bytes)

    def answer_bytes(self, snapshot: Snapshot) -> Optional[bytes]:
        self.service.stats.served += 1
        return text_answer(snapshot)

    def answer(self, snapshot: Snapshot) -> None:
        self.send(self.answer_bytes(snapshot))

    def data_received(self, data: bytes) -> None:
        pass     # nothing to read: the answer does not depend on the request
