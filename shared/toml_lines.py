"""Where each key of a TOML document stands, by line, so that a config error
found after parsing names its line as well as its field.

`tomllib` gives a line only for syntax errors, and its result keeps no
positions. This reads a document `tomllib` already accepted and notes the line
of every key path it defines: `[table]` and `[[array]]` headers, `key = `
lines (dotted and quoted keys too), each element of an array and each key of
an inline table. A path is a tuple of keys and array indices,
`("bot_group", 1, "dimensions", 0)`, written `bot_group[1].dimensions[0]`.
Being for valid documents only, it skips values without checking them.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Tuple, Union

#: A key path: table keys and array indices, from the document's root.
Path = Tuple[Union[str, int], ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY = re.compile(r"""[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'""")
#: Multi-line strings first: their closing run of 3 quotes may carry 2 more of the content.
_STRING = re.compile(r'''"""(?:[^"\\]|\\.|""?(?!"))*"{3,5}|\'\'\'(?:[^']|''?(?!'))*'{3,5}'''
                     r'''|"(?:[^"\\\n]|\\.)*"|'[^'\n]*\'''', re.DOTALL)
_BLANK = re.compile(r"[ \t\r]*(?:#[^\n]*)?")
#: Where a number, boolean or date ends (a date may hold a space).
_SCALAR_END = re.compile(r"[,\]}#\n]")


def field_name(path: Path) -> str:
    """`bot_group[1].dimensions[0]`; a key that is not bare is quoted as TOML would: `pools."ci.linux"`."""
    name = ""
    for part in path:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            name += f".{key}" if name else key
    return name


class KeyLines:
    """The line of each key path of one document."""

    def __init__(self, text: str):
        self._lines = _Scanner(text).scan()

    def line(self, path: Path) -> int:
        """The line of `path`, else of the nearest table or key that encloses it; 0 for the document."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 0


class _Scanner:
    """One pass over a valid document, from `pos`."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        #: The first line of each key path.
        self.lines: dict[Path, int] = {}
        #: How many tables each array of tables (`[[name]]`) holds so far, by its path.
        self.array_sizes: dict[Path, int] = {}

    def scan(self) -> dict[Path, int]:
        table: Path = ()
        while self._skip_blank(newlines=True):
            if self.text.startswith("[[", self.pos):
                table = self._header(brackets=2)
            elif self.text[self.pos] == "[":
                table = self._header(brackets=1)
            else:
                self._key_value(table)
        return self.lines

    def _line(self) -> int:
        return bisect.bisect_right(self.line_starts, self.pos)

    def _note(self, path: Path, line: int) -> None:
        """`path` and the tables it implies start at `line`, unless they started before."""
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def _skip_blank(self, newlines: bool) -> bool:
        """Skips spaces and a comment (and line ends, when `newlines`); False at the end of the text."""
        while True:
            self.pos = _BLANK.match(self.text, self.pos).end()
            if not (newlines and self.text.startswith("\n", self.pos)):
                return self.pos < len(self.text)
            self.pos += 1

    def _header(self, brackets: int) -> Path:
        """A `[table]` or `[[array]]` header: the path of the table it opens, an array's with its index."""
        line = self._line()
        self.pos += brackets
        keys = self._key()
        self.pos += brackets
        path: Path = ()
        for key in keys[:-1]:  # A table inside an array of tables is in its last element.
            path += (key,)
            if path in self.array_sizes:
                path += (self.array_sizes[path] - 1,)
        path += (keys[-1],)
        if brackets == 2:
            self.array_sizes[path] = self.array_sizes.get(path, 0) + 1
            path += (self.array_sizes[path] - 1,)
        self._note(path, line)
        return path

    def _key(self) -> list[str]:
        """A key, dotted or not, its quoted parts decoded as tomllib does; the position after it and its spaces."""
        import tomllib  # Python >= 3.11; shared/ imports on the bot's 3.9, which never parses config.

        keys = []
        while True:
            self._skip_blank(newlines=False)
            raw = _KEY.match(self.text, self.pos).group()
            self.pos += len(raw)
            keys.append(raw if _BARE_KEY.fullmatch(raw) else next(iter(tomllib.loads(f"{raw} = 0"))))
            self._skip_blank(newlines=False)
            if not self.text.startswith(".", self.pos):
                return keys
            self.pos += 1

    def _key_value(self, table: Path) -> None:
        line = self._line()
        path = table + tuple(self._key())
        self._note(path, line)
        self.pos += 1  # =
        self._value(path)

    def _value(self, path: Path) -> None:
        self._skip_blank(newlines=False)
        first = self.text[self.pos]
        if first == "[":
            self.pos += 1
            index = 0
            while self._skip_blank(newlines=True) and self.text[self.pos] != "]":
                self._note(path + (index,), self._line())
                self._value(path + (index,))
                self._skip_blank(newlines=True)
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                index += 1
            self.pos += 1
        elif first == "{":
            self.pos += 1
            while self._skip_blank(newlines=False) and self.text[self.pos] != "}":
                self._key_value(path)
                self._skip_blank(newlines=False)
                if self.text.startswith(",", self.pos):
                    self.pos += 1
            self.pos += 1
        elif first in "\"'":
            self.pos = _STRING.match(self.text, self.pos).end()
        else:
            end = _SCALAR_END.search(self.text, self.pos)
            self.pos = end.start() if end else len(self.text)
