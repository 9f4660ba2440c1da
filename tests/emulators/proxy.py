"""A plain-HTTP forward proxy that records what it relayed (absolute-URI requests)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from .base import Emulator, Reply

# Per-connection headers (RFC 9110 7.6.1) plus the ones the base server writes itself.
_NOT_RELAYED = {"connection", "proxy-connection", "keep-alive", "transfer-encoding",
                "content-length", "proxy-authorization"}  # fmt: skip


class ForwardProxy(Emulator):
    """`requests` sends `GET http://host:port/path HTTP/1.1` here; `requests[i].path` keeps
    that absolute URI. Relayed with http.client, which never consults proxy variables, so a
    test's HTTP_PROXY cannot send the proxy back to itself."""

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        target = urlsplit(path)
        if target.scheme != "http" or not target.hostname:
            return 400, {}, b"absolute http:// URI expected"
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _NOT_RELAYED}
            query = f"?{target.query}" if target.query else ""
            conn.request(method, (target.path or "/") + query, body or None, forwarded)
            answer = conn.getresponse()
            payload = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in _NOT_RELAYED}
            return answer.status, kept, payload
        finally:
            conn.close()
