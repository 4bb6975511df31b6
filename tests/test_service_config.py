"""shared/service_config.py and `swarming config validate`: the repository's
own config, each rule with a failing example named by its file, line and
field, the bot group of an id, identities against patterns, the version and
the stored document."""

import importlib.util
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import cli
from shared import service_config
from shared.errors import ConfigError, ConfigProblem, ValidationError
from tests.test_bot_zip import _oldest_python

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "infra" / "config"

SETTINGS = """\
admins = ["user:root@example.com", "group:admins"]

[groups]
admins = ["user:*@admins.example.com"]
ci = ["serviceAccount:ci@proj.iam.gserviceaccount.com", "user:*@example.com"]
"""
POOLS = """\
[pools.default]
schedulers = ["group:ci"]
viewers = ["user:viewer@other.com"]

[pools."ci.linux"]
admins = ["user:pool-admin@example.com"]
lifo = true
"""
BOTS = """\
[[bot_group]]
name = "exact"
bot_id = ["build-1"]
dimensions = ["pool:default"]
[bot_group.auth]
require_service_account = ["bots@proj.iam.gserviceaccount.com"]
ip_allowlist = ["10.0.0.0/8", "2001:db8::/32"]

[[bot_group]]
name = "prefixed"
bot_id_prefix = ["build-", "build-long-"]
dimensions = ["pool:ci.linux", "os:Linux", "os:Ubuntu"]
auth = { bootstrap = true }

[[bot_group]]
name = "patterned"
bot_id_pattern = ["*-linux", "lab-?"]
dimensions = ["pool:default"]
bot_config_script = "lab.py"
auth = { bootstrap = true }

[[bot_group]]
name = "late"
bot_id_pattern = ["lab-*"]
dimensions = ["pool:default"]
auth = { bootstrap = true }

[[bot_group]]
name = "default"
dimensions = ["pool:default"]
auth = { bootstrap = true }
"""
LAB = "def get_dimensions(bot):\n    return {'lab': ['1']}\n"
FILES = {"settings.toml": SETTINGS, "pools.toml": POOLS, "bots.toml": BOTS, "scripts/lab.py": LAB}
#: What each case of one file's problem is checked beside: valid, and depending on no other file.
MINIMAL = {"settings.toml": "", "pools.toml": '[pools.default]\n[pools."ci.linux"]\n', "bots.toml": ""}
#: Marks the line a case's problem must be reported at.
MARK = "# <-"


def problems(files):
    with pytest.raises(ConfigError) as e:
        service_config.parse(files)
    return e.value.problems


# The repository's config.

@pytest.mark.parametrize("directory", ["infra/config", "local/config", "bench/config", "tests/config"])
def test_every_config_of_the_repository_is_valid(directory):
    config = service_config.parse(service_config.read_dir(REPO / directory))

    assert config.pools and config.bot_groups


def test_the_production_example_authenticates_its_bots():
    config = service_config.parse(service_config.read_dir(CONFIG_DIR))

    gce = config.bot_group("gce-linux-7")
    assert gce is not None and gce.name == "gce" and not gce.auth.bootstrap
    assert gce.auth.require_service_account == ("swarming-bots@my-project.iam.gserviceaccount.com",)
    lab = config.bot_group("lab-3-linux")
    assert lab is not None and lab.name == "lab" and lab.bot_config_script == "lab.py" and lab.auth.bootstrap
    assert lab.dimensions == {"os": ["Linux"], "pool": ["default"]}
    assert ipaddress.ip_address("10.20.3.4") in lab.auth.ip_allowlist[0]
    assert config.bot_group("lab-3-mac") is None and config.bot_group("someone-else") is None
    assert config.matches("user:dev@example.com", config.pool("default").viewers)
    assert config.matches("serviceAccount:ci@my-project.iam.gserviceaccount.com", config.pool("default").schedulers)
    assert not config.matches("user:dev@example.org", config.pool("default").viewers)
    assert config.is_admin("user:alice@example.com") and not config.is_admin("user:dev@example.com")


