"""The ``tracebox`` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click

from tracebox.appliance import __version__
from tracebox.appliance.config import OPTIONS, ConfigError, Settings, load_settings

#: ``demo.FORMATS``' names, spelled out so that starting tracebox (and each of its worker
#: processes, which import this module) does not import the demo's HTTP client and encoders.
DEMO_FORMATS = ("zipkin-json", "zipkin-proto", "otlp-proto", "otlp-json")


def _settings_options(command):
    """Add one flag per setting; each also reads TRACEBOX_<NAME> and Zipkin's variable (see config)."""
    for option in reversed(OPTIONS):
        flag = "--" + option.name.replace("_", "-")
        env = f"TRACEBOX_{option.name.upper()}" + (f", {option.zipkin_env}" if option.zipkin_env else "")
        help_text = f"{option.help} [default: {option.default!r}; env: {env}]"
        if option.type is bool:
            decl = f"{flag}/--no-{option.name.replace('_', '-')}"
            command = click.option(decl, option.name, default=None, help=help_text)(command)
        elif option.multiple:
            flag = flag.removesuffix("s")  # --webhook URL --webhook URL
            command = click.option(flag, option.name, multiple=True, help=help_text)(command)
        else:
            command = click.option(flag, option.name, type=option.type, default=None, help=help_text)(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML config file with the same keys (and sections for prices, detectors, alerts). [env: TRACEBOX_CONFIG]",
    )(command)


def settings_from(values: dict[str, Any]) -> Settings:
    config_file = values.pop("config_file", None)
    values = {k: (v or None) if isinstance(v, tuple) else v for k, v in values.items()}  # no repeats given
    try:
        return load_settings(values, config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
@click.version_option(__version__, prog_name="tracebox")
def main() -> None:
    """tracebox: a tracing appliance in one process.

    Collects Zipkin and OpenTelemetry spans, stores them in one SQLite file, answers the Zipkin
    API, shows a UI and raises alerts. Start with `tracebox serve`, then `tracebox demo`.
    """


@main.command()
@_settings_options
def serve(**values: Any) -> None:
    """Run the collector, query API and UI (Zipkin on :9411, OTLP on :4318 and :4317)."""
    from tracebox.appliance.server import run
    from tracebox.appliance.workers import tune_gc

    settings = settings_from(values)
    tune_gc()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))


@main.command()
@click.option("--url", default="http://127.0.0.1:9411", show_default=True, help="The tracebox to send to.")
@click.option("--traces", "count", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--format",
    "fmt",
    default="zipkin-json",
    show_default=True,
    type=click.Choice(DEMO_FORMATS),
    help="Wire format to send.",
)
@click.option("--seed", type=int, default=None, help="Seed for repeatable traffic (default: random).")
@click.option("--rate", type=float, default=None, help="Traces per second (default: as fast as accepted).")
def demo(url: str, count: int, fmt: str, seed: int | None, rate: float | None) -> None:
    """Send realistic traffic (an 8-service AI chat with LLM calls, a checkout, a job) to a tracebox."""
    from tracebox.appliance.demo import run_demo

    report = run_demo(url.rstrip("/"), traces=count, fmt=fmt, seed=seed, rate=rate)
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.option("--db", default="tracebox.db", show_default=True, envvar="TRACEBOX_DB", help="Database file.")
@click.option("--quick", is_flag=True, help="SQLite's quick_check instead of the full integrity_check.")
def check(db: str, quick: bool) -> None:
    """Verify a database file (integrity, schema version, counts); safe while tracebox runs."""
    from tracebox.appliance.store.maintenance import check as run_check

    try:
        report = run_check(db, quick=quick)
    except FileNotFoundError as exc:
        raise click.ClickException(f"{exc}; pass --db PATH") from None
    click.echo(f"database     {report.path} ({report.bytes_on_disk:,} bytes with WAL)")
    click.echo(f"schema       version {report.schema_version} (this tracebox: {report.newest_schema})")
    for name, value in report.counts.items():
        click.echo(f"{name:<12} {value:,}")
    click.echo("integrity    " + "; ".join(report.integrity[:20]))
    if not report.ok:
        raise SystemExit(1)


