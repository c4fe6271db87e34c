"""Target files: parsed strictly, with errors that say where; dump_target round-trips."""

from pathlib import Path

import pytest

from harness.targets import Target, TargetError, dump_target, load_targets


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
