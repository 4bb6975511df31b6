"""How a bot proves who it is (bot/credentials.py), against a loopback fake
of the Bot API, in process and as real `python -m bot` processes: the
handshake's credential from each source, the bot token every later call sends
and every answer renews, a 401, the token across an exec, the task runner's
run token and what a task can see of any credential; the bot group's hooks
script from the handshake; the default hook's ID token from a fake GCE
metadata server."""

import base64
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from bot import credentials, gce, layout, remote, running_code
from bot.bot_main import BACKOFF_MAX_SECS, Bot, Outcome
from bot.credentials import Credentials
from bot.hooks import BotView, Hooks
from bot.task_runner import Timings
from bot.updater import Updater
from shared.bot_api import EventReply, HandshakeReply, Restart
from tests.bot_fakes import (
    REPO, FakeServer, QuietHandler, Reply, claim, config, error, events_of, ok, renewing, run, served, sleep,
)

TASK_A, TASK_B = "5f3a1b2c3d4e5f00", "5f3a1b2c3d4e6000"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)
SOURCE = running_code.Code(None, running_code.DEV_VERSION, REPO)
#: A hook that gives a service account's ID token, as the default one does on GCE.
ID_TOKEN_HOOK = """
    def get_authentication_headers(bot):
        return {"Authorization": "Bearer id-token", "X-Hook": "h"}, None
"""


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def handshake(bot_token: str, **reply: Any) -> Reply:
    """A handshake's answer, which always carries a bot token."""
    return renewing(ok(HandshakeReply(bot_version="dev", server_version="fake", **reply).to_wire()), bot_token)


def make_bot(fake: FakeServer, work_dir: Path, *, token: str | None = None, **kwargs: Any) -> Bot:
    """A bot in process, whose Remote starts with `token` (what a bot handed
    its token over an exec starts with)."""
    kwargs.setdefault("sleep", lambda _: None)
    return Bot(remote.Remote(fake.url, token), work_dir, "bot-1", shutdown=threading.Event(), timings=FAST,
               **kwargs)


def start(fake: FakeServer, work_dir: Path, *args: str) -> subprocess.Popen:
    """A real bot process with no credential in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_")}
    return subprocess.Popen([sys.executable, "-m", "bot", "--server", fake.url, "--work-dir", str(work_dir),
                             "--id", "bot-1", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()


def write_token(path: Path, token: str) -> None:
    """As the start script writes a bootstrap token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)


# The handshake's credential, the bot token after it.

