"""Incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), without I/O.

Feed it the body bytes in whatever pieces the transport delivers; it returns the payload they
complete and says when the terminating (zero-size) chunk and its trailer section have arrived,
which is how a client tells "the server ended the response" from "the connection dropped".
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["ChunkedDecoder", "ChunkedError"]

_MAX_LINE: Final = 4096  # a chunk-size line or trailer field longer than this is an attack


class ChunkedError(ValueError):
    """The body is not valid chunked coding."""


class _State(enum.Enum):
    SIZE = enum.auto()  # reading a chunk-size line
    DATA = enum.auto()  # reading chunk data
    DATA_END = enum.auto()  # reading the CRLF after chunk data
    TRAILER = enum.auto()  # reading trailer fields up to an empty line
    DONE = enum.auto()


class ChunkedDecoder:
    """Turns a chunked body into its payload, piece by piece.

    ``done`` becomes true once the last chunk and the trailer section are complete; bytes fed
    after that are kept in :attr:`rest` (the start of a next response on a kept-alive
    connection) rather than decoded.
    """

    def __init__(self) -> None:
        self._state = _State.SIZE
        self._buffer = bytearray()
        self._remaining = 0
        self.rest = bytearray()

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes) -> bytes:
        """The payload completed by ``data``; raises :class:`ChunkedError` on bad coding."""
        if self._state is _State.DONE:
            self.rest.extend(data)
            return b""
        out = bytearray()
        buf = self._buffer
        buf.extend(data)
        pos = 0
        while pos < len(buf):
            state = self._state
            if state is _State.DATA:
                take = min(self._remaining, len(buf) - pos)
                out.extend(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _State.DATA_END
                continue
            end = buf.find(b"\n", pos)
            if end < 0:
                if len(buf) - pos > _MAX_LINE:
                    raise ChunkedError("chunk line too long")
                break
            line = bytes(buf[pos:end]).rstrip(b"\r")
            pos = end + 1
            if state is _State.SIZE:
                self._remaining = _chunk_size(line)
                self._state = _State.DATA if self._remaining else _State.TRAILER
            elif state is _State.DATA_END:
                if line:
                    raise ChunkedError(f"chunk data longer than its size: {line[:40]!r}")
                self._state = _State.SIZE
            elif not line:  # TRAILER: the empty line ends the message
                self._state = _State.DONE
                self.rest.extend(buf[pos:])
                pos = len(buf)
        del buf[:pos]
        return bytes(out)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
        raise ChunkedError(f"bad chunk size line {line[:40]!r}")
    return int(size, 16)