@main.command()
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--db", default="tracebox.db", show_default=True, envvar="TRACEBOX_DB", help="Database file.")
def backup(target: str, db: str) -> None:
    """Take an online backup of the database into TARGET, while tracebox keeps running."""
    from tracebox.appliance.store.maintenance import backup as run_backup

    def progress(done: int, total: int) -> None:
        click.echo(f"\r  {done:,}/{total:,} pages", nl=False, err=True)

    try:
        size = run_backup(db, target, progress)
    except (FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nbackup of {db} written to {target} ({size:,} bytes)", err=True)


@main.command()
@click.option("--query", is_flag=True, help="Time the query API on a loaded database instead of ingest.")
@click.option(
    "--spans",
    type=click.IntRange(1000, 100_000_000),
    default=None,
    help="Spans per ingest run [100,000], or spans to load for --query [1,000,000].",
)
@click.option(
    "--runs", type=click.IntRange(1, 20), default=3, show_default=True, help="Runs per format (medians)."
)
@click.option("--connections", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--format", "formats", multiple=True, help="Only these formats (e.g. zipkin-json, otlp-proto+gzip)."
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 10_000),
    default=30,
    show_default=True,
    help="Requests per query kind (--query).",
)
@click.option("--db", default=None, help="--query: reuse this database (loaded if missing).")
@click.option("--keep", is_flag=True, help="Keep the temporary databases.")
@click.option("--serve-arg", "serve_args", multiple=True, help="Extra argument for `tracebox serve`.")
@click.option(
    "--event-rate",
    type=click.FloatRange(100, 10_000_000),
    default=40_000,
    show_default=True,
    help="Ingest traffic's spans per second of event time (live traffic at the ingest target);"
    " lower replays history faster, and the engine closes more windows per second.",
)
def bench(
    query: bool,
    spans: int | None,
    runs: int,
    connections: int,
    formats: tuple[str, ...],
    repeat: int,
    db: str | None,
    keep: bool,
    serve_args: tuple[str, ...],
    event_rate: float,
) -> None:
    """Benchmark a real server on loopback: ingest per wire format, or (--query) the query API."""
    from tracebox.appliance import bench as run_bench

    run_bench.main(
        query=query,
        ingest=not query,
        spans=spans,
        runs=runs,
        connections=connections,
        formats=formats or None,
        repeat=repeat,
        db=db,
        keep=keep,
        serve_args=serve_args,
        event_rate=event_rate,
    )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url", default="http://127.0.0.1:9411", show_default=True, help="The tracebox to send to.")
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(1, 100_000))
def replay(files: tuple[str, ...], url: str, batch_size: int) -> None:
    """Post captured spans (Zipkin JSON, OTLP JSON, JSON Lines; .gz ok) in timestamp order.

    The anomaly engine works in event time, so a replay of yesterday raises the alerts living
    through yesterday would have.
    """
    from pathlib import Path

    from tracebox.appliance.model import DecodeError
    from tracebox.appliance.replay import replay as run_replay

    def progress(done: int) -> None:
        click.echo(f"\r  {done:,} spans sent", nl=False, err=True)

    try:
        report = asyncio.run(
            run_replay(url.rstrip("/"), [Path(f) for f in files], batch_size=batch_size, progress=progress)
        )
    except DecodeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"\n{report.spans_acknowledged:,} of {report.spans_sent:,} spans stored at {url}"
        + (f"; failures: {'; '.join(report.errors)}" if report.errors else ""),
        err=True,
    )
    if not report.ok:
        raise SystemExit(1)


@main.group()
def alerts() -> None:
    """Alerts: list them, test a webhook, silence noisy ones."""