def test_the_local_stack_config_lets_its_users_do_everything():
    config = service_config.parse(service_config.read_dir(REPO / "local" / "config"))

    local = config.bot_group("local-bot-7")
    assert local is not None and local.name == "local"
    assert local.auth.bootstrap and local.dimensions == {"pool": ["default"]}
    assert config.bot_group("someone-else") is None
    assert config.matches("user:dev@localhost", config.pool("default").schedulers)
    assert not config.matches("user:dev@example.com", config.pool("default").schedulers)
    assert config.is_admin("user:local-admin@localhost")


def test_the_example_script_adds_its_dimension_to_the_defaults():
    spec = importlib.util.spec_from_file_location("lab_bot_config", CONFIG_DIR / "scripts" / "lab.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    dimensions = script.get_dimensions(None)

    assert dimensions["building"] == [script.BUILDING]
    assert {"id", "os", "cpu", "pool"} <= dimensions.keys()


def test_the_module_imports_on_the_bots_oldest_python(tmp_path):
    """shared/ ships in the bot zip: no tomllib at import time."""
    python = _oldest_python()
    done = subprocess.run([python, "-c", "import shared.service_config"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


# The model.

def test_the_files_make_the_model():
    config = service_config.parse(FILES)

    assert config.settings == service_config.Settings(
        admins=("user:root@example.com", "group:admins"),
        groups={"admins": ("user:*@admins.example.com",),
                "ci": ("serviceAccount:ci@proj.iam.gserviceaccount.com", "user:*@example.com")})
    assert config.pool("ci.linux") == service_config.Pool(name="ci.linux", admins=("user:pool-admin@example.com",),
                                                         lifo=True)
    assert config.pool("nightly") is None
    exact = config.bot_groups[0]
    assert exact.auth == service_config.BotAuth(
        require_service_account=("bots@proj.iam.gserviceaccount.com",),
        ip_allowlist=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))
    assert config.bot_groups[1].dimensions == {"os": ["Linux", "Ubuntu"], "pool": ["ci.linux"]}
    assert config.scripts == {"lab.py": LAB}
    assert config.version == service_config.version(FILES)


@pytest.mark.parametrize("bot_id,group", [
    ("build-1", "exact"),  # Exact before its prefix.
    ("build-2", "prefixed"),
    ("build-long-1", "prefixed"),
    ("build-3-linux", "prefixed"),  # A prefix before a pattern.
    ("lab-1", "patterned"),  # The first pattern in file order...
    ("lab-12", "late"),  # ...that matches.
    ("x-linux", "patterned"),
    ("x-Linux", "default"),  # Patterns match with case.
    ("anything", "default"),
])
def test_the_group_of_a_bot_id(bot_id, group):
    assert service_config.parse(FILES).bot_group(bot_id).name == group


def test_without_a_default_group_an_unknown_bot_has_none():
    bots = BOTS[:BOTS.index('[[bot_group]]\nname = "default"')]
    assert service_config.parse({**FILES, "bots.toml": bots}).bot_group("anything") is None


@pytest.mark.parametrize("identity,patterns,expected", [
    ("user:root@example.com", "admins", True),
    ("user:ROOT@Example.com", "admins", True),  # Emails compare without case.
    ("user:bob@admins.example.com", "admins", True),  # Through a group's wildcard.
    ("user:bob@example.com", "admins", False),
    ("serviceAccount:ci@proj.iam.gserviceaccount.com", "schedulers", True),  # Through a group.
    ("serviceAccount:other@proj.iam.gserviceaccount.com", "schedulers", False),
    ("user:anyone@example.com", "schedulers", True),  # `user:*@example.com` in a group.
    ("user:a@evil-example.com", "schedulers", False),  # Not another domain that ends alike...
    ("user:a@sub.example.com", "schedulers", False),  # ...nor a subdomain...
    ("serviceAccount:x@example.com", "schedulers", False),  # ...nor another kind.
    ("user:*@example.com", "schedulers", False),  # A pattern is no identity.
    ("group:ci", "schedulers", False),
    ("user:viewer@other.com", "viewers", True),
    ("user:viewer@other.com", "schedulers", False),
    ("", "schedulers", False),
])
def test_an_identity_against_patterns(identity, patterns, expected):
    config = service_config.parse(FILES)
    listed = config.settings.admins if patterns == "admins" else getattr(config.pool("default"), patterns)

    assert config.matches(identity, listed) is expected
    assert config.is_admin(identity) is (patterns == "admins" and expected)


# Every rule, by a failing example: the file, the line (the one marked), the field and why.

CASES = [
    # settings.toml
    ("settings.toml", 'admins = ["alice@example.com"]  # <-\n', "admins[0]",
     "must start with one of user:, serviceAccount:, group:"),
    ("settings.toml", 'admins = [\n  "user:root@example.com",\n  "user:a*@example.com",  # <-\n]\n', "admins[1]",
     "not an email address after 'user:'"),
    ("settings.toml", 'admins = ["user:a@b@example.com"]  # <-\n', "admins[0]", "not an email address"),
    ("settings.toml", 'admins = ["serviceAccount:*@*.example.com"]  # <-\n', "admins[0]",
     "not an email address after 'serviceAccount:'"),
    ("settings.toml", 'admins = ["user:*"]  # <-\n', "admins[0]", "not an email address"),
    ("settings.toml", 'admins = ["robot:r@example.com"]  # <-\n', "admins[0]", "must start with one of"),
    ("settings.toml", 'admins = ["group:nobody"]  # <-\n', "admins[0]", "no group 'nobody' in settings.toml"),
    ("settings.toml", '[groups]\na = ["user:a@example.com"]\nb = ["group:a"]  # <-\n', "groups.b[0]",
     "a group may not hold a group"),
    ("settings.toml", '[groups]\n"a b" = []  # <-\n', 'groups."a b"', "a group name is"),
    ("settings.toml", "adimns = []  # <-\n", "adimns", "unknown key"),
    ("settings.toml", 'admins = "user:root@example.com"  # <-\n', "admins", "must be a list"),
    ("settings.toml", "bot_session_ttl_secs = 30  # <-\n", "bot_session_ttl_secs", "must be between 60 and 86400"),
    ("settings.toml", "bootstrap_token_ttl_secs = true  # <-\n", "bootstrap_token_ttl_secs", "must be an integer"),
    ("settings.toml", "id_token_audience = 1  # <-\n", "id_token_audience", "must be a string"),
    # pools.toml
    ("pools.toml", '[pools.default]\nschedulers = ["group:nobody"]  # <-\n', "pools.default.schedulers[0]",
     "no group 'nobody'"),
    ("pools.toml", '[pools."a|b"]  # <-\n', 'pools."a|b"', "not a pool name: must have a single value, without '|'"),
    ("pools.toml", '[pools." x"]  # <-\n', 'pools." x"', "not a pool name"),
    ("pools.toml", "[pools.default]\nlifo = 1  # <-\n", "pools.default.lifo", "must be true or false"),
    ("pools.toml", '[pools.default]\nowners = ["team"]  # <-\n', "pools.default.owners[0]",
     "is not an email address"),
    ("pools.toml", "[pools.default]\nschedulers = []\nschedular = []  # <-\n", "pools.default.schedular",
     "unknown key"),
    ("pools.toml", "[pool.default]  # <-\n", "pool", "unknown key"),
    ("pools.toml", "[pools]\ndefault = 1  # <-\n", "pools.default", "must be a table"),
    # bots.toml: one group
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default", "os"]  # <-\nauth = {bootstrap = true}\n',
     "bot_group[0].dimensions[1]", "must be 'key:value'"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = [\n  "pool:default",\n  "pool:ci.linux",  # <-\n]\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].dimensions[1]", "a second pool"),
    ("bots.toml", '[[bot_group]]  # <-\nname = "a"\nauth = {bootstrap = true}\n', "bot_group[0].dimensions",
     "must hold one 'pool:<name>'"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:nightly"]  # <-\nauth = {bootstrap = true}\n',
     "bot_group[0].dimensions[0]", "no pool 'nightly' in pools.toml"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default", "id:x"]  # <-\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].dimensions[1]", "the 'id' dimension is the bot's own"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default", "9x:v"]  # <-\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].dimensions[1]", "key must match"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default",\n  "os:Linux",  # <-\n  "os:Linux"]\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].dimensions[1]", "duplicate values"),
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_id = ["a/b"]  # <-\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].bot_id[0]", "not a bot id"),
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_id_prefix = [""]  # <-\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].bot_id_prefix[0]", "must not be empty"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\nbot_config_script = "nope.py"  # <-\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].bot_config_script", "no file scripts/nope.py"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n[bot_group.auth]  # <-\n'
                  "bootstrap = false\n", "bot_group[0].auth", "sets neither require_service_account nor bootstrap"),
    ("bots.toml", '[[bot_group]]  # <-\nname = "a"\ndimensions = ["pool:default"]\n', "bot_group[0].auth",
     "is required"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n[bot_group.auth]\nbootstrap = true\n'
                  'ip_allowlist = ["10.0.0.0/8", "10.0.0.1/8"]  # <-\n', "bot_group[0].auth.ip_allowlist[1]",
     "not a network in CIDR notation: 10.0.0.1/8 has host bits set"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n[bot_group.auth]\nbootstrap = true\n'
                  'ip_allowlist = ["10.0.0/8"]  # <-\n', "bot_group[0].auth.ip_allowlist[0]", "not a network"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n[bot_group.auth]\n'
                  'require_service_account = ["bots"]  # <-\n', "bot_group[0].auth.require_service_account[0]",
     "is not an email address"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n[bot_group.auth]\nbootstrap = true\n'
                  "bootsrap = true  # <-\n", "bot_group[0].auth.bootsrap", "unknown key"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\n'
                  "auth = {bootstrap = true, ip = []}  # <-\n", "bot_group[0].auth.ip", "unknown key"),
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_ids = ["x"]  # <-\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n', "bot_group[0].bot_ids", "unknown key"),
    ("bots.toml", '[[bot_groups]]  # <-\nname = "a"\n', "bot_groups", "unknown key"),
    ("bots.toml", '[[bot_group]]  # <-\ndimensions = ["pool:default"]\nauth = {bootstrap = true}\n',
     "bot_group[0].name", "is required"),
    # bots.toml: between groups
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_id = ["b1", "b2"]\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n\n[[bot_group]]\nname = "b"\nbot_id = ["b3", "b2"]  # <-\n'
                  'dimensions = ["pool:default"]\nauth = {bootstrap = true}\n',
     "bot_group[1].bot_id[1]", "bot id 'b2' is already in bot_group[0]"),
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_id = ["b1"]\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n\n[[bot_group]]\nname = "a"  # <-\nbot_id = ["b2"]\n'
                  'dimensions = ["pool:default"]\nauth = {bootstrap = true}\n',
     "bot_group[1].name", "bot group name 'a' is already in bot_group[0]"),
    ("bots.toml", '[[bot_group]]\nname = "a"\nbot_id_prefix = ["build-long-"]\ndimensions = ["pool:default"]\n'
                  'auth = {bootstrap = true}\n\n[[bot_group]]\nname = "b"\nbot_id_prefix = [\n  "x-",\n'
                  '  "build-",  # <-\n]\ndimensions = ["pool:default"]\nauth = {bootstrap = true}\n',
     "bot_group[1].bot_id_prefix[1]", "'build-' and the prefix 'build-long-' of bot_group[0]: one is a prefix"),
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"]\nauth = {bootstrap = true}\n\n'
                  '[[bot_group]]  # <-\nname = "b"\ndimensions = ["pool:default"]\nauth = {bootstrap = true}\n',
     "bot_group[1]", "a second default group (no bot_id, bot_id_prefix or bot_id_pattern), after bot_group[0]"),
    # Syntax, files and scripts.
    ("bots.toml", '[[bot_group]]\nname = "a"\ndimensions = ["pool:default"  # <-\n', "",
     "invalid TOML: Unclosed array (at end of document)"),
    ("pools.toml", "[pools.default]\nlifo = yes  # <-\n", "", "invalid TOML: Invalid value (column 8)"),
    ("scripts/lab.py", "def get_dimensions(bot):\n    return {}\n\ndef x(:  # <-\n", "",
     "invalid Python: invalid syntax"),
    ("scripts/lab.py", "x = 1\0\n", "", "invalid Python: source code string cannot contain null bytes"),
    ("settings.toml", None, "", "is missing"),
    ("scripts/lab.txt", "", "", "unknown file"),
]


