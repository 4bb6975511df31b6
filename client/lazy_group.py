"""A click group that imports some subcommands only when they run.

Click's lazy-loading pattern (`list_commands`, `get_command`), so that the CLI
does not import what only one subcommand needs (`swarming local` and the local
stack, which a CLI install leaves out), plus: the group's `--help` lists a lazy
subcommand by the short help given here, so it imports nothing either; and a
subcommand that needs an extra of the project says what to install while that
extra is missing, rather than failing with an ImportError.
"""

import dataclasses
import importlib
import importlib.metadata
import re
from typing import Any

import click

#: The project's name in pyproject.toml, whose installed metadata lists its extras.
DISTRIBUTION = "serverless-swarming"


@dataclasses.dataclass(frozen=True)
class LazyCommand:
    """A subcommand that is imported by name when it runs."""

    #: "module:attribute" of the click command.
    import_path: str
    #: What the group's `--help` shows for it.
    short_help: str
    #: The extra of the project whose requirements it needs.
    extra: str

    def load(self, name: str) -> click.Command:
        missing = missing_requirements(self.extra)
        if missing:
            raise click.ClickException(
                f"'swarming {name}' needs the project's '{self.extra}' extra, and these are not installed: "
                f"{', '.join(missing)}.\nInstall them from a checkout of the project with "
                f"\"pip install '.[{self.extra}]'\" (or 'make install', which installs everything for development).")
        module, _, attribute = self.import_path.partition(":")
        return getattr(importlib.import_module(module), attribute)


def missing_requirements(extra: str) -> list[str]:
    """The distributions the project's `extra` requires that are not installed."""
    missing: dict[str, None] = {}  # Ordered, without repeats.
    for line in importlib.metadata.requires(DISTRIBUTION) or []:
        requirement, _, marker = line.partition(";")
        if not re.search(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""", marker):
            continue
        name = re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing[name] = None
    return list(missing)


class LazyGroup(click.Group):
    """A group with `lazy_subcommands` (name -> LazyCommand) beside its own commands."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_subcommands.get(cmd_name)
        return lazy.load(cmd_name) if lazy else super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's listing, with a stand-in that carries the short help for each lazy subcommand."""
        stand_ins = {name: click.Command(name, short_help=lazy.short_help)
                     for name, lazy in self.lazy_subcommands.items()}
        click.Group(commands={**self.commands, **stand_ins}).format_commands(ctx, formatter)
