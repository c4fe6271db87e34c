"""The objects one server instance shares between its HTTP and gRPC sides, created once."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .auth import Authenticator
from .bus import Bus
from .directory import Directory
from .metrics import Metrics
from .policies import Policies
from .settings import Settings
from .store import Store
from .streams import StreamRegistry


@dataclass(slots=True)
class ServerContext:
    settings: Settings
    store: Store
    bus: Bus
    auth: Authenticator
    directory: Directory
    metrics: Metrics
    streams: StreamRegistry
    policies: Policies = field(default_factory=Policies)
    grpc_address: str = ""
    shutting_down: bool = False


CONTEXT = web.AppKey("context", ServerContext)
