"""Access control (UI/query and ingest credentials) and native TLS, against live servers."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import start_tracebox
from tests.spans import dumps, new_trace_id, span

QUERY, INGEST = "query-secret-1", "ingest-secret-2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    # the ingest token through the environment, as a deployment would pass a secret
    server = start_tracebox(
        tmp_path_factory.mktemp("auth") / "t.db", "--auth-token", QUERY, TRACEBOX_INGEST_TOKEN=INGEST
    )
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def finished_spans(service: str):
    """Two real SDK spans, ended, ready for an exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with (
        provider.get_tracer("t").start_as_current_span("parent"),
        provider.get_tracer("t").start_as_current_span("child"),
    ):
        pass
    return memory.get_finished_spans()


@pytest.mark.parametrize(
    "path", ["/api/v2/services", "/", "/dependencies", "/api/tracebox/llm/usage", "/metrics"]
)
def test_query_side_needs_the_query_token(guarded, path):
    anonymous = requests.get(guarded.url + path, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(guarded.url + path, headers=bearer(INGEST), timeout=10).status_code == 401
    assert requests.get(guarded.url + path, headers=bearer(QUERY), timeout=10).status_code == 200


def test_health_and_sampling_strategies_stay_open(guarded):
    assert requests.get(guarded.url + "/health", timeout=10).status_code == 200
    strategy = requests.get(guarded.url + "/api/sampling", params={"service": "checkout"}, timeout=10)
    assert strategy.status_code == 200 and "strategyType" in strategy.json()


def test_zipkin_ingest_needs_the_ingest_token(guarded):
    trace_id = new_trace_id()
    body = dumps([span(trace_id, "1")])
    headers = {"Content-Type": "application/json"}
    assert (
        requests.post(guarded.url + "/api/v2/spans", data=body, headers=headers, timeout=10).status_code
        == 401
    )
    denied = requests.post(
        guarded.url + "/api/v2/spans", data=body, headers={**headers, **bearer(QUERY)}, timeout=10
    )
    assert denied.status_code == 401
    check = requests.get(guarded.url + f"/api/v2/trace/{trace_id}", headers=bearer(QUERY), timeout=10)
    assert check.status_code == 404  # refused requests stored nothing
    ok = requests.post(
        guarded.url + "/api/v2/spans", data=body, headers={**headers, **bearer(INGEST)}, timeout=10
    )
    assert ok.status_code == 202


def test_otlp_exporters_with_and_without_the_ingest_token(guarded):
    spans = finished_spans("guarded-otel")
    http_url = guarded.otlp_http_url + "/v1/traces"
    assert HttpExporter(endpoint=http_url).export(spans) is SpanExportResult.FAILURE
    assert HttpExporter(endpoint=http_url, headers=bearer(INGEST)).export(spans) is SpanExportResult.SUCCESS
    target = guarded.otlp_grpc_target
    assert GrpcExporter(endpoint=target, insecure=True, timeout=5).export(spans) is SpanExportResult.FAILURE
    exporter = GrpcExporter(endpoint=target, insecure=True, headers={"authorization": f"Bearer {INGEST}"})
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    services = requests.get(guarded.url + "/api/v2/services", headers=bearer(QUERY), timeout=10).json()
    assert "guarded-otel" in services


def test_basic_auth_for_the_ui(tmp_path):
    server = start_tracebox(tmp_path / "t.db", "--auth-basic", "admin:s3cret")
    try:
        denied = requests.get(server.url + "/", timeout=10)
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(server.url + "/", auth=("admin", "wrong"), timeout=10).status_code == 401
        assert requests.get(server.url + "/", auth=("admin", "s3cret"), timeout=10).status_code == 200
        # ingest has no credentials configured: still open
        assert server.post("/api/v2/spans", dumps([span(new_trace_id(), "1")])).status_code == 202
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_native_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server = start_tracebox(tmp_path / "t.db", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        url = f"https://127.0.0.1:{server.ports['http']}"
        assert requests.get(url + "/health", verify=str(cert), timeout=10).json()["status"] == "UP"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/health", timeout=10)  # not trusted without the certificate
        body = dumps([span(new_trace_id(), "1")])
        response = requests.post(
            url + "/api/v2/spans",
            data=body,
            headers={"Content-Type": "application/json"},
            verify=str(cert),
            timeout=10,
        )
        assert response.status_code == 202
    finally:
        server.stop()


def test_tls_needs_both_files(tmp_path):
    with pytest.raises(RuntimeError, match="tls_cert and tls_key go together"):
        start_tracebox(tmp_path / "t.db", "--tls-cert", str(tmp_path / "c.pem"))
