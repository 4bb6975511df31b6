"""`swarming reproduce` against the real gateway and storage emulator: a
task's inputs come from the store, its command runs here with its env, env
prefixes and relative cwd, its output streams and its exit code is ours."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import cli
from client.reproduce_cli import environment
from shared.task_properties import TaskProperties
from tests.builders import task_body
from tests.test_end_to_end import finish, server_args, swarming

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")

#: Found through the env prefix on PATH; runs in w/src.
GREET = """#!/bin/sh
echo "cwd=$(pwd)"
echo "greeting=$GREETING"
echo "arg=$1"
cat ../data.txt
echo made > "$ISOLATED_OUTDIR/made.txt"
echo "to stderr" >&2
exit 7
"""


def _task_with_inputs(api, base_url, tmp_path: Path) -> str:
    inputs = tmp_path / "inputs"
    (inputs / "bin").mkdir(parents=True)
    (inputs / "src").mkdir()
    (inputs / "bin" / "greet").write_text(GREET)
    (inputs / "bin" / "greet").chmod(0o755)
    (inputs / "data.txt").write_text("input data\n")
    archived = CliRunner().invoke(cli, ["archive", "--server", base_url, str(inputs)])
    assert archived.exit_code == 0, archived.output
    hash_, size = archived.stdout.strip().split("/")
    body = task_body(command=["greet", "${ISOLATED_OUTDIR}"])
    body["task_slices"][0]["properties"].update(
        relative_cwd="src", env=[{"key": "GREETING", "value": "hello"}],
        env_prefixes=[{"key": "PATH", "value": ["bin"]}],
        cas_input_root={"digest": {"hash": hash_, "size_bytes": int(size)}},
        caches=[{"name": "git", "path": "cache/git"}])
    return api.ok("tasks_new", body)["task_id"]


def test_reproduce_runs_the_command_with_its_inputs_env_prefix_and_cwd(api, base_url, tmp_path):
    task_id = _task_with_inputs(api, base_url, tmp_path)
    work = tmp_path / "work"

    code, out, err = finish(swarming("reproduce", *server_args(base_url), task_id, "--work", str(work), "--leak"))

    assert code == 7, err
    assert out.splitlines() == [f"cwd={work.resolve() / 'w' / 'src'}", "greeting=hello",
                                 f"arg={work.resolve() / 'out'}", "input data"]
    assert "to stderr" in err and f"kept {work}" in err
    assert (work / "out" / "made.txt").read_text() == "made\n"
    assert (work / "w" / "cache" / "git").is_dir()


def test_without_leak_the_directory_is_removed(api, base_url, tmp_path):
    task_id = _task_with_inputs(api, base_url, tmp_path)
    work = tmp_path / "work"
    code, _, err = finish(swarming("reproduce", *server_args(base_url), task_id, "--work", str(work)))
    assert code == 7, err
    assert not work.exists() and "kept" not in err


def test_reproduce_failures_are_readable(api, base_url, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    task_id = api.ok("tasks_new", task_body())["task_id"]
    busy = CliRunner().invoke(cli, ["reproduce", "--server", base_url, task_id, "--work", str(tmp_path / "full")])
    assert busy.exit_code == 2 and "is not empty" in busy.stderr
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"

    unknown = CliRunner().invoke(cli, ["reproduce", "--server", base_url, "1" * 15 + "0"])
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no task")

    missing = task_body(command=["no-such-command-here"])
    missing_id = api.ok("tasks_new", missing)["task_id"]
    result = CliRunner().invoke(cli, ["reproduce", "--server", base_url, missing_id])
    assert result.exit_code == 1 and "cannot run no-such-command-here in " in result.stderr


def test_a_command_killed_by_a_signal_exits_128_plus_it(api, base_url):
    task_id = api.ok("tasks_new", task_body(command=["sh", "-c", "kill -TERM $$"]))["task_id"]
    code, _, err = finish(swarming("reproduce", *server_args(base_url), task_id))
    assert code == 128 + 15, err


def test_env_prefixes_go_before_what_the_variable_held(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    props = TaskProperties(command=["x"], dimensions={}, env={"OUT": "${ISOLATED_OUTDIR}/o"},
                           execution_timeout_secs=1, env_prefixes={"PATH": ["a", "b/c"], "PYTHONPATH": ["lib"]})
    env = environment(props, Path("/w"), Path("/out"))
    assert env["PATH"] == os.pathsep.join(["/w/a", "/w/b/c", "/usr/bin"])
    assert env["PYTHONPATH"] == "/w/lib" and env["OUT"] == "/out/o" and env["ISOLATED_OUTDIR"] == "/out"



def test_a_task_with_secret_bytes_runs_without_them_and_says_so(api, base_url):
    body = task_body(command=["sh", "-c", 'echo "ctx=${LUCI_CONTEXT:-none}"'])
    body["task_slices"][0]["properties"]["secret_bytes"] = "c2VjcmV0"  # "secret"
    task_id = api.ok("tasks_new", body)["task_id"]
    code, out, err = finish(swarming("reproduce", *server_args(base_url), task_id, env={**os.environ,
                                                                                         "LUCI_CONTEXT": ""}))
    assert code == 0, err
    assert out == "ctx=none\n" and "secret bytes, which the server never hands out" in err
    assert "secret" not in out and "c2VjcmV0" not in out + err
