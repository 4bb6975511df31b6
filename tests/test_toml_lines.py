"""shared/toml_lines.py: the line of every key path of a TOML document,
through what could mislead a line-by-line reader (multi-line strings that look
like headers and keys, quoted and dotted keys, inline tables, comments inside
arrays, arrays of tables with tables inside, CRLF line ends)."""

import tomllib

import pytest

from shared.toml_lines import KeyLines, field_name

DOCUMENT = """\
# a comment = 1
title = "x"  # [not.a.header]
"quoted.key" = 1
a.b.c = [1, 2,
  3]
date = 1979-05-27 07:32:00Z

[pools."ci.linux"]
schedulers = [
  "user:a@b.c",  # first
  # a comment line ] inside the array
  'user:*@x.y',
]
inline = { k = 1, "j.k" = ["a", "b"] }
text = \"\"\"
[not_a_header]
fake = "key"
\"\"\"\"\"
literal = '''
''' 

[[bot_group]]
name = "a"
[bot_group.auth]
bootstrap = true

[[bot_group]]
name = "b"
dimensions = [
  "pool:x",
  "os:y",
]
[[bot_group.sub]]
x = 1
"""


def test_the_document_is_valid_toml():
    assert tomllib.loads(DOCUMENT)["pools"]["ci.linux"]["text"].endswith('fake = "key"\n""')


@pytest.mark.parametrize("path,line", [
    (("title",), 2),
    (("quoted.key",), 3),
    (("a",), 4),
    (("a", "b", "c", 1), 4),
    (("a", "b", "c", 2), 5),
    (("date",), 6),
    (("pools",), 8),
    (("pools", "ci.linux"), 8),
    (("pools", "ci.linux", "schedulers"), 9),
    (("pools", "ci.linux", "schedulers", 0), 10),
    (("pools", "ci.linux", "schedulers", 1), 12),
    (("pools", "ci.linux", "inline", "j.k", 1), 14),
    (("pools", "ci.linux", "literal"), 19),
    (("bot_group", 0), 22),
    (("bot_group", 0, "name"), 23),
    (("bot_group", 0, "auth"), 24),
    (("bot_group", 0, "auth", "bootstrap"), 25),
    (("bot_group", 1), 27),
    (("bot_group", 1, "dimensions", 1), 31),
    (("bot_group", 1, "sub", 0, "x"), 34),
])
def test_each_key_and_element_is_on_its_line(path, line):
    lines = KeyLines(DOCUMENT)
    assert lines.line(path) == line
    assert KeyLines(DOCUMENT.replace("\n", "\r\n")).line(path) == line


def test_what_the_document_lacks_is_on_the_line_of_what_encloses_it():
    lines = KeyLines(DOCUMENT)
    assert lines.line(("bot_group", 1, "auth")) == 27  # The group's header.
    assert lines.line(("bot_group", 0, "auth", "ip_allowlist", 3)) == 24
    assert lines.line(("not_a_header",)) == 0  # Inside a string: the document.
    assert lines.line(("pools", "ci.linux", "fake")) == 8


def test_a_field_name_quotes_the_keys_toml_would():
    assert field_name(("bot_group", 1, "dimensions", 0)) == "bot_group[1].dimensions[0]"
    assert field_name(("pools", "ci.linux", "schedulers", 2)) == 'pools."ci.linux".schedulers[2]'
    assert field_name(("admins",)) == "admins"
    assert field_name(()) == ""
