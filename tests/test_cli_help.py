"""Every command has help, and `--help` works on each."""

import click
from click.testing import CliRunner

from client.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help():
    found = list(_commands(cli))
    assert {"trigger", "collect", "run", "archive", "download", "local"} <= {path[0] for path, _ in found}
    for path, command in found:
        assert command.help, f"'swarming {' '.join(path)}' has no help"
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_bad_dimension_is_a_usage_error():
    result = CliRunner().invoke(cli, ["trigger", "--server", "http://127.0.0.1:9", "--token", "t",
                                      "-d", "nokeyvalue", "--", "true"])
    assert result.exit_code == 2 and "key=value" in result.output