def test_the_hook_s_token_opens_the_handshake_then_the_bot_token_goes_renewed_by_the_answers(
        fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", renewing(sleep(1.0), "bot-token-2"), sleep(1.0))
    bot = make_bot(fake, tmp_path, bot_config=config(ID_TOKEN_HOOK))

    bot.handshake()
    bot.run_once()
    bot.run_once()

    assert [auth for _, _, auth in fake.calls] == ["Bearer id-token", "Bearer bot-token-1", "Bearer bot-token-2"]
    assert [headers["X-Hook"] for headers in fake.headers] == ["h"] * 3  # The hook's other headers, on every call.


def test_a_bootstrap_token_is_read_from_its_file_deleted_and_shown_at_the_handshake(
        fake: FakeServer, tmp_path: Path) -> None:
    bootstrap_file = tmp_path / "elsewhere" / "token"
    write_token(bootstrap_file, "bootstrap-1")
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", sleep(0.01))

    finish(start(fake, tmp_path / "bot", "--once", "--bootstrap-token-file", str(bootstrap_file)))

    assert fake.names() == ["bot_handshake", "bot_poll", "bot_event"]
    assert [auth for _, _, auth in fake.calls] == ["Bearer bootstrap-1", "Bearer bot-token-1", "Bearer bot-token-1"]
    assert not bootstrap_file.exists()
    assert "bootstrap-1" not in (tmp_path / "bot" / "logs" / "swarming_bot.log").read_text()


def test_a_bot_without_credential_says_so_and_takes_a_bootstrap_token_written_later(
        fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", sleep(0.01))
    bot_dir = tmp_path / "bot"
    log = bot_dir / "logs" / "swarming_bot.log"
    process = start(fake, bot_dir, "--once")
    try:
        fake.wait_for(lambda: log.exists() and "needs a new bootstrap token" in log.read_text(), timeout=30)
        assert fake.calls == []  # Nothing to show: no call at all, nothing reported.
        write_token(bot_dir / "bootstrap_token", "bootstrap-2")
        finish(process)
    finally:
        process.kill()

    assert [auth for _, _, auth in fake.calls] == ["Bearer bootstrap-2", "Bearer bot-token-1", "Bearer bot-token-1"]
    assert "the bot has no credential and needs a new bootstrap token" in log.read_text()
    assert str(bot_dir / "bootstrap_token") in log.read_text()
    assert not (bot_dir / "bootstrap_token").exists()


def test_a_bot_without_credential_waits_for_one_as_long_as_it_takes(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", sleep(1.0))
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2000:  # More than a day of backing off.
            write_token(tmp_path / "bootstrap_token", "bootstrap-1")

    make_bot(fake, tmp_path, sleep=wait).run(once=True)

    assert fake.authorizations("bot_handshake") == ["Bearer bootstrap-1"]
    assert BACKOFF_MAX_SECS / 2 <= min(waits[10:2000]) <= max(waits[:2000]) <= BACKOFF_MAX_SECS


# A 401.

def test_a_401_drops_the_bot_token_and_handshakes_again_with_the_hook_s(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"), handshake("bot-token-2"))
    fake.script("bot_poll", error(401, "unauthorized"), sleep(1.0))
    bot = make_bot(fake, tmp_path, bot_config=config(ID_TOKEN_HOOK))

    bot.run(once=True)

    assert fake.names() == ["bot_handshake", "bot_poll", "bot_handshake", "bot_poll", "bot_event"]
    assert [auth for _, _, auth in fake.calls] == [
        "Bearer id-token", "Bearer bot-token-1", "Bearer id-token", "Bearer bot-token-2", "Bearer bot-token-2"]


def test_a_hook_that_failed_is_asked_again_before_the_next_handshake(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", sleep(1.0))
    bot = make_bot(fake, tmp_path, bot_config=config("""
        ASKED = []
        def get_authentication_headers(bot):
            ASKED.append(1)
            if len(ASKED) == 1:
                raise OSError("the metadata server is not ready")
            return {"Authorization": "Bearer id-token"}, None
    """))

    bot.run(once=True)

    assert fake.authorizations("bot_handshake") == ["Bearer id-token"]
    assert len(bot.hooks.module.ASKED) == 2


def test_after_a_401_a_bootstrap_only_bot_calls_nothing_until_a_new_bootstrap_token(
        fake: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"), handshake("bot-token-2"))
    fake.script("bot_poll", error(401, "unauthorized"), sleep(1.0))
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # Two handshakes without credential backed off from: an admin writes one.
            write_token(tmp_path / "bootstrap_token", "bootstrap-2")

    bot = make_bot(fake, tmp_path, sleep=wait,
                   credentials=Credentials(tmp_path / "bootstrap_token", bootstrap="bootstrap-1"))
    with caplog.at_level(logging.ERROR):
        bot.run(once=True)

    assert fake.names() == ["bot_handshake", "bot_poll", "bot_handshake", "bot_poll", "bot_event"]
    assert [auth for _, _, auth in fake.calls] == [
        "Bearer bootstrap-1", "Bearer bot-token-1", "Bearer bootstrap-2", "Bearer bot-token-2", "Bearer bot-token-2"]
    assert caplog.text.count("the bot has no credential and needs a new bootstrap token") == 2
    assert len(waits) == 4 and not (tmp_path / "bootstrap_token").exists()


# Across an exec.

def test_an_exec_hands_the_last_bot_token_over_in_a_file_only_its_user_reads(
        fake: FakeServer, tmp_path: Path) -> None:
    execs: list[dict[str, str]] = []
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", ok(Restart("the bot's group changed").to_wire()))
    fake.script("bot_event", renewing(ok(EventReply().to_wire()), "bot-token-2"))  # bot_shutdown's answer.
    api = remote.Remote(fake.url, None)
    updater = Updater(SOURCE, layout.Layout(tmp_path), [], exec_python=lambda args, env: execs.append(dict(env)),
                      bot_token=lambda: api.token)
    bot = Bot(api, tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None, timings=FAST,
              updater=updater, credentials=Credentials(tmp_path / "bootstrap_token", bootstrap="bootstrap-1"))

    bot.handshake()
    assert bot.run_once() is Outcome.RESTARTED

    handed = tmp_path / "bot_token"
    assert handed.read_text() == "bot-token-2"  # Written after the last call, just before the exec.
    assert stat.S_IMODE(handed.stat().st_mode) == 0o600
    assert len(execs) == 1 and not any("bot-token" in value for value in execs[0].values())
    assert credentials.take(handed) == "bot-token-2" and not handed.exists()
    api.close()


def test_an_exec_that_fails_leaves_no_token_file(tmp_path: Path) -> None:
    def fail(args: Any, env: Any) -> None:
        raise OSError("exec failed")

    updater = Updater(SOURCE, layout.Layout(tmp_path), [], exec_python=fail, bot_token=lambda: "bot-token-1")

    with pytest.raises(OSError):
        updater.restart("again")

    assert list(tmp_path.iterdir()) == []


def test_the_bot_token_crosses_a_restart_and_its_file_is_gone_once_read(fake: FakeServer, tmp_path: Path) -> None:
    bot_dir = tmp_path / "bot"
    write_token(bot_dir / "bootstrap_token", "bootstrap-1")
    fake.script("bot_handshake", handshake("bot-token-1"), handshake("bot-token-2"))
    fake.script("bot_poll", ok(Restart("the bot's group changed").to_wire()), sleep(0.01))

    finish(start(fake, bot_dir, "--once"))

    assert fake.authorizations("bot_handshake") == ["Bearer bootstrap-1", "Bearer bot-token-1"]
    assert fake.authorizations("bot_poll") == ["Bearer bot-token-1", "Bearer bot-token-2"]
    assert not (bot_dir / "bot_token").exists() and not (bot_dir / "bootstrap_token").exists()


# What the task runner holds, and what a task sees.

#: Writes to argv[1] everything a task can read that might hold a credential:
#: its environment, its runner's and its bot's environment and command line,
#: and every file under the bot's directory (argv[2]).
DUMP = """
import os, pathlib, sys
seen = ["ENV " + repr(dict(os.environ))]
runner = os.getppid()
bot = int(open(f"/proc/{runner}/stat").read().rpartition(")")[2].split()[1])
for pid in (runner, bot):
    for name in ("environ", "cmdline"):
        seen.append(f"PROC {pid} {name} " + repr(open(f"/proc/{pid}/{name}", "rb").read()))
for path in sorted(pathlib.Path(sys.argv[2]).rglob("*")):
    if path.is_file():
        seen.append(f"FILE {path} " + repr(path.read_bytes()))
pathlib.Path(sys.argv[1]).write_text("\\n".join(seen))
"""


def test_a_task_finds_no_credential_in_any_environment_or_file_and_its_runner_reports_with_the_run_token(
        fake: FakeServer, tmp_path: Path) -> None:
    secrets = {"bootstrap": "bootstrap-secret-7f2", "bot": "bot-token-secret-9c4", "run": "run-token-secret-3e1"}
    bot_dir, dump = tmp_path / "bot", tmp_path / "dump.txt"
    write_token(bot_dir / "bootstrap_token", secrets["bootstrap"])
    fake.script("bot_handshake", handshake(secrets["bot"]))
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", DUMP, str(dump), str(bot_dir)],
                                 run_token=secrets["run"]))

    finish(start(fake, bot_dir, "--once"))

    seen = dump.read_text()
    assert "SWARMING_TASK_ID" in seen and f"FILE {bot_dir / 'logs' / 'swarming_bot.log'}" in seen
    assert seen.count("\nPROC ") == 4
    for name, secret in secrets.items():
        assert secret not in seen, name
    assert "SWARMING_TOKEN" not in seen
    assert fake.authorizations("bot_claim") == [f"Bearer {secrets['bot']}"]
    updates = fake.authorizations("bot_task_update")
    assert updates and set(updates) == {f"Bearer {secrets['run']}"}
    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0


def test_the_runner_s_environment_drops_the_static_token_the_bot_was_given(
        fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMING_TOKEN", "static-token")  # In the bot's environment, as --token's default.
    code = ("import os; print(b'SWARMING_TOKEN' in open(f'/proc/{os.getppid()}/environ', 'rb').read(), "
            "'SWARMING_TOKEN' in os.environ)")
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", code], run_token="run-token-a"))
    bot = make_bot(fake, tmp_path, token="static-token")

    assert bot.run_once() is Outcome.RAN

    output = b"".join(base64.b64decode(update["output"]) for update in fake.bodies("bot_task_update"))
    assert output == b"False False\n"  # Neither the runner's environment nor the task's.
    assert set(fake.authorizations("bot_task_update")) == {"Bearer run-token-a"}


def test_a_run_the_bot_fails_itself_goes_with_the_bot_token(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", claim(TASK_A))
    # The runner refuses it: a named cache cannot be the work directory.
    fake.script("bot_claim", run(TASK_A, ["true"], run_token="run-token-a", caches=[{"name": "all", "path": "."}]))
    bot = make_bot(fake, tmp_path, token="bot-token-0")

    bot.run(once=True)

    assert set(fake.authorizations("bot_task_update")) <= {"Bearer run-token-a"}
    assert fake.authorizations("bot_task_error") == ["Bearer bot-token-1"]


# The bot group's hooks script.

GROUP_SCRIPT = """
CALLS = []

def on_handshake(bot):
    CALLS.append(bot.server_dimensions)

def get_dimensions(bot):
    return {"from_group": ["yes"]}
"""


def test_the_group_s_hooks_script_from_the_handshake_replaces_the_zip_s(fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake",
                handshake("bot-token-1", server_dimensions={"pool": ["lab"]}, bot_config=GROUP_SCRIPT,
                          bot_config_name="lab.py"),
                handshake("bot-token-2", bot_config=GROUP_SCRIPT, bot_config_name="lab.py"),
                handshake("bot-token-3", bot_config="CHANGED = True\n", bot_config_name="lab 2"))
    fake.script("bot_poll", sleep(1.0))
    bot = make_bot(fake, tmp_path, token="bot-token-0",
                   bot_config=config("def get_dimensions(bot): return {'from_zip': ['yes']}"))

    bot.handshake()
    bot.run_once()
    first = bot.hooks.module
    bot.handshake()  # Again, as after a 401: the same script keeps its module.
    same = bot.hooks.module
    bot.handshake()  # Another script replaces it.

    handshake_dims, poll_dims = (body["dimensions"] for _, body, _ in fake.calls[:2])
    assert "from_zip" in handshake_dims and "from_group" not in handshake_dims
    assert "from_group" in poll_dims and "from_zip" not in poll_dims
    assert first.CALLS == [{"pool": ["lab"]}, {}]
    assert same is first and bot.hooks.module.CHANGED is True
    assert sorted(p.name for p in (tmp_path / "hooks").iterdir()) == ["bot_config_lab_2.py"]
    assert events_of(fake, "bot_error") == []


def test_a_group_script_that_fails_to_load_is_reported_and_the_default_hooks_apply(
        fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1", bot_config="raise RuntimeError('a broken group script')",
                                           bot_config_name="broken.py"))
    fake.script("bot_poll", sleep(1.0))
    bot = make_bot(fake, tmp_path, token="bot-token-0",
                   bot_config=config("def get_dimensions(bot): return {'from_zip': ['yes']}"))

    bot.handshake()
    bot.run_once()

    [reported] = events_of(fake, "bot_error")
    assert "bot_config_broken.py" in reported and "failed to load" in reported
    assert "RuntimeError: a broken group script" in reported
    [poll] = fake.bodies("bot_poll")
    assert "from_zip" not in poll["dimensions"] and "os" in poll["dimensions"]  # The default hooks'.
    assert fake.authorizations("bot_poll") == ["Bearer bot-token-1"]


# The default hook on GCE, against a fake metadata server.

EXPIRY = 1_900_000_000


class FakeMetadata(ThreadingHTTPServer):
    """The metadata server's ping and identity endpoint; `flavored` False: a
    host that answers at its address without being one (a proxy's 403)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MetadataHandler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.flavored = True
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []  # path, query, Metadata-Flavor


def id_token(audience: str) -> str:
    """A JWT as the metadata server's, but for its signature."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'aud': audience, 'exp': EXPIRY})}.c2lnbmF0dXJl"


class _MetadataHandler(QuietHandler):
    server: FakeMetadata

    def do_GET(self) -> None:
        url = urlparse(self.path)
        flavor = self.headers.get("Metadata-Flavor")
        self.server.requests.append((url.path, parse_qs(url.query), flavor))
        if not self.server.flavored or flavor != "Google":
            self.reply(403, b"forbidden", {})
        elif url.path == gce.IDENTITY_PATH:
            self.reply(200, id_token(parse_qs(url.query)["audience"][0]).encode(), {"Metadata-Flavor": "Google"})
        else:
            self.reply(200, b"computeMetadata/\n", {"Metadata-Flavor": "Google"})


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMetadata]:
    gce._pinged.cache_clear()  # Whether this host is on GCE is this test's to say, whatever the port.
    server = FakeMetadata()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    for name in (gce.HOST_ENV, gce.IP_ENV):
        monkeypatch.setenv(name, server.host)
    yield server
    server.shutdown()
    server.server_close()


def test_on_gce_the_default_hook_gives_the_vm_s_id_token_for_the_server_s_url(
        metadata: FakeMetadata, tmp_path: Path) -> None:
    view = BotView("bot-1", tmp_path, "https://swarming.example.com")

    assert Hooks().get_authentication_headers(view) == (
        {"Authorization": f"Bearer {id_token('https://swarming.example.com')}"}, float(EXPIRY))
    assert Hooks().get_authentication_headers(view)[1] == EXPIRY  # Asked again: the ping is not.

    ping, *identity = metadata.requests
    assert ping == ("/", {}, "Google")
    assert identity == [(gce.IDENTITY_PATH, {"audience": ["https://swarming.example.com"], "format": ["full"]},
                         "Google")] * 2


def test_off_gce_the_default_hook_gives_no_header_and_looks_once(metadata: FakeMetadata, tmp_path: Path) -> None:
    metadata.flavored = False
    view = BotView("bot-1", tmp_path, "https://swarming.example.com")

    assert Hooks().get_authentication_headers(view) == ({}, None)
    assert Hooks().get_authentication_headers(view) == ({}, None)

    assert [path for path, _, _ in metadata.requests] == ["/"]


def test_a_bot_on_gce_handshakes_with_its_vm_s_id_token(
        fake: FakeServer, metadata: FakeMetadata, tmp_path: Path) -> None:
    fake.script("bot_handshake", handshake("bot-token-1"))
    fake.script("bot_poll", sleep(0.01))

    finish(start(fake, tmp_path / "bot", "--once"))

    assert [auth for _, _, auth in fake.calls] == [
        f"Bearer {id_token(fake.url)}", "Bearer bot-token-1", "Bearer bot-token-1"]
