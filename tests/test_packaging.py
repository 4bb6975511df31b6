"""What each audience installs: `pip install .` gives the `swarming` CLI and
none of the functions' or the local stack's dependencies (`swarming local`
then says what to install); the requirement files agree on every pin, and the
functions pin every package the bot zip vendors, so that every function
instance builds the same zip."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from functions.bot_code import VENDORED

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = ["client/requirements.txt", "functions/requirements.txt", "local/requirements.txt",
                "requirements-dev.txt"]
#: What the CLI must not bring: the functions' and the local stack's dependencies.
NOT_FOR_THE_CLI = re.compile(r"^(functions-framework|google-cloud-.*|gunicorn|cryptography|grpcio)$")
INSTALL_SECS = 120


@pytest.fixture(scope="module")
def cli_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the project installed without extras, from a
    copy of the repository: pip builds in the source tree (build/, *.egg-info)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    # Hidden entries are .git, .venv, .local and caches, none of them part of the project.
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_SECS)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)],
                   check=True, timeout=INSTALL_SECS, env=_outside_env())
    return venv


def _outside_env() -> dict[str, str]:
    """The environment without anything that would find the repository's modules."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _swarming(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "swarming"), *args], capture_output=True, text=True, cwd=cwd,
                          env=_outside_env(), timeout=60)


def test_pip_install_gives_the_cli_and_nothing_of_the_functions_or_the_local_stack(cli_venv, tmp_path):
    listed = subprocess.run([str(cli_venv / "bin" / "pip"), "list", "--format=json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"click", "requests", "urllib3", "serverless-swarming"} <= installed
    assert sorted(filter(NOT_FOR_THE_CLI.match, installed)) == []
    result = _swarming(cli_venv, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("trigger", "collect", "run", "archive", "download", "bots", "bot", "local"):
        assert re.search(rf"^  {command} +\S", result.stdout, re.MULTILINE), command


def test_swarming_local_without_its_extra_says_what_to_install(cli_venv, tmp_path):
    result = _swarming(cli_venv, "local", "up", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "'swarming local' needs the project's 'local' extra" in result.stderr
    assert "functions-framework" in result.stderr and "pip install '.[local]'" in result.stderr
    assert not (tmp_path / ".local").exists()


def test_the_cli_alone_finds_no_local_stack_and_says_so(cli_venv, tmp_path):
    result = _swarming(cli_venv, "collect", "0123456789abcdef0", cwd=tmp_path)
    assert result.returncode == 2
    assert "no --server given and no local stack runs in .local" in result.stderr


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        if line and not line.startswith(("#", "-r ")):
            name, sep, version = line.partition("==")
            assert sep and version, f"{path}: {line!r} is not pinned"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_requirement_is_pinned_alike_in_every_file():
    seen: dict[str, tuple[str, str]] = {}
    for path in REQUIREMENTS:
        for name, version in _pins(path).items():
            first = seen.setdefault(name, (version, path))
            assert first[0] == version, f"{name}: {version} in {path}, {first[0]} in {first[1]}"


def test_the_functions_pin_every_package_the_bot_zip_vendors():
    pins = _pins("functions/requirements.txt")
    assert [name for name in VENDORED if name.replace("_", "-") not in pins] == []
