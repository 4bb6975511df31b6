"""Which bots the server admits, and as whom (functions/bot_auth.py), over
real HTTP with credentials minted as production mints them; and a service
configuration pushed while the functions run: in effect without a restart,
a bad one refused by file and line."""

from typing import Any

import pytest
import requests
from click.testing import CliRunner

from client.cli import cli
from functions import config_source
from functions.config_source import ConfigSource
from shared import service_config
from shared.bot_api import BOT_TOKEN_HEADER
from tests.builders import bot_body, task_body
from tests.conftest import CONFIG_DIR, PEOPLE, Tokens

BOTS_SA = "bots@test.iam.gserviceaccount.com"  # The service account of tests/config's group authz-sa.


def post(base_url: str, function: str, body: dict[str, Any], token: str | None,
         **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{base_url}/{function}", json=body, headers=headers, timeout=30)


def handshake(base_url: str, bot_id: str, token: str, **headers: str) -> requests.Response:
    return post(base_url, "bot_handshake", bot_body(bot_id), token, **headers)


#: tests/config's default group, which holds every bot id no other group does.
DEFAULT_GROUP = '\n[[bot_group]]\nname = "default"\ndimensions = ["pool:default"]\n[bot_group.auth]\nbootstrap = true\n'


def without_default_group() -> dict[str, str]:
    files = config_with()
    assert DEFAULT_GROUP in files["bots.toml"]
    files["bots.toml"] = files["bots.toml"].replace(DEFAULT_GROUP, "\n")
    return files


def config_with(**replaced: str) -> dict[str, str]:
    """tests/config/'s files, with some of them replaced (or extended: a
    value starting with '+' is appended)."""
    files = service_config.read_dir(CONFIG_DIR)
    for name, text in replaced.items():
        files[name] = files[name] + text[1:] if text.startswith("+") else text
    return files


def push(base_url: str, tokens: Tokens, files: dict[str, str]) -> requests.Response:
    return post(base_url, "config_push", {"files": files}, tokens["admin"])


# Admission.

def test_a_bootstrap_token_is_exchanged_at_the_handshake_for_the_bot_s_own_token(
        svc, base_url: str, tokens: Tokens) -> None:
    bootstrap = tokens.bootstrap()

    admitted = handshake(base_url, "e2e-1", bootstrap)

    assert admitted.status_code == 200, admitted.text
    bot_token = admitted.headers[BOT_TOKEN_HEADER]
    assert bot_token.startswith("swbt1.") and admitted.json()["bot_group_cfg"]["dimensions"] == {"pool": ["e2e"]}
    polled = post(base_url, "bot_poll", bot_body("e2e-1", session=admitted.json()["session"]), bot_token)
    assert polled.status_code == 200 and polled.headers[BOT_TOKEN_HEADER].startswith("swbt1.")
    # The bootstrap token opens handshakes only; the bot token is e2e-1's only.
    assert post(base_url, "bot_poll", bot_body("e2e-1"), bootstrap).status_code == 403
    other = post(base_url, "bot_poll", bot_body("e2e-2"), bot_token)
    assert other.status_code == 403 and "acts only as itself" in other.json()["error"]["message"]


def test_a_service_account_group_admits_its_account_s_id_token_only(svc, base_url: str, tokens: Tokens) -> None:
    assert handshake(base_url, "sa-1", tokens.person(BOTS_SA)).status_code == 200
    for token in (tokens.person("intruder@test.iam.gserviceaccount.com"), tokens.bootstrap(),
                  tokens.person(PEOPLE["admin"])):
        refused = handshake(base_url, "sa-1", token)
        assert refused.status_code == 403, refused.text
        assert "bot group 'authz-sa' does not accept" in refused.json()["error"]["message"]


def test_a_bot_id_no_group_holds_is_refused(svc, base_url: str, tokens: Tokens) -> None:
    assert push(base_url, tokens, without_default_group()).status_code == 200

    refused = handshake(base_url, "stranger-1", tokens.bootstrap())

    assert refused.status_code == 403 and "no bot group" in refused.json()["error"]["message"]


def test_a_group_s_networks_admit_only_calls_from_them(svc, base_url: str, tokens: Tokens) -> None:
    lab = '+\n[[bot_group]]\nname = "lab"\nbot_id_prefix = ["lab-"]\ndimensions = ["pool:e2e"]\n' \
          '[bot_group.auth]\nbootstrap = true\nip_allowlist = ["10.0.0.0/8"]\n' \
          '\n[[bot_group]]\nname = "loopback"\nbot_id_prefix = ["loop-"]\ndimensions = ["pool:e2e"]\n' \
          '[bot_group.auth]\nbootstrap = true\nip_allowlist = ["127.0.0.0/8", "::1/128"]\n'
    assert push(base_url, tokens, config_with(**{"bots.toml": lab})).status_code == 200

    # The tests' server trusts no proxy: a forwarded address proves nothing.
    refused = handshake(base_url, "lab-1", tokens.bootstrap(), **{"X-Forwarded-For": "10.1.2.3"})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "bot group 'lab' does not admit calls from 127.0.0.1"
    assert handshake(base_url, "loop-1", tokens.bootstrap()).status_code == 200


# A pushed configuration, while the functions run.

def test_a_pushed_pool_acl_takes_effect_without_a_restart(svc, base_url: str, tokens: Tokens) -> None:
    task = post(base_url, "tasks_new", task_body(dimensions={"pool": "authz"}),
                tokens.person("scheduler@example.com")).json()["task_id"]
    newcomer = tokens.person("newcomer@example.com")
    refused = post(base_url, "task_result", {"task_id": task}, newcomer)
    assert refused.status_code == 403, refused.text

    files = config_with()
    files["pools.toml"] = files["pools.toml"].replace(
        'viewers = ["user:viewer@example.com"]', 'viewers = ["user:viewer@example.com", "user:newcomer@example.com"]')
    pushed = push(base_url, tokens, files)

    assert pushed.status_code == 200 and pushed.json()["version"]
    assert post(base_url, "task_result", {"task_id": task}, newcomer).status_code == 200
    assert post(base_url, "tasks_new", task_body(dimensions={"pool": "authz"}), newcomer).status_code == 403


def test_a_pushed_bot_group_admits_its_bots_without_a_restart(svc, base_url: str, tokens: Tokens) -> None:
    files = without_default_group()
    assert push(base_url, tokens, files).status_code == 200
    assert handshake(base_url, "fresh-1", tokens.bootstrap()).status_code == 403

    files["bots.toml"] += '\n[[bot_group]]\nname = "fresh"\nbot_id_prefix = ["fresh-"]\n' \
                          'dimensions = ["pool:e2e"]\n[bot_group.auth]\nbootstrap = true\n'
    assert push(base_url, tokens, files).status_code == 200

    assert handshake(base_url, "fresh-1", tokens.bootstrap()).status_code == 200


def test_a_bot_whose_group_changed_is_told_to_restart_then_admitted_under_its_new_group(
        svc, base_url: str, tokens: Tokens) -> None:
    admitted = handshake(base_url, "e2e-7", tokens.bootstrap())
    bot_token = admitted.headers[BOT_TOKEN_HEADER]
    moved = config_with(**{"bots.toml": '+\n[[bot_group]]\nname = "seven"\nbot_id = ["e2e-7"]\n'
                                        'dimensions = ["pool:nightly"]\n[bot_group.auth]\nbootstrap = true\n'})
    assert push(base_url, tokens, moved).status_code == 200

    polled = post(base_url, "bot_poll", bot_body("e2e-7"), bot_token)
    assert polled.status_code == 200
    assert polled.json()["cmd"] == "bot_restart" and "'seven'" in polled.json()["message"], polled.json()
    # The restarted bot handshakes with its bot token, under its new group.
    again = handshake(base_url, "e2e-7", bot_token)
    assert again.status_code == 200 and again.json()["bot_group_cfg"]["dimensions"] == {"pool": ["nightly"]}
    renewed = again.headers[BOT_TOKEN_HEADER]
    assert post(base_url, "bot_poll", bot_body("e2e-7"), renewed).json()["cmd"] != "bot_restart"
    # Bots its change did not touch carry on.
    other = handshake(base_url, "e2e-8", tokens.bootstrap()).headers[BOT_TOKEN_HEADER]
    assert post(base_url, "bot_poll", bot_body("e2e-8"), other).json()["cmd"] != "bot_restart"


def test_another_instance_takes_a_push_at_its_next_refresh(svc) -> None:
    """The instance that pushed sees it at once; another, within REFRESH_SECS."""
    now = [0.0]
    other = ConfigSource(lambda: svc.bucket, clock=lambda: now[0])
    before = other.get()
    pushed = svc.service_config.push(config_with(**{"pools.toml": "+\n[pools.late]\n"}))

    assert svc.service_config.get().version == pushed.version != before.version
    now[0] += config_source.REFRESH_SECS - 1
    assert other.get().version == before.version
    now[0] += 1
    assert other.get().version == pushed.version


@pytest.mark.parametrize("files, where", [
    ({"pools.toml": "[pools.default\n"}, "pools.toml:1"),
    ({"pools.toml": '[pools.default]\nviewers = ["user:a@example.com"]\nschedulers = "everyone"\n'},
     "pools.toml:3: pools.default.schedulers"),
    ({"bots.toml": '+\n[[bot_group]]\nname = "e2e"\nbot_id_prefix = ["x-"]\ndimensions = ["pool:e2e"]\n'
                   '[bot_group.auth]\nbootstrap = true\n'}, "bots.toml:"),
])
def test_a_bad_config_is_refused_whole_by_file_and_line(svc, base_url: str, tokens: Tokens,
                                                        files: dict[str, str], where: str) -> None:
    before = svc.service_config.get().version

    refused = push(base_url, tokens, config_with(**files))

    assert refused.status_code == 400 and where in refused.json()["error"]["message"], refused.text
    assert svc.service_config.get().version == before


def test_swarming_config_push_checks_then_pushes(svc, base_url: str, tokens: Tokens, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SWARMING_TOKEN", tokens["admin"])
    directory = tmp_path / "config"
    directory.mkdir()
    for name, text in config_with(**{"pools.toml": "+\n[pools.late]\n"}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)

    pushed = CliRunner().invoke(cli, ["config", "push", str(directory), "--server", base_url, "--json"])

    assert pushed.exit_code == 0, pushed.output
    assert svc.service_config.get().pool("late") is not None
    (directory / "pools.toml").write_text("[pools.default]\nlifo = 3\n")
    refused = CliRunner().invoke(cli, ["config", "push", str(directory), "--server", base_url])
    assert refused.exit_code == 1 and "pools.toml:2: pools.default.lifo" in refused.output
    monkeypatch.setenv("SWARMING_TOKEN", tokens["user"])
    (directory / "pools.toml").write_text(config_with()["pools.toml"])
    forbidden = CliRunner().invoke(cli, ["config", "push", str(directory), "--server", base_url])
    assert forbidden.exit_code == 1 and "user:user@example.com is not an admin" in forbidden.output
