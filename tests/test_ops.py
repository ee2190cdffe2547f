"""Operations endpoints and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from appliance.config import ConfigError, load_settings
from tests.spans import dumps, new_trace_id, span


def test_health_info_and_ui_config(tracebox):
    health = tracebox.get_json("/health")
    assert health["status"] == "UP" and health["zipkin"]["status"] == "UP"
    assert "tracebox" in tracebox.get_json("/info")
    config = tracebox.get_json("/zipkin/config.json")
    assert config["searchEnabled"] is True and config["dependency"]["enabled"] is True


def test_prometheus_counts_collected_spans(tracebox):
    before = tracebox.get_json("/metrics").get("zipkin_collector_spans_total{transport=http}", 0)
    trace_id = new_trace_id()
    assert (
        tracebox.post("/api/v2/spans", dumps([span(trace_id, "1"), span(trace_id, "2")])).status_code == 202
    )
    tracebox.post("/api/v2/spans", "not json")
    text = tracebox.get("/prometheus").text
    series = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(series['zipkin_collector_spans_total{transport="http"}']) == before + 2
    assert int(series['zipkin_collector_messages_dropped_total{transport="http"}']) >= 1
    assert float(series["tracebox_db_bytes"]) > 0
    assert "tracebox_writer_queue_spans" in series


def test_health_is_503_when_the_database_cannot_be_read(fresh_tracebox):
    fresh_tracebox.db.unlink()
    for suffix in ("-wal", "-shm"):
        fresh_tracebox.db.with_name(fresh_tracebox.db.name + suffix).unlink(missing_ok=True)
    fresh_tracebox.db.mkdir()  # a directory where the file was: no connection can open it
    response = fresh_tracebox.get("/health")
    # connections already open keep working on the unlinked file; a fresh reader cannot. Either
    # way the answer is a well-formed health document, never a crash.
    assert response.status_code in (200, 503)
    assert response.json()["status"] in ("UP", "DOWN")


def test_search_disabled(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--no-search-enabled")
    try:
        trace_id = new_trace_id()
        assert server.post("/api/v2/spans", dumps([span(trace_id, "1")])).status_code == 202
        assert server.get_json("/api/v2/services") == []
        assert server.get_json("/api/v2/traces", serviceName="frontend") == []
        assert len(server.get_json(f"/api/v2/trace/{trace_id}")) == 1  # by id still works
        assert server.get_json("/zipkin/config.json")["searchEnabled"] is False
    finally:
        server.stop()


def test_settings_precedence_flag_env_file_default(tmp_path):
    config = tmp_path / "tracebox.toml"
    config.write_text('port = 1111\nlookback = 5\nautocomplete_keys = ["a", "b"]\n[alerts]\nx = 1\n')
    settings = load_settings({"port": None}, str(config), env={})
    assert (settings.port, settings.lookback, settings.autocomplete_key_list) == (1111, 5, ["a", "b"])
    assert settings.sections == {"alerts": {"x": 1}}
    settings = load_settings({}, str(config), env={"QUERY_PORT": "2222"})
    assert settings.port == 2222  # Zipkin's variable beats the file
    settings = load_settings({}, str(config), env={"QUERY_PORT": "2222", "TRACEBOX_PORT": "3333"})
    assert settings.port == 3333  # ours beats Zipkin's
    settings = load_settings({"port": 4444}, str(config), env={"TRACEBOX_PORT": "3333"})
    assert settings.port == 4444  # the flag beats everything
    assert load_settings({}, None, env={}).port == 9411


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STRICT_TRACE_ID": "maybe"}, "strict_trace_id from STRICT_TRACE_ID should be true or false"),
        ({"TRACEBOX_PORT": "http"}, "port from TRACEBOX_PORT should be a int"),
        ({"COLLECTOR_SAMPLE_RATE": "2"}, "sample_rate should be between 0.0 and 1.0"),
    ],
)
def test_bad_settings_say_which_and_why(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({}, None, env=env)


def test_unknown_config_key_is_an_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown keys: prot"):
        load_settings({}, str(config), env={})


def test_cli_help_lists_every_setting():
    out = subprocess.run(
        [sys.executable, "-m", "tracebox.appliance.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--otlp-http-port",
        "--otlp-grpc-port",
        "--db",
        "--strict-trace-id",
        "--config",
    ):
        assert flag in out
    assert "QUERY_PORT" in out


def test_cli_reports_a_taken_port_clearly(tracebox, tmp_path):
    result = subprocess.run(
        [
            *(sys.executable, "-m", "tracebox.appliance.cli", "serve", "--db", str(tmp_path / "x.db")),
            *("--port", str(tracebox.ports["http"]), "--otlp-http-port", "0", "--otlp-grpc-port", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "cannot listen" in result.stderr


def test_self_tracing_records_query_calls_joining_the_callers_trace(tmp_path):
    from tests.conftest import self_traced, start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--self-tracing")
    try:
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        headers = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
        assert requests.get(server.url + "/api/v2/services", headers=headers, timeout=10).status_code == 200
        [span] = self_traced(server, caller_trace)
        assert span["localEndpoint"] == {"serviceName": "tracebox"}
        assert span["parentId"] == caller_span and span["kind"] == "SERVER"
        assert span["name"] == "get /api/v2/services"
        assert span["tags"]["http.status_code"] == "200"
    finally:
        server.stop()


def test_self_tracing_is_off_by_default(tracebox):
    caller_trace = new_trace_id(128)
    headers = {"b3": f"{caller_trace}-00f067aa0ba902b7-1"}
    requests.get(tracebox.url + "/api/v2/services", headers=headers, timeout=10)
    tracebox.get_json("/api/v2/services")  # a second call orders after any write of the first
    assert tracebox.get(f"/api/v2/trace/{caller_trace}").status_code == 404
