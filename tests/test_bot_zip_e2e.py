"""The bot from its real zip, end to end, on one detached local stack
(`swarming local up --detach --bots 1`): its bot starts as on a new host, from
a bootstrap token and the zip `bot_code` serves, and the tests change the bot
code on the server (the default hooks of the sources it builds the zip from,
part of the zip's digest) to watch the bot update itself, refuse a broken
version, quarantine itself by a hook, and end through `bot_terminate`.

The tests run in order, each on what the previous left: every one but the
last leaves the bot idle, alive, on good code. Waits are generous (90 s); no
test asserts how long anything took.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
import requests

from functions.bot_code import Sources
from local import processes
from local import stack as local_stack
from shared import local_state
from shared.bot_archive import digest, entries_of

REPO = Path(__file__).resolve().parents[1]
SWARMING = str(Path(sys.executable).with_name("swarming"))
BOT_ID = "local-bot-1"
WAIT_SECS = 90.0
DEFAULT_HOOKS = (REPO / "bot" / "default_bot_config.py").read_text(encoding="utf-8")
#: Another version of the hooks: the same behaviour, another digest.
HOOKS_B = DEFAULT_HOOKS + "\n# Version B of this server's hooks.\n"
#: is_fine imports bot_config.py: this version can never pass it.
BROKEN_HOOKS = DEFAULT_HOOKS + "\nraise RuntimeError('this bot code is broken on purpose')\n"
QUARANTINE_HOOKS = DEFAULT_HOOKS + '''

_default_get_state = get_state


def get_state(bot):
    state = _default_get_state(bot)
    state["quarantined"] = "test"
    return state
'''

T = TypeVar("T")


class Stack:
    """The running stack, called the way a user and an admin would."""

    def __init__(self, state_dir: Path, sources: Path):
        self.state_dir = state_dir
        self.sources = sources
        self.state = local_stack.read_state(state_dir)
        self.base_url = self.state["base_url"]
        #: The local user: an admin of local/config.
        self.token = local_state.id_token(state_dir, local_state.local_user(), self.base_url)
        self.hooks = sources / "bot" / "default_bot_config.py"
        self.bot_dir = state_dir / "bots" / BOT_ID
        self.bot_pid = next(p["pid"] for p in self.state["processes"] if p["name"] == BOT_ID)

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.base_url}/{function}", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, f"{function}: {response.status_code} {response.text}"
        return response.json()

    def bot(self) -> dict[str, Any]:
        return self.call("bot_get", {"bot_id": BOT_ID})

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.call("bot_events", {"bot_id": BOT_ID, "limit": 100})["items"]
                if e["event_type"] == event_type]

    def served_version(self) -> str:
        """The version `bot_code` redirects to (one of the gateway's workers)."""
        response = requests.get(f"{self.base_url}/bot_code", allow_redirects=False, timeout=30,
                                headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 302, response.text
        return urllib.parse.parse_qs(urllib.parse.urlparse(response.headers["Location"]).query)["version"][0]

    def serve(self, hooks: str) -> str:
        """Makes `hooks` the zip's default hooks; returns the new version,
        worked out as the server does (same sources, same installed packages)."""
        self.hooks.write_text(hooks, encoding="utf-8")
        return digest(Sources(root=self.sources).entries(self.base_url, "dev"))

    @contextlib.contextmanager
    def serving(self, hooks: str) -> Iterator[str]:
        """Serves `hooks` within the block (its version), then again what
        was served before it, whichever test served that."""
        before = self.hooks.read_text(encoding="utf-8")
        try:
            yield self.serve(hooks)
        finally:
            self.serve(before)

    def swarming(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([SWARMING, *args[:1], "--state-dir", str(self.state_dir), *args[1:]],
                              capture_output=True, text=True, timeout=WAIT_SECS + 30)

    def run_hi(self) -> None:
        """A task the bot must run: `swarming run` exits 0 and prints hi."""
        done = self.swarming("run", "-d", "pool=default", "--", "python3", "-c", "print('hi')")
        assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr


def wait_for(what: str, probe: Callable[[], T], timeout: float = WAIT_SECS) -> T:
    """Polls `probe` until it returns something true; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"still waiting for {what} after {timeout:.0f} s"
        time.sleep(0.5)


def zip_version(path: Path) -> str:
    return digest(entries_of(path.read_bytes()))


def is_running(pid: int) -> bool:
    found = processes.stat(pid)
    return found is not None and found.state != "Z"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module. The bot code is built from a copy of bot/
    and shared/ (SWARMING_BOT_SOURCE_DIR), rechecked by the server every
    second, so that the tests change it there, and editing the checkout
    meanwhile changes no version. Always brought down, leaving no process."""
    root = tmp_path_factory.mktemp("bot-zip")
    sources = root / "sources"
    for package in ("bot", "shared"):
        shutil.copytree(REPO / package, sources / package, ignore=shutil.ignore_patterns("__pycache__"))
    state_dir = root / "stack"
    up = subprocess.run([SWARMING, "local", "up", "--detach", "--bots", "1", "--state-dir", str(state_dir)],
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "SWARMING_BOT_CODE_RECHECK_SECS": "1",
                             "SWARMING_BOT_SOURCE_DIR": str(sources)})
    pids = [p["pid"] for p in (local_stack.read_state(state_dir) or {"processes": []})["processes"]]
    try:
        assert up.returncode == 0, up.stderr
        yield Stack(state_dir, sources)
    finally:
        local_stack.down(state_dir)
        left = [pid for pid in pids if is_running(pid) or processes.group_members(pid)]
        for pid in left:
            processes.stop(pid, grace=1)
        assert not left, f"processes left by swarming local down: {left}"


def test_a_bot_started_from_a_bootstrap_token_runs_tasks(stack: Stack):
    version = stack.served_version()
    assert version == zip_version(stack.bot_dir / "swarming_bot.zip")  # downloaded by the bootstrap script
    assert zip_version(stack.bot_dir / "swarming_bot.1.zip") == version  # start_bot's self-copy, run from
    assert stack.bot()["version"] == version
    stack.run_hi()
    shown = subprocess.run(["python3", "swarming_bot.zip", "version"], cwd=stack.bot_dir, capture_output=True,
                           text=True, timeout=60)
    assert shown.stdout == version + "\n", shown.stderr
    config = subprocess.run(["python3", "swarming_bot.zip", "config"], cwd=stack.bot_dir, capture_output=True,
                            text=True, timeout=60)
    assert json.loads(config.stdout)["server"] == stack.base_url, config.stderr


def test_the_idle_bot_updates_itself_to_new_code_and_keeps_running_tasks(stack: Stack):
    old = stack.bot()["version"]
    new = stack.serve(HOOKS_B)
    assert new != old
    wait_for("the bot on the new version", lambda: stack.bot()["version"] == new)
    assert zip_version(stack.bot_dir / "swarming_bot.2.zip") == new
    assert is_running(stack.bot_pid)  # the same process, exec'd into the new code
    stack.run_hi()
    # A task ran on the new code: it becomes the last known good copy.
    wait_for("the new code as the LKGBC", lambda: zip_version(stack.bot_dir / "swarming_bot.zip") == new)


def test_a_broken_version_is_refused_and_the_bot_keeps_its_code(stack: Stack):
    good = stack.bot()["version"]
    with stack.serving(BROKEN_HOOKS) as broken:
        refused = wait_for("the bot_error of the refused update", lambda: [
            e for e in stack.events("bot_error") if broken in e.get("message", "")])
        assert "not fine" in refused[0]["message"], refused
        assert stack.bot()["version"] == good and is_running(stack.bot_pid)
        assert zip_version(stack.bot_dir / "swarming_bot.zip") == good
        # The bot reports the version it refused, so the server hands it tasks
        # on its good code while the broken one is still the server's.
        stack.run_hi()
        assert broken in stack.bot()["state"]["refused_versions"]
    stack.run_hi()
    assert stack.bot()["version"] == good


def test_a_hook_quarantines_the_bot_and_restoring_the_hooks_releases_it(stack: Stack):
    good = stack.bot()["version"]
    with stack.serving(QUARANTINE_HOOKS) as quarantining:
        wait_for("the bot on the quarantining hooks", lambda: stack.bot()["version"] == quarantining)
        wait_for("the bot quarantined", lambda: stack.bot()["quarantined"])
        assert stack.bot()["state"]["quarantined"] == "test"
        triggered = stack.swarming("trigger", "-d", "pool=default", "--", "python3", "-c", "print('hi')")
        assert triggered.returncode == 0, triggered.stderr
        task_id = triggered.stdout.strip()
        time.sleep(5)  # a few polls of the quarantined bot: it gets no task
        assert stack.call("task_result", {"task_id": task_id})["state"] == "PENDING"
    wait_for("the bot back on the normal hooks", lambda: stack.bot()["version"] == good)
    wait_for("the bot out of quarantine", lambda: not stack.bot()["quarantined"])
    collected = stack.swarming("collect", "--timeout", str(int(WAIT_SECS)), "--json", task_id)
    assert collected.returncode == 0, collected.stderr
    [result] = json.loads(collected.stdout)
    assert (result["state"], result["bot_id"], result["output"]) == ("COMPLETED", BOT_ID, "hi\n")


def test_bot_terminate_ends_the_bot_and_its_termination_task(stack: Stack):
    stack.run_hi()  # the bot polls again soon after a task: the termination is seen early
    task_id = stack.call("bot_terminate", {"bot_id": BOT_ID, "reason": "end of the test"})["task_id"]
    wait_for("the bot process to exit", lambda: not is_running(stack.bot_pid))
    assert processes.group_members(stack.bot_pid) == []
    result = stack.call("task_result", {"task_id": task_id})
    assert (result["state"], result["exit_code"], result["bot_id"]) == ("COMPLETED", 0, BOT_ID)
    assert any("terminated" in e.get("message", "") for e in stack.events("bot_shutdown"))
