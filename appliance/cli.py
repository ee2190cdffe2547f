"""The ``tracebox`` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click
from tracebox.appliance import __version__
from tracebox.appliance.config import OPTIONS, ConfigError, Settings, load_settings


def _settings_options(command):
    """Add one flag per setting; each also reads TRACEBOX_<NAME> and Zipkin's variable (see config)."""
    for option in reversed(OPTIONS):
        flag = "--" + option.name.replace("_", "-")
        env = f"TRACEBOX_{option.name.upper()}" + (f", {option.zipkin_env}" if option.zipkin_env else "")
        help_text = f"{option.help} [default: {option.default!r}; env: {env}]"
        if option.type is bool:
            decl = f"{flag}/--no-{option.name.replace('_', '-')}"
            command = click.option(decl, option.name, default=None, help=help_text)(command)
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

    settings = settings_from(values)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))


if __name__ == "__main__":
    main()
