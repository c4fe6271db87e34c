"""Settings: flags over TASKSTREAM_* variables over defaults; bad values refused at start."""

import importlib.util
import secrets

import pytest

from reference_server.settings import Settings, admin_token_weakness, parse


def test_defaults_match_the_contract() -> None:
    s = parse([], {})
    assert (s.http_port, s.grpc_port, s.keepalive_interval, s.idle_timeout) == (
        8080,
        50051,
        15,
        300,
    )
    assert s.max_payload_bytes == 65536
    assert s.max_streams_per_tenant == 1000
    assert not s.nats_enabled


def test_flags_override_environment() -> None:
    s = parse(
        ["--http-port", "9000"], {"TASKSTREAM_HTTP_PORT": "7000", "TASKSTREAM_IDLE_TIMEOUT": "2"}
    )
    assert s.http_port == 9000
    assert s.idle_timeout == 2.0


def test_seed_environment_names_select_backends() -> None:
    s = parse([], {"NATS_URL": "nats://127.0.0.1:4222", "DATABASE_URL": "postgresql://x/y"})
    assert s.nats_enabled
    assert s.database_url == "postgresql://x/y"


def test_nats_embedded_alias() -> None:
    assert parse(["--nats", "embedded"], {}).nats_url == "embedded"


def test_boolean_flags_from_environment() -> None:
    assert parse([], {"TASKSTREAM_EPHEMERAL": "true"}).ephemeral


@pytest.mark.parametrize(
    "argv",
    [["--keepalive-interval", "0"], ["--http-port", "x"], ["--nats-mode", "kafka"],
     ["--admin-token", "short"], ["--admin-token", "h" * 16], ["--admin-token", "fat_" + "h" * 40],
     ["--request-head-timeout", "0"], ["--max-unauthenticated-connections", "0"],
     ["--event-loop", "tokio"], ["--max-batch-events", "0"], ["--max-batch-bytes", "0"]],
)  # fmt: skip
def test_bad_values_stop_the_server(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv, {})


def test_with_changes_returns_a_new_frozen_copy() -> None:
    s = Settings()
    t = s.with_changes(idle_timeout=1.0)
    assert (s.idle_timeout, t.idle_timeout) == (300.0, 1.0)


def test_batch_limits_and_event_loop_from_flags_and_environment() -> None:
    s = parse(["--max-batch-events", "50"], {"TASKSTREAM_MAX_BATCH_BYTES": "2048"})
    assert (s.max_batch_events, s.max_batch_bytes, s.event_loop) == (50, 2048, "asyncio")


def test_uvloop_is_accepted_only_when_installed() -> None:
    if importlib.util.find_spec("uvloop") is None:
        with pytest.raises(SystemExit, match="uvloop package"):
            parse(["--event-loop", "uvloop"], {})
    else:
        assert parse(["--event-loop", "uvloop"], {}).event_loop == "uvloop"


def test_a_random_admin_token_is_strong_enough() -> None:
    token = "fat_" + secrets.token_urlsafe(32)
    assert admin_token_weakness(token) is None
    assert parse(["--admin-token", token], {}).admin_token == token


def test_admin_token_weakness_says_why() -> None:
    assert "32 characters" in str(admin_token_weakness("h" * 16))
    assert "predictable" in str(admin_token_weakness("abcd" * 8))
    assert "visible ASCII" in str(admin_token_weakness("é" * 40))
