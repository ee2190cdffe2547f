"""Settings: one table of options that the CLI, the environment and the TOML config file all read.

Precedence, highest first: command-line flag, ``TRACEBOX_<NAME>``, Zipkin's own variable where
one exists, the config file, the default.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


@dataclass(frozen=True)
class Option:
    """A setting's documentation; its type and default live on ``Settings``."""

    name: str  # attribute and TOML key; flag is --name-with-dashes, env var TRACEBOX_NAME
    help: str
    zipkin_env: str | None = None
    multiple: bool = False  # a repeatable flag; the setting holds the values comma-separated

    @property
    def default(self) -> Any:
        return _FIELDS[self.name].default

    @property
    def type(self) -> type:
        return _TYPES[self.name]


OPTIONS: tuple[Option, ...] = (
    Option("host", "Address to listen on; use 0.0.0.0 in containers and shared staging hosts."),
    Option("port", "Port of the Zipkin API, the UI and OTLP/HTTP /v1/traces.", "QUERY_PORT"),
    Option("otlp_http_port", "Extra OTLP/HTTP port (/v1/traces); 0 turns it off."),
    Option("otlp_grpc_port", "OTLP/gRPC port; 0 turns it off."),
    Option("db", "SQLite database file."),
    Option("lookback", "Default search lookback in milliseconds.", "QUERY_LOOKBACK"),
    Option(
        "strict_trace_id",
        "Match trace ids on all 128 bits; false groups 64- and 128-bit ids by their low 64 bits.",
        "STRICT_TRACE_ID",
    ),
    Option(
        "autocomplete_keys", "Comma-separated tag keys offered in search autocomplete.", "AUTOCOMPLETE_KEYS"
    ),
    Option("search_enabled", "Serve trace search; false leaves only trace-by-id.", "SEARCH_ENABLED"),
    Option("sample_rate", "Share of traces kept at ingest, 0.0-1.0, by trace id.", "COLLECTOR_SAMPLE_RATE"),
    Option("cors_origins", "Comma-separated origins allowed to call the API.", "QUERY_ALLOWED_ORIGINS"),
    Option("max_body_bytes", "Largest request body accepted, after decompression."),
    Option("fsync", "fsync every commit (survives power loss, not only a killed process)."),
    Option("max_pending_spans", "Spans queued for the writer before ingest answers 429/503."),
    Option(
        "ingest_processes",
        "Worker processes that decode incoming spans (0: inside the server; -1: one if there is a second core).",
    ),
    Option("self_tracing", "Trace tracebox's own query API into itself.", "SELF_TRACING_ENABLED"),
    Option("retention_days", "Delete spans older than this many days (0 keeps them forever)."),
    Option("max_db_mb", "Delete the oldest spans while the database holds more than this (0: no cap)."),
    Option("retention_check_seconds", "How often retention runs."),
    Option("engine", "Run the anomaly engine (latency, error, token-cost and finish-reason alerts)."),
    Option(
        "insights_spans_per_second",
        "Spans a second the insights rollup analyses at most; above it, a uniform sample of traces"
        " with counts scaled up (0: every trace).",
    ),
    Option("auth_token", "Bearer token required by the UI and query API (default: none)."),
    Option("auth_basic", "user:password for basic auth on the UI and query API (browsers prompt for it)."),
    Option("ingest_token", "Bearer token required to send spans (Zipkin, OTLP/HTTP, OTLP/gRPC)."),
    Option("tls_cert", "PEM certificate file: serve HTTPS and OTLP/gRPC over TLS (with --tls-key)."),
    Option("tls_key", "PEM private key file for --tls-cert."),
    Option("webhooks", "Alert webhook URL (Alertmanager v4 JSON); repeat the flag for several.", None, True),
    Option(
        "slack_webhooks", "Slack incoming-webhook URL for alerts; repeat the flag for several.", None, True
    ),
    Option("public_url", "Base URL of this tracebox for links in alerts (default http://host:port)."),
    Option("log_level", "Logging level: debug, info, warning, error."),
)

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9411
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    db: str = "tracebox.db"
    lookback: int = 86_400_000
    strict_trace_id: bool = True
    autocomplete_keys: str = ""
    search_enabled: bool = True
    sample_rate: float = 1.0
    cors_origins: str = "*"
    max_body_bytes: int = 16 * 1024 * 1024
    fsync: bool = False
    max_pending_spans: int = 200_000
    ingest_processes: int = -1
    self_tracing: bool = False
    retention_days: float = 7.0
    max_db_mb: int = 0
    retention_check_seconds: float = 60.0
    engine: bool = True
    insights_spans_per_second: int = 2_000
    auth_token: str = field(default="", repr=False)
    auth_basic: str = field(default="", repr=False)
    ingest_token: str = field(default="", repr=False)
    tls_cert: str = ""
    tls_key: str = ""
    webhooks: str = field(default="", repr=False)
    slack_webhooks: str = field(default="", repr=False)
    public_url: str = ""
    log_level: str = "info"
    #: Tables of the config file that other parts read (prices, detectors, alerts, redact, ...).
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def autocomplete_key_list(self) -> list[str]:
        return [k.strip() for k in self.autocomplete_keys.split(",") if k.strip()]

    @property
    def webhook_list(self) -> list[str]:
        return [u.strip() for u in self.webhooks.split(",") if u.strip()]

    @property
    def slack_webhook_list(self) -> list[str]:
        return [u.strip() for u in self.slack_webhooks.split(",") if u.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


class ConfigError(ValueError):
    """A setting with a value tracebox cannot use; the message says which and why."""


def convert(option: Option, raw: Any, source: str) -> Any:
    if option.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{option.name} from {source} should be true or false, got {raw!r}")
    if option.type is str and isinstance(raw, (list, tuple)):
        return ",".join(map(str, raw))
    try:
        return option.type(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{option.name} from {source} should be a {option.type.__name__}, got {raw!r}"
        ) from None


def load_settings(
    flags: dict[str, Any] | None = None, config_file: str | None = None, env: dict[str, str] | None = None
) -> Settings:
    """Merge flags (None means not given), environment and config file over the defaults."""
    env = os.environ if env is None else env
    flags = flags or {}
    config_file = config_file or env.get("TRACEBOX_CONFIG")
    file_values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            file_values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for option in OPTIONS:
        env_name = f"TRACEBOX_{option.name.upper()}"
        if flags.get(option.name) is not None:
            values[option.name] = convert(option, flags[option.name], f"--{option.name.replace('_', '-')}")
        elif env.get(env_name):
            values[option.name] = convert(option, env[env_name], env_name)
        elif option.zipkin_env and env.get(option.zipkin_env):
            values[option.name] = convert(option, env[option.zipkin_env], option.zipkin_env)
        elif option.name in file_values:
            values[option.name] = convert(option, file_values[option.name], str(config_file))
    sections = {k: v for k, v in file_values.items() if isinstance(v, dict) or _is_table_array(v)}
    unknown = set(file_values) - set(_BY_NAME) - set(sections)
    if unknown:
        raise ConfigError(f"config file {config_file} has unknown keys: {', '.join(sorted(unknown))}")
    settings = Settings(**values, sections=sections)
    _validate(settings)
    return settings


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _validate(settings: Settings) -> None:
    if not 0.0 <= settings.sample_rate <= 1.0:
        raise ConfigError(f"sample_rate should be between 0.0 and 1.0, got {settings.sample_rate}")
    for name in ("port", "otlp_http_port", "otlp_grpc_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} should be a port number 0-65535, got {port}")
    if settings.max_body_bytes <= 0:
        raise ConfigError("max_body_bytes should be positive")
    if settings.retention_days < 0 or settings.max_db_mb < 0 or settings.retention_check_seconds <= 0:
        raise ConfigError("retention_days and max_db_mb should be >= 0, retention_check_seconds > 0")
    if settings.insights_spans_per_second < 0:
        raise ConfigError("insights_spans_per_second should be >= 0 (0 analyses every trace)")
    if settings.auth_basic and ":" not in settings.auth_basic:
        raise ConfigError("auth_basic should be user:password")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key go together: give both or neither")


_FIELDS = {f.name: f for f in fields(Settings)}
_TYPES = get_type_hints(Settings)
assert set(_FIELDS) - {"sections"} == set(_BY_NAME), "Settings and OPTIONS disagree"
