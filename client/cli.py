"""The `swarming` command line tool."""

import click

from client.bots_cli import bot, bot_tasks, bots, delete_bots, terminate
from client.cancel_cli import cancel, cancel_tasks
from client.cas_cli import archive, download
from client.config_cli import config
from client.lazy_group import LazyCommand, LazyGroup
from client.query_cli import tasks
from client.reproduce_cli import reproduce
from client.request_cli import request_show
from client.tasks_cli import collect, run, trigger

#: Imported by name when run: client/ may not import local/ (tests/test_imports.py),
#: and a CLI install has none of the local stack's dependencies.
LOCAL = LazyCommand("local.cli:local", short_help="Run the emulators, every function and bots on this machine.",
                    extra="local")


@click.group(cls=LazyGroup, lazy_subcommands={"local": LOCAL},
             context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Trigger tasks on a serverless Swarming, collect their results and files, see its bots, check its
    config, and run the local stack."""


for _command in (trigger, collect, run, archive, download, bots, bot, config, cancel, cancel_tasks,
                 request_show, bot_tasks, terminate, delete_bots, reproduce, tasks):
    cli.add_command(_command)


def main() -> None:
    cli()
