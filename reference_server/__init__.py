"""Reference server for live task streaming: gRPC StreamTaskData in, Server-Sent Events out."""

__version__ = "0.1.0"
SPEC_VERSION = "1.0"
