"""Incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), without I/O.

Feed it the body bytes in whatever pieces the transport delivers; it returns the payload they
complete and says when the terminating (zero-size) chunk and its trailer section have arrived,
which is how a client tells "the server ended the response" from "the connection dropped".
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ChunkedDecoder", "ChunkedError"]

_MAX_LINE: Final = 4096  # a chunk-size line or trailer field longer than this is an attack


class ChunkedError(ValueError):
    """The body is not valid chunked coding."""


# A chunk-size line: hex size, optional extensions, line end (a bare LF is tolerated).
_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)  # ints: this runs once per chunk


class ChunkedDecoder:
    """Turns a chunked body into its payload, piece by piece.

    ``done`` becomes true once the last chunk and the trailer section are complete; bytes fed
    after that are kept in :attr:`rest` (the start of a next response on a kept-alive
    connection) rather than decoded. The load generators decode every event through this, so
    the common case (whole chunks in one piece) costs one regex match and two slices a chunk.
    """

    __slots__ = ("_line", "_remaining", "_state", "rest")

    def __init__(self) -> None:
        self._state = _SIZE
        self._line = b""  # an unfinished size, CRLF or trailer line
        self._remaining = 0  # bytes of the current chunk's data still to come
        self.rest = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> bytes:
        """The payload completed by ``data``; raises :class:`ChunkedError` on bad coding."""
        state = self._state
        if state == _DONE:
            self.rest += data
            return b""
        if self._line:
            data, self._line = self._line + data, b""
        out: list[bytes] = []
        append, size_line = out.append, _SIZE_LINE.match  # bound once: the loop is hot
        pos, size = 0, len(data)
        while pos < size:
            if state == _SIZE:
                match = size_line(data, pos)
                if match is None:
                    if data.find(b"\n", pos) >= 0 or size - pos > _MAX_LINE:
                        raise ChunkedError(f"bad chunk size line {data[pos : pos + 40]!r}")
                    self._line = data[pos:]
                    break
                pos, length = match.end(), int(match.group(1), 16)
                if length == 0:
                    state = _TRAILER
                    continue
                end = pos + length
                if data.startswith(b"\r\n", end):  # the usual case: the whole chunk is here
                    append(data[pos:end])
                    pos = end + 2
                    continue
                state, self._remaining = _DATA, length
            elif state == _DATA:
                end = pos + self._remaining
                if end > size:
                    append(data[pos:])
                    self._remaining = end - size
                    break
                append(data[pos:end])
                pos, state = end, _DATA_END
            else:  # a line: the CRLF after chunk data, or a trailer field
                end = data.find(b"\n", pos)
                if end < 0:
                    self._line = data[pos:]
                    if len(self._line) > _MAX_LINE:
                        raise ChunkedError("trailer line too long")
                    break
                line = data[pos:end].rstrip(b"\r")
                pos = end + 1
                if state == _DATA_END:
                    if line:
                        raise ChunkedError(f"chunk data longer than its size: {line[:40]!r}")
                    state = _SIZE
                elif not line:  # the empty line after the trailer fields ends the message
                    state = _DONE
                    self.rest = data[pos:]
                    break
        self._state = state
        return out[0] if len(out) == 1 else b"".join(out)