@pytest.mark.parametrize("name,text,field,reason", CASES, ids=[f"{c[0]}:{c[2] or c[3]}" for c in CASES])
def test_a_problem_names_its_file_line_and_field(name, text, field, reason):
    files = {**MINIMAL, name: text} if text is not None else {k: v for k, v in MINIMAL.items() if k != name}
    marked = [i for i, line in enumerate((text or "").splitlines(), 1) if line.endswith(MARK)]

    found = problems(files)

    assert len(found) == 1, found
    assert found[0][:3] == (name, marked[0] if marked else 0, field)
    assert reason in found[0].reason


def test_every_problem_is_found_in_file_and_line_order():
    bots = ('[[bot_group]]\nname = "a"\ndimensions = ["os"]\nauth = {bootstrap = false}\n\n'
            '[[bot_group]]\nname = "b"\nbot_id = ["x"]\ndimensions = ["pool:default", "pool:ci.linux"]\n'
            'auth = {bootstrap = true, ip_allowlist = ["nope"]}\n')
    settings = 'oops = 1\n' + SETTINGS

    found = problems({**FILES, "bots.toml": bots, "settings.toml": settings})

    assert [(p.file, p.line, p.field) for p in found] == [
        ("bots.toml", 3, "bot_group[0].dimensions"),  # no pool
        ("bots.toml", 3, "bot_group[0].dimensions[0]"),  # no ':'
        ("bots.toml", 4, "bot_group[0].auth"),
        ("bots.toml", 9, "bot_group[1].dimensions[1]"),
        ("bots.toml", 10, "bot_group[1].auth.ip_allowlist[0]"),
        ("settings.toml", 1, "oops"),
    ]


