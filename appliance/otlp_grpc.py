"""OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on grpc.aio.

The method is registered with raw-bytes (de)serialisers so the request goes through the same
ingest pipeline (``prepare``) as OTLP/HTTP, and a body that is not an ``ExportTraceServiceRequest``
answers INVALID_ARGUMENT with the decoder's message rather than grpc's generic INTERNAL. gzip
(``grpc-encoding: gzip``) is handled by grpc itself; the message size limit applies to the
decompressed message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tracebox.appliance.codecs.otlp import encode_retry_info, encode_rpc_status, export_response
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.model import DecodeError
from tracebox.appliance.prepare import Prepared

Accept = Callable[[str, bytes, str], Awaitable[Prepared]]  # (wire, body, transport), as Ingest.accept
Authorize = Callable[[tuple | None], bool]

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
TRANSPORT = "otlp-grpc"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_PROTOBUF = "application/x-protobuf"


class TraceService:
    """The Export method; ``accept`` stores the body's spans or raises ``DecodeError``, ``Overloaded``
    or ``StoreUnavailable``."""

    def __init__(self, accept: Accept, authorize: Authorize | None = None) -> None:
        self._accept = accept
        self._authorize = authorize

    async def export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if self._authorize is not None and not self._authorize(context.invocation_metadata()):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "send authorization: Bearer <ingest token> metadata"
            )
        try:
            prepared = await self._accept("otlp-proto", body, TRANSPORT)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (Overloaded, StoreUnavailable) as exc:
            await _abort_unavailable(context, str(exc), exc.retry_after)
        return export_response(_PROTOBUF, prepared.rejected, prepared.error_message)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self.export)}
        )


async def _abort_unavailable(context: grpc.aio.ServicerContext, message: str, retry_after: float) -> None:
    """UNAVAILABLE with a RetryInfo, both where gRPC's rich error model puts it
    (``grpc-status-details-bin``) and where the OpenTelemetry Python exporter reads it."""
    retry_info = encode_retry_info(retry_after)
    code = grpc.StatusCode.UNAVAILABLE
    status = encode_rpc_status(code.value[0], message, ((_RETRY_INFO_TYPE, retry_info),))
    await context.abort(
        code,
        message,
        trailing_metadata=(("grpc-status-details-bin", status), ("google.rpc.retryinfo-bin", retry_info)),
    )


async def start_grpc_server(
    host: str,
    port: int,
    accept: Accept,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    authorize: Authorize | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> grpc.aio.Server:
    """Bind and start the OTLP/gRPC server; port 0 picks a free port. The bound port is ``server.port``.

    ``tls`` is (PEM certificate chain, PEM private key) to serve over TLS instead of plaintext.
    """
    server = grpc.aio.server(
        options=(
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        )
    )
    server.add_generic_rpc_handlers((TraceService(accept, authorize).handler(),))
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    except RuntimeError as exc:  # grpc's way of saying the address is taken or unusable
        raise OSError(f"cannot bind OTLP/gRPC to {address}: {exc}") from None
    await server.start()
    server.port = bound
    return server
