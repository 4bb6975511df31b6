"""The `swarming` command line tool."""

import click

from client.local_cli import local


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Trigger tasks on a serverless Swarming, collect their results, and run the local stack."""


cli.add_command(local)


def main() -> None:
    cli()
