"""The `swarming` command line tool."""

import click

from client.bots_cli import bot, bots
from client.cas_cli import archive, download
from client.local_cli import local
from client.tasks_cli import collect, run, trigger


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Trigger tasks on a serverless Swarming, collect their results and files, see its bots, and run the
    local stack."""


for _command in (trigger, collect, run, archive, download, bots, bot, local):
    cli.add_command(_command)


def main() -> None:
    cli()
