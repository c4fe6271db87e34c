"""`reference-server serve`: run one instance until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import sys
import urllib.request
from collections.abc import Sequence

from . import __version__, launch, logs, settings
from .app import Server
from .extensions import Extension


def main(argv: Sequence[str] | None = None, *, extension: Extension | None = None) -> int:
    """Run the command in `argv`; `extension` builds a server with replaced parts."""
    parser = argparse.ArgumentParser(prog="reference-server", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    settings.add_arguments(serve)
    args = parser.parse_args(argv)
    config = settings.from_sources(args, __import__("os").environ)
    logs.configure(config.log_level, config.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        if config.event_loop == "uvloop":
            import uvloop

            uvloop.run(_serve(config, extension))
        else:
            asyncio.run(_serve(config, extension))
    return 0


async def _serve(config: settings.Settings, extension: Extension | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if config.workers > 1:
        from .workers import supervise

        on_ready = _bootstrap if config.bootstrap else None
        await supervise(config, stop, on_ready)
        print("shutting down", file=sys.stderr, flush=True)
        return
    watcher = asyncio.create_task(_stop_at_eof(stop)) if config.exit_with_stdin else None
    nats_server = None
    if config.nats_url == "embedded":
        try:
            nats_server = await launch.start_nats(config.data_dir / "nats")
        except launch.EmbeddedUnavailable as error:
            raise SystemExit(str(error)) from None
        config = config.with_changes(nats_url=nats_server.url)
    generated_admin = config.admin_token is None
    try:
        async with Server(config, extension=extension) as server:
            if generated_admin:
                print(f"admin token (shown once): {server.admin_token}", flush=True)
            if config.bootstrap:
                await asyncio.to_thread(
                    _bootstrap, server.http_url, server.grpc_address, server.admin_token
                )
            print(f"READY http={server.http_url} grpc={server.grpc_address}", flush=True)
            await stop.wait()
            print("shutting down", file=sys.stderr, flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
        if nats_server is not None:
            await asyncio.to_thread(nats_server.terminate)


async def _stop_at_eof(stop: asyncio.Event) -> None:
    """Set `stop` when standard input closes (the supervisor of --workers is gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


def _call(url: str, token: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - our own http:// URL
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, object] = json.loads(response.read())
        return result


def _bootstrap(base: str, grpc_address: str, admin: str) -> None:
    """Create a demo tenant, tokens and workflow through the management API, and print the
    commands that watch and publish (the same calls a user would make)."""
    import secrets

    slug = "demo-" + secrets.token_hex(3)
    _call(f"{base}/api/admin/tenants", admin, {"slug": slug})
    user = _call(f"{base}/api/admin/tenants/{slug}/tokens", admin, {"kind": "user"})["token"]
    worker = _call(f"{base}/api/admin/tenants/{slug}/tokens", admin, {"kind": "worker"})["token"]
    workflow = _call(f"{base}/api/tenants/{slug}/workflow-executions", admin, {"kind": "demo"})
    wf = workflow["id"]
    task = _call(
        f"{base}/api/tenants/{slug}/task-executions",
        admin,
        {"kind": "demo", "workflowExecutionId": wf},
    )["id"]
    # A fresh stream token (at most 15 min) in the URL fragment, which browsers never send.
    stream = _call(f"{base}/api/tenants/{slug}/stream-tokens", admin, {"workflowExecutionId": wf})
    demo = f"{base}/demo#tenant={slug}&workflow={wf}&token={stream['token']}"
    watch = (
        f"curl -N -H 'Authorization: Bearer {user}' {base}/api/tenants/{slug}/stream/workflows/{wf}"
    )
    publish = [
        sys.executable, "-m", "harness", "publish", "--grpc", grpc_address,
        "--token", str(worker), "--workflow", str(wf), "--task", str(task),
        "--type", "token", "hello from the bootstrap",
    ]  # fmt: skip
    message = {
        "type": 1,
        "payload": "hello",
        "task_execution_id": task,
        "workflow_execution_id": wf,
    }
    grpcurl = (
        f"grpcurl -plaintext -H 'authorization: Bearer {worker}' -d '{json.dumps(message)}' "
        f"{grpc_address} flovyn.v1.TaskExecution/StreamTaskData"
    )
    print(
        "\n".join(
            [
                "",
                f"bootstrap: tenant={slug} workflow={wf} task={task}",
                f"  user token:   {user}",
                f"  worker token: {worker}",
                "watch the workflow's stream (leave it running):",
                f"  {watch}",
                "publish an event (in another terminal):",
                f"  {shlex.join(publish)}",
                "or, with grpcurl:",
                f"  {grpcurl}",
                f"or watch it in a browser (the stream token expires {stream['expiresAt']}):",
                f"  {demo}",
                "",
            ]
        ),
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
