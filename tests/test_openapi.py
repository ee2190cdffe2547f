"""Zipkin's own API description, ``zipkin2-api.yaml``, run against a live server by schemathesis.

Every operation of the spec gets generated requests (bounded: a few dozen per operation, more
under ``-m slow``) against a server loaded with a small trace; each answer must not be a 5xx and,
when the spec describes it, must match the spec's schema.

The spec lives in ``shared/spec`` beside the repository (``../shared/spec``); a copy with its
license is kept in ``tests/spec`` so the test runs from the repository alone, and
``test_spec_copy_is_current`` catches the copy drifting when ``shared/`` is checked out.

Where the spec disagrees with what Zipkin's server really does, tracebox follows the server, and
the exception is checked here by hand instead of against the spec:

- ``GET /spans`` is described as returning ``ListOfSpans``, but Zipkin (and every client: its UI,
  Grafana) returns the span *names*, a list of strings.
- The spec lists only some status codes; Zipkin answers 400 with a message for bad parameters of
  any search endpoint (``limit <= 0``...) and 404 for an unknown trace, so status-code conformance
  is not checked, only that the answer is not a 5xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.spans import NOW_US, dumps, new_trace_id, span

REPO = Path(__file__).resolve().parents[1]
SPEC_COPY = REPO / "tests" / "spec" / "zipkin2-api.yaml"
SHARED_SPEC = REPO.parent / "shared" / "spec" / "zipkin2-api.yaml"
SCHEMA = schemathesis.openapi.from_path(SPEC_COPY)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
#: Operations whose response schema in the spec is not what Zipkin returns (see the module doc).
NOT_ZIPKINS_SCHEMA = {"GET /spans"}
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SLOW = settings(FAST, max_examples=500)


@pytest.fixture(scope="module")
def loaded(tracebox):
    trace_id = new_trace_id()
    spans = [
        span(trace_id, "a1", service="frontend", name="get /", kind="SERVER", tags={"http.path": "/"}),
        span(
            trace_id,
            "a2",
            parent="a1",
            service="frontend",
            name="call",
            kind="CLIENT",
            remote="backend",
            annotations=[(NOW_US + 10, "ws")],
        ),
        span(trace_id, "a2", parent="a1", service="backend", name="call", kind="SERVER", shared=True),
    ]
    assert tracebox.post("/api/v2/spans", dumps(spans)).status_code == 202
    return tracebox


def run_operation(server, operation, speed) -> None:
    base_url = server.url + "/api/v2"
    checks = [not_a_server_error]
    if operation.label not in NOT_ZIPKINS_SCHEMA:
        checks.append(response_schema_conformance)

    @speed
    @given(case=operation.as_strategy())
    def run(case) -> None:
        response = case.call(base_url=base_url, timeout=15)
        case.validate_response(response, checks=checks)
        if operation.label == "GET /spans" and response.status_code == 200:
            assert all(isinstance(name, str) for name in response.json())

    run()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_spec_operation(loaded, operation) -> None:
    run_operation(loaded, operation, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_spec_operation_long(loaded, operation) -> None:
    run_operation(loaded, operation, SLOW)


def test_spec_covers_the_query_api() -> None:
    labels = {op.label for op in OPERATIONS}
    for path in ("/services", "/spans", "/traces", "/trace/{traceId}", "/traceMany", "/dependencies"):
        assert f"GET {path}" in labels
    assert "POST /spans" in labels


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="shared/spec is not checked out beside the repository")
def test_spec_copy_is_current() -> None:
    assert SPEC_COPY.read_bytes() == SHARED_SPEC.read_bytes(), "refresh tests/spec from ../shared/spec"