def _api(url: str, path: str, token: str | None, method: str = "GET", body: Any = None) -> Any:
    """Call a running tracebox's API; a refusal becomes a clear error."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{exc.code}: {exc.read().decode(errors='replace')[:500]}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}; is `tracebox serve` running?") from None
    return json.loads(payload) if payload else None


_url_option = click.option("--url", default="http://127.0.0.1:9411", show_default=True, help="The tracebox.")
_token_option = click.option(
    "--token", envvar="TRACEBOX_AUTH_TOKEN", default=None, help="Bearer token, if required."
)


@alerts.command("list")
@_url_option
@_token_option
@click.option("--status", type=click.Choice(["firing", "resolved"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def alerts_list(url: str, token: str | None, status: str | None, limit: int) -> None:
    """Show the newest alerts."""
    query = f"?limit={limit}" + (f"&status={status}" if status else "")
    for alert in _api(url, "/api/tracebox/alerts" + query, token):
        click.echo(
            f"{alert['status']:<9} {alert['kind']:<14} {alert['service']:<20} {alert['operation']:<30} {alert['id']}"
        )


@alerts.command("test-webhook")
@_settings_options
@click.option("--receiver", default=None, help="Only this receiver (default: every configured one).")
def test_webhook(receiver: str | None, **values: Any) -> None:
    """Send a sample alert through the configured receivers, now, and report each answer."""
    from tracebox.detectors.notify import build_config, send_test_alert

    settings = settings_from(values)
    try:
        config = build_config(
            settings.sections.get("alerts"),
            webhooks=settings.webhook_list,
            slack_webhooks=settings.slack_webhook_list,
            public_url=settings.base_url,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not config.enabled:
        raise click.UsageError(
            "no receivers configured: pass --webhook URL or --slack-webhook URL, or an [alerts] table"
        )
    try:
        results = asyncio.run(send_test_alert(config, receiver))
    except KeyError:
        raise click.UsageError(
            f"no receiver named {receiver!r}; configured: {', '.join(config.receivers)}"
        ) from None
    for result in results:
        outcome = "ok" if result.ok else f"FAILED ({result.error or result.status})"
        click.echo(f"{result.receiver}: {outcome}, delivery {result.delivery_id}")
    if not all(result.ok for result in results):
        raise SystemExit(1)


@alerts.group()
def silence() -> None:
    """Mute notifications for alerts matching label matchers (Alertmanager syntax)."""


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default="1h", show_default=True, help="How long: 30m, 2h, 1d.")
@click.option("--comment", default="", help="Why, for the people who see it.")
@_url_option
@_token_option
def silence_add(matchers: tuple[str, ...], duration: str, comment: str, url: str, token: str | None) -> None:
    """Silence alerts matching every MATCHER, e.g. service=checkout 'kind=~latency|error'."""
    import getpass

    body = {
        "matchers": list(matchers),
        "duration": duration,
        "comment": comment,
        "createdBy": getpass.getuser(),
    }
    created = _api(url, "/api/tracebox/silences", token, "POST", body)
    click.echo(f"silence {created['id']} until {created['endsAt']} (µs): {', '.join(created['matchers'])}")


@silence.command("list")
@click.option("--expired", is_flag=True, help="Include expired silences.")
@_url_option
@_token_option
def silence_list(expired: bool, url: str, token: str | None) -> None:
    """Show silences."""
    for item in _api(url, "/api/tracebox/silences" + ("?expired=true" if expired else ""), token):
        click.echo(f"{item['id']}  {item['state']:<8} {', '.join(item['matchers'])}  {item['comment']}")


@silence.command("expire")
@click.argument("silence_id")
@_url_option
@_token_option
def silence_expire(silence_id: str, url: str, token: str | None) -> None:
    """End a silence now."""
    _api(url, f"/api/tracebox/silences/{silence_id}", token, "DELETE")
    click.echo(f"silence {silence_id} expired")


if __name__ == "__main__":
    main()
