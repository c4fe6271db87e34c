"""Generated gRPC stubs for ``flovyn.v1.TaskExecution``.

Regenerate with ``python scripts/gen_protos.py``; CI runs it with ``--check``.
"""

from . import task_streaming_pb2, task_streaming_pb2_grpc

__all__ = ["task_streaming_pb2", "task_streaming_pb2_grpc"]
