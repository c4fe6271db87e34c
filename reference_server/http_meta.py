"""Discovery document, health and metrics."""

from __future__ import annotations

import importlib.resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import SPEC_VERSION, __version__
from .context import CONTEXT

PROFILES_MEMORY = ["core", "consolidated", "resume", "lifecycle", "standalone-tasks",
                   "browser-auth", "limits", "batch-ingest", "http-ingest"]  # fmt: skip


async def discovery(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    s = ctx.settings
    profiles = list(PROFILES_MEMORY)
    if s.nats_enabled:
        profiles.append("multi-instance")
        if s.nats_mode == "core":
            profiles.remove("resume")
    return web.json_response(
        {
            "specVersion": SPEC_VERSION,
            "implementation": {"name": "task-streaming reference server", "version": __version__},
            "grpc": {"address": ctx.grpc_address, "service": "flovyn.v1.TaskExecution"},
            "profiles": profiles,
            "keepaliveIntervalSeconds": s.keepalive_interval,
            "idleTimeoutSeconds": s.idle_timeout,
            "maxPayloadBytes": s.max_payload_bytes,
            "maxBatchEvents": s.max_batch_events,
            "maxBatchBytes": s.max_batch_bytes,
            "maxStreamsPerTenant": s.max_streams_per_tenant,
            "bus": "nats-" + s.nats_mode if s.nats_enabled else "memory",
            "retention": {"maxEvents": s.replay_max_events, "maxAgeSeconds": s.replay_max_age}
            if not s.nats_enabled
            else {"maxAgeSeconds": s.nats_max_age, "maxBytes": s.nats_max_bytes},
        }
    )


_DEMO = importlib.resources.files(__package__).joinpath("demo.html").read_bytes()


async def demo(request: web.Request) -> web.Response:
    """A page that subscribes with EventSource (stream token from the URL fragment)."""
    return web.Response(
        body=_DEMO,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
        },
    )


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    checks = {
        "store": "up" if await ctx.store.ping() else "down",
        "bus": "up" if ctx.bus.healthy else "down",
        "accepting": "no" if ctx.shutting_down else "yes",
    }
    ok = checks["store"] == "up" and checks["bus"] == "up" and not ctx.shutting_down
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[CONTEXT].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/.well-known/task-streaming", discovery, allow_head=False)
    app.router.add_get("/health/live", live, allow_head=False)
    app.router.add_get("/health/ready", ready, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/demo", demo, allow_head=False)
