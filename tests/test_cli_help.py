"""Every command has help, and `--help` works on each."""

import re
import subprocess
import sys

import click
from click.testing import CliRunner

from client.cli import LOCAL, cli
from local.cli import local


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    """Through list_commands and get_command, which load the lazy subcommands."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help():
    found = list(_commands(cli))
    assert {"trigger", "collect", "run", "archive", "download", "config", "local"} <= {path[0] for path, _ in found}
    assert {("local", "up"), ("local", "down"), ("local", "status"), ("config", "validate")} <= {
        path for path, _ in found}
    for path, command in found:
        assert command.help, f"'swarming {' '.join(path)}' has no help"
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_help_lists_local_without_importing_it():
    """`swarming --help` shows `local` by the short help client/cli.py gives it,
    and imports nothing of local/ (nor of functions/) to do so."""
    probe = ("import sys; from client.cli import main; sys.argv = ['swarming', '--help']\n"
             "try:\n    main()\nexcept SystemExit:\n"
             "    print(sorted(m for m in sys.modules if m.split('.')[0] in ('local', 'functions')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert re.search(rf"\n  local +{re.escape(LOCAL.short_help)}\n", result.stdout)  # Padded to the longest name.
    assert result.stdout.endswith("[]\n")


def test_the_short_help_of_local_is_its_own():
    assert local.get_short_help_str(limit=len(LOCAL.short_help)) == LOCAL.short_help


def test_bad_dimension_is_a_usage_error():
    result = CliRunner().invoke(cli, ["trigger", "--server", "http://127.0.0.1:9", "--token", "t",
                                      "-d", "nokeyvalue", "--", "true"])
    assert result.exit_code == 2 and "key=value" in result.output
