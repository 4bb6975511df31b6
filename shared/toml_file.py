"""One TOML file of the service config, read value by value, each problem
noted with its file, line and field rather than raised: a bad value reads as
its default and reading goes on, so that one run finds every problem."""

from __future__ import annotations

import re
from typing import Any, Callable, Collection

from shared.errors import ConfigProblem
from shared.toml_lines import KeyLines, Path, field_name

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", dict: "a table", list: "a list"}
#: Where tomllib's syntax errors say they are.
_AT_LINE = re.compile(r" \(at line (\d+), column (\d+)\)$")


class TomlFile:
    def __init__(self, name: str, text: str, data: dict[str, Any], problems: list[ConfigProblem]):
        self.name = name
        #: What tomllib made of the text.
        self.data = data
        self._lines = KeyLines(text)
        #: Shared by the files of one config, where each notes its own.
        self._problems = problems

    @classmethod
    def load(cls, name: str, text: str, problems: list[ConfigProblem]) -> TomlFile | None:
        """The file, or None when it is not TOML (noted, with tomllib's line)."""
        import tomllib  # Python >= 3.11; shared/ imports on the bot's 3.9, which never parses config.

        try:
            return cls(name, text, tomllib.loads(text), problems)
        except tomllib.TOMLDecodeError as e:
            at = _AT_LINE.search(str(e))
            line, reason = (int(at[1]), f"{str(e)[:at.start()]} (column {at[2]})") if at else (
                max(len(text.splitlines()), 1), str(e))  # "... (at end of document)": its last line.
            problems.append(ConfigProblem(name, line, "", f"invalid TOML: {reason}"))
            return None

    def problem(self, path: Path, reason: str) -> None:
        self._problems.append(ConfigProblem(self.name, self._lines.line(path), field_name(path), reason))

    def value(self, table: dict[str, Any], path: Path, key: str, default: Any, required: bool = False) -> Any:
        """table[key], which must be of the type of `default` (a bool is no integer); `default` if not."""
        if key not in table:
            if required:
                self.problem(path + (key,), "is required")
            return default
        if type(table[key]) is not type(default):
            self.problem(path + (key,), f"must be {_TYPE_NAMES[type(default)]}")
            return default
        return table[key]

    def known(self, table: dict[str, Any], path: Path, keys: Collection[str]) -> dict[str, Any]:
        """`table`, after noting each of its keys that is not one of `keys`."""
        for key in table:
            if key not in keys:
                self.problem(path + (key,), f"unknown key (known: {', '.join(sorted(keys))})")
        return table

    def strings(self, table: dict[str, Any], path: Path, key: str,
                problem_of: Callable[[str], str | None] = lambda _: None) -> list[tuple[Path, str]]:
        """The strings of the list table[key], each with its path, after
        noting what `problem_of` finds wrong with each (what is no string is left out)."""
        found = []
        for index, item in enumerate(self.value(table, path, key, [])):
            reason = problem_of(item) if isinstance(item, str) else "must be a string"
            if reason:
                self.problem(path + (key, index), reason)
            if isinstance(item, str):
                found.append((path + (key, index), item))
        return found


def values(items: list[tuple[Path, str]]) -> tuple[str, ...]:
    """The strings of `TomlFile.strings`, without their paths."""
    return tuple(item for _, item in items)
