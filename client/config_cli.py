"""`swarming config validate` and `push`: the service configuration
(settings.toml, pools.toml, bots.toml, scripts/) checked before it is pushed,
as CI does (every problem at once, each by file, line and field), then pushed
to the service (`config_push`, for global admins), whose functions take it
within a minute."""

import json
import sys
from pathlib import Path

import click

from client.api import ApiError, Client
from client.exit_status import ExitStatus
from client.tasks_cli import fail, server_options
from shared import service_config
from shared.errors import ConfigError

#: Where the repository keeps its own config.
DEFAULT_DIR = "infra/config"


@click.group()
def config() -> None:
    """Check and push the service configuration.

    Who may use which pool and which bots may connect how: settings.toml, pools.toml, bots.toml and
    scripts/, described in docs/fleet.md."""


@config.command()
@click.argument("directory", default=DEFAULT_DIR,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"version": ...}, or {"errors": [{file, line, field, reason}, ...]}.')
def validate(directory: Path, as_json: bool) -> None:
    """Check the config in DIRECTORY (default: infra/config). Prints 'ok: <version>'; or each problem as
    'file:line: field: reason' on stderr, and exits 1."""
    checked = _checked(directory, as_json)
    click.echo(json.dumps({"version": checked.version}) if as_json else f"ok: {checked.version}")


@config.command()
@click.argument("directory", default=DEFAULT_DIR,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help='Print {"version": ...} (or the errors, as validate).')
@server_options
def push(client: Client, directory: Path, as_json: bool) -> None:
    """Check the config in DIRECTORY (default: infra/config) and make it the service's (global admins):
    every function takes it within a minute. Prints 'pushed: <version>'."""
    _checked(directory, as_json)
    try:
        pushed = client.call("config_push", {"files": service_config.read_dir(directory)}, idempotent=True)
    except ApiError as e:
        fail(e)
    click.echo(json.dumps(pushed) if as_json else f"pushed: {pushed['version']}")


def _checked(directory: Path, as_json: bool) -> service_config.ServiceConfig:
    """The config of `directory`; every problem printed, and exit 1, otherwise."""
    try:
        return service_config.parse(service_config.read_dir(directory))
    except ConfigError as e:
        if as_json:
            click.echo(json.dumps({"errors": [problem._asdict() for problem in e.problems]}, indent=2))
        else:
            for problem in e.problems:
                click.echo(str(problem), err=True)
        sys.exit(ExitStatus.ERROR)
