"""uvicorn, hardened against slow clients: a deadline for the request headers, bounded concurrency.

uvicorn times out idle keep-alive connections and limits concurrency, but has no deadline for a
request's headers: a client sending one header byte every few seconds holds its connection (and a
slot of ``limit_concurrency``) for ever. :class:`HeaderDeadlineProtocol` closes such a connection,
with a 408, once ``header_timeout_s`` has passed since the connection opened or since the first
byte of a request. The body has its own deadline in the service (``ingest_body_timeout_s``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol with a deadline for each request's headers."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


def serve(app, *, host: str, port: int, log_level: str, header_timeout_s: float, limit_concurrency: int) -> None:
    """Run ``app`` with uvicorn (uvloop, httptools) behind the header deadline and the concurrency limit."""
    import uvicorn

    protocol = type("KidjamoHttpProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
    # log_config=None: uvicorn's records go through the project's JSON handler instead of its own text format.
    uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=None, access_log=False, loop="uvloop", http=protocol,
                timeout_graceful_shutdown=10, timeout_keep_alive=5, limit_concurrency=limit_concurrency,
                server_header=False)
