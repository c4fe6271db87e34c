"""Target files: parsed strictly, with errors that say where; dump_target round-trips."""

from dataclasses import replace
from pathlib import Path

import pytest

from harness.targets import (
    Instance,
    Target,
    TargetError,
    dump_target,
    load_targets,
    write_target_file,
)


def test_dump_and_load_round_trip_keeps_instance_pairs(tmp_path: Path) -> None:
    target = Target(
        name="two",
        http_urls=["http://127.0.0.1:9", "http://127.0.0.1:1"],
        grpc_addresses=["127.0.0.1:8", "127.0.0.1:2"],
        profiles=frozenset({"core", "resume"}),
        keepalive_interval=2.0,
        idle_timeout=6.0,
        provisioner={"kind": "admin-api", "admin_token": 'fat_"quoted\\'},
    )
    path = tmp_path / "t.toml"
    path.write_text(dump_target(target))
    assert load_targets(path) == [target]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[target]]"),
        ('[[target]]\nhttp = "http://x"\n', "'grpc'"),
        ('[[target]]\nhttp = ["http://x"]\ngrpc = ["a:1", "b:2"]\n', "same instances"),
        ('[[target]]\nhttp = "h"\ngrpc = "g"\nprofiles = ["warp"]\n', "unknown profiles"),
        ('[[target]]\nhttp = "h"\ngrpc = "g"\n[target.provisioner]\nx = 1\n', "needs a 'kind'"),
        ("[[target]\n", "t.toml"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(TargetError, match=message.replace("[", r"\[")):
        load_targets(path)


def test_secrets_come_inline_or_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_ADMIN", "fat_from_env")
    target = Target(
        "t", ["h"], ["g"], provisioner={"kind": "admin-api", "admin_token_env": "MY_ADMIN"}
    )
    assert target.secret("admin_token") == "fat_from_env"
    assert target.secret("database_url") is None


def test_every_field_round_trips(tmp_path: Path) -> None:
    target = Target(
        name="full",
        http_urls=["http://h:1"],
        grpc_addresses=["h:2"],
        profiles=frozenset({"core", "limits"}),
        keepalive_interval=2.5,
        idle_timeout=6.0,
        provisioner={"kind": "python:my.module:Prov", "flag": True, "n": 3, "text": "é\x7f\n"},
        max_streams_per_tenant=8,
        subscriber_buffer=16,
        max_payload_bytes=1024,
        retention_events=100,
        retention_seconds=30.0,
    )
    path = tmp_path / "t.toml"
    write_target_file(path, [target, replace(target, name="other")], "a comment\nover two lines")
    assert load_targets(path) == [target, replace(target, name="other")]
    assert path.read_text().startswith("# a comment\n# over two lines\n")
    assert path.stat().st_mode & 0o777 == 0o600


def test_absent_optional_fields_take_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nhttp = "http://h"\ngrpc = "g:1"\n')
    (target,) = load_targets(path)
    assert target.profiles == {"core"} and target.provisioner == {"kind": "admin-api"}
    assert (target.subscriber_buffer, target.max_payload_bytes) == (1024, 65536)
    assert target.max_streams_per_tenant is None and target.retention_events is None
    assert "retention_events" not in dump_target(target)
    assert target.instances == [Instance("http://h", "g:1")]


BASE = '[[target]]\nhttp = "h"\ngrpc = "g"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("subscriber_bufer = 3\n", "unknown keys \\['subscriber_bufer'\\]"),
        ("idle_timeout = '6'\n", "'idle_timeout' must be a number"),
        ("max_streams_per_tenant = 2.5\n", "'max_streams_per_tenant' must be an integer"),
        ("retention_events = true\n", "'retention_events' must be an integer"),
        ("retention_seconds = 0\n", "'retention_seconds' must be positive"),
        ("profiles = 'core'\n", "'profiles' must be a list"),
        ("[target.provisioner]\nkind = 'ldap'\n", "provisioner kind 'ldap'"),
        ("[target.provisioner]\nkind = 'sql'\nurl = [1]\n", "provisioner 'url'"),
    ],
)
def test_bad_values_say_which_field(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(BASE + extra)
    with pytest.raises(TargetError, match=message):
        load_targets(path)