def test_syntax_first_a_file_that_does_not_parse_hides_what_depends_on_it():
    found = problems({**FILES, "settings.toml": "admins = [\n", "bots.toml": "[[bot_group]]\nname = 1\n",
                      "scripts/lab.py": "def (\n"})

    assert [(p.file, p.line) for p in found] == [("scripts/lab.py", 1), ("settings.toml", 1)]


def test_a_problem_reads_as_file_line_field_reason():
    assert str(ConfigProblem("bots.toml", 12, "bot_group[1].dimensions[0]", "must be 'key:value'")) == (
        "bots.toml:12: bot_group[1].dimensions[0]: must be 'key:value'")
    assert str(ConfigProblem("pools.toml", 0, "", "is missing")) == "pools.toml: is missing"
    assert str(ConfigProblem("scripts/a.py", 3, "", "invalid Python: x")) == "scripts/a.py:3: invalid Python: x"


# Files, version and the stored document.

def test_the_version_follows_every_byte_of_every_file_and_nothing_else():
    version = service_config.version(FILES)
    assert service_config.version(dict(reversed(list(FILES.items())))) == version
    for name, text in FILES.items():
        for at in (0, len(text) // 2, len(text) - 1):
            changed = text[:at] + chr(ord(text[at]) ^ 1) + text[at + 1:]
            assert service_config.version({**FILES, name: changed}) != version, (name, at)
    assert service_config.version({**FILES, "scripts/lab.py": LAB + " "}) != version
    renamed = {**{k: v for k, v in FILES.items() if k != "scripts/lab.py"}, "scripts/lab2.py": LAB}
    assert service_config.version(renamed) != version
    # Bytes moved from one file to the next are another config.
    assert service_config.version({"a": "xy", "b": ""}) != service_config.version({"a": "x", "b": "y"})


def test_the_stored_document_round_trips_and_refuses_a_tampered_one():
    document = json.loads(json.dumps(service_config.to_wire(FILES)))

    assert document["version"] == service_config.parse(FILES).version
    assert list(document["files"]) == sorted(FILES)
    assert service_config.from_wire(document) == FILES
    with pytest.raises(ValidationError) as e:
        service_config.from_wire({**document, "files": {**FILES, "pools.toml": POOLS + "\n"}})
    assert e.value.field == "version"
    with pytest.raises(ValidationError) as e:
        service_config.from_wire({**document, "files": {"bots.toml": 1}})
    assert e.value.field == "files"
    with pytest.raises(ValidationError) as e:
        service_config.from_wire({**document, "extra": 1})
    assert e.value.field == "extra"


def test_a_directory_gives_its_config_files_byte_for_byte(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "bots.toml").write_bytes(b"# CRLF\r\n")
    (tmp_path / "scripts" / "lab.py").write_text(LAB)
    (tmp_path / "scripts" / "notes.txt").write_text("not a script")
    (tmp_path / "README.md").write_text("not config")

    assert service_config.read_dir(tmp_path) == {"bots.toml": "# CRLF\r\n", "scripts/lab.py": LAB}
    (tmp_path / "pools.toml").write_bytes(b"\xff")
    with pytest.raises(ConfigError) as e:
        service_config.read_dir(tmp_path)
    assert e.value.problems == [ConfigProblem("pools.toml", 0, "", "is not UTF-8 text")]


# swarming config validate

def _config_dir(tmp_path, **changes):
    for name, text in {**FILES, **changes}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return str(tmp_path)


def test_validate_prints_the_version_of_a_valid_config(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    repository = service_config.parse(service_config.read_dir(CONFIG_DIR)).version

    default = CliRunner().invoke(cli, ["config", "validate"])
    given = CliRunner().invoke(cli, ["config", "validate", _config_dir(tmp_path), "--json"])

    assert (default.exit_code, default.stdout, default.stderr) == (0, f"ok: {repository}\n", "")
    assert given.exit_code == 0 and json.loads(given.stdout) == {"version": service_config.version(FILES)}


def test_validate_prints_every_problem_and_exits_1(tmp_path):
    directory = _config_dir(tmp_path, **{"pools.toml": POOLS + 'owners = ["team"]\n', "scripts/lab.py": "def (\n"})
    owners = "'team' is not an email address (one '@', no space or '*')"

    text = CliRunner().invoke(cli, ["config", "validate", directory])
    as_json = CliRunner().invoke(cli, ["config", "validate", directory, "--json"])

    assert (text.exit_code, text.stdout) == (1, "")
    assert text.stderr.splitlines() == [f'pools.toml:8: pools."ci.linux".owners[0]: {owners}',
                                        "scripts/lab.py:1: invalid Python: invalid syntax"]
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == {"errors": [
        {"file": "pools.toml", "line": 8, "field": 'pools."ci.linux".owners[0]', "reason": owners},
        {"file": "scripts/lab.py", "line": 1, "field": "", "reason": "invalid Python: invalid syntax"}]}


def test_validate_refuses_a_directory_that_is_not_one(tmp_path):
    result = CliRunner().invoke(cli, ["config", "validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
