"""The wire: HTTP/1.1, chunked coding and SSE framing without I/O, the adapters that do the I/O,
and the observation hooks every adapter reports to (:mod:`harness.wire.observe`)."""
