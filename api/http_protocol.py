"""uvicorn's HTTP protocol (httptools), answering requests it cannot parse in OpenAI's error shape.

A request that httptools refuses (malformed, or a URL over its 65,535-byte limit) never reaches the
app: uvicorn answers it itself with a plain-text 400, which OpenAI's SDKs cannot read as an error. This
protocol sends the same 400, with the same headers, as ``{"error": {...}}``.
"""

from __future__ import annotations

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shared.errors import InvalidRequest

__all__ = ("GatewayHttpProtocol",)

_BODY = msgspec.json.encode(
    InvalidRequest(
        "The HTTP request could not be parsed: it is malformed, or its URL is longer than 65,535 bytes.",
        code="invalid_http_request",
    ).body()
)


class GatewayHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(_BODY)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _BODY)
        self.transport.close()
