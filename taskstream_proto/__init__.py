"""Generated gRPC stubs for ``flovyn.v1.TaskExecution`` (regenerate: ``python scripts/gen_protos.py``)."""

from . import task_streaming_pb2, task_streaming_pb2_grpc

__all__ = ["task_streaming_pb2", "task_streaming_pb2_grpc"]
