"""Regenerate taskstream_proto/ from protos/ (``--check`` fails when the stubs are stale).

The stubs live outside reference_server/ so that the harness, the conformance suite and the load
tests can talk gRPC without importing the server.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "taskstream_proto"
PROTO = "flovyn/v1/task_streaming.proto"
GENERATED = (
    "task_streaming_pb2.py",
    "task_streaming_pb2.pyi",
    "task_streaming_pb2_grpc.py",
    "task_streaming_pb2_grpc.pyi",
)


def _plugin(name: str) -> str:
    """mypy-protobuf's plugins, installed next to this interpreter (typed stubs for mypy)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: pip install -e '.[dev]'")
    return f"--plugin={name}={path}"


def generate(into: Path) -> dict[str, str]:
    """Run protoc into a temp dir and return the flattened, import-fixed files."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp}",
            _plugin("protoc-gen-mypy"),
            _plugin("protoc-gen-mypy_grpc"),
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_DIR / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out: dict[str, str] = {}
        for name in GENERATED:
            text = (Path(tmp) / "flovyn" / "v1" / name).read_text()
            # protoc writes absolute imports of the proto path; make them package-relative.
            text = re.sub(
                r"^from flovyn\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M
            )
            out[name] = text
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    ns = parser.parse_args()
    files = generate(OUT_DIR)
    stale = []
    for name, text in files.items():
        path = OUT_DIR / name
        current = path.read_text() if path.exists() else ""
        if current != text:
            stale.append(name)
            if ns.check:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(True), text.splitlines(True), str(path), "generated"
                    )
                )
            else:
                path.write_text(text)
    if ns.check and stale:
        print(f"stale generated stubs: {', '.join(stale)}; run python scripts/gen_protos.py")
        return 1
    print("stubs up to date" if not stale else f"regenerated: {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
