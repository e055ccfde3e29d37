"""Just enough HTTP/1.x for health checks: parse one request head, build one response.

Every response closes the connection (as HAProxy's checks expect), so there
is no keep-alive, no body reading and no chunking to get wrong. Pure logic.
"""
from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

METHODS = ("GET", "HEAD", "OPTIONS")
ALLOW = ", ".join(METHODS)
REASONS = {200: "OK", 206: "Partial Content", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           414: "URI Too Long", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}
MAX_TARGET = 1024
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")


class HttpError(Exception):
    """The request cannot be answered: `status` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request(NamedTuple):
    method: str
    path: str
    query: dict[str, list[str]]


def parse_head(head: bytes) -> Request:
    """Parse a request head (request line and header lines, without the final blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    version_match = _VERSION.fullmatch(version)
    if version_match is None:
        raise HttpError(400, "malformed HTTP version")
    if version_match.group(1) != b"1":
        raise HttpError(400, "only HTTP/1.x is served")
    if len(target) > MAX_TARGET:
        raise HttpError(414, f"request target longer than {MAX_TARGET} bytes")
    if not target.startswith(b"/") or any(c < 0x21 or c > 0x7e for c in target):
        raise HttpError(400, "request target must be an absolute path")
    for line in lines[1:]:
        name, colon, _ = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header line")
    if method.decode() not in METHODS:
        raise HttpError(405, f"method {method.decode()} not allowed (allowed: {ALLOW})")
    split = urlsplit(target.decode("ascii"))
    try:
        query = parse_qs(split.query, keep_blank_values=True, strict_parsing=bool(split.query),
                         max_num_fields=8)
    except ValueError:
        raise HttpError(400, "malformed query string") from None
    return Request(method.decode(), unquote(split.path), query)


def response(status: int, body: Optional[bytes], method: str = "GET") -> bytes:
    """A complete response; HEAD gets the headers only, OPTIONS also the Allow header."""
    content = body or b""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(content)}",
            "Cache-Control: no-store",
            "Connection: close"]
    if status == 405 or method == "OPTIONS":
        head.append(f"Allow: {ALLOW}")
    text = ("\r\n".join(head) + "\r\n\r\n").encode()
    return text if method == "HEAD" else text + content


def json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def error_response(error: HttpError) -> bytes:
    return response(error.status, json_body({"error": str(error)}))
