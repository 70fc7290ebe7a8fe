"""certa's Python client: generated stubs for the Reasoning and Admin services
(certa_client.reasoning_pb2, admin_pb2, common_pb2 and the *_pb2_grpc stubs under
certa_client._proto.certa.v1) and a thin typed wrapper (Client)."""

from certa_client._proto.certa.v1 import admin_pb2, common_pb2, reasoning_pb2  # noqa: F401
from certa_client.client import CertaError, Client, Event, final  # noqa: F401

__all__ = ["Client", "Event", "CertaError", "final", "reasoning_pb2", "common_pb2",
           "admin_pb2"]
