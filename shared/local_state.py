"""The local stack's state directory, as far as the CLI reads it.

`swarming local up` (local/stack.py) writes the directory; the CLI reads it to
reach the local stack without --server or --token. The names live here because
client/ may not import local/. Two files matter to both:

    stack.json   what runs, with `base_url`, the gateway's BASE_URL
    config.json  the functions' auth config: `tokens`, token -> {role, name}
"""

import json
from pathlib import Path
from typing import Any

#: Where the state directory is, unless --state-dir or DIR_ENV says otherwise.
DEFAULT_DIR = ".local"
DIR_ENV = "SWARMING_LOCAL_DIR"
STACK_FILE = "stack.json"
CONFIG_FILE = "config.json"


def stack_path(state_dir: Path) -> Path:
    return Path(state_dir) / STACK_FILE


def config_path(state_dir: Path) -> Path:
    return Path(state_dir) / CONFIG_FILE


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The recorded stack (stack.json), or None when none was started."""
    try:
        return json.loads(stack_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def token_for(state_dir: Path, role: str) -> str:
    """The token of `role` in the stack's config.json; KeyError when it has none."""
    path = config_path(state_dir)
    config = json.loads(path.read_text(encoding="utf-8"))
    for token, entry in config["tokens"].items():
        if entry.get("role") == role:
            return token
    raise KeyError(f"no {role} token in {path}")
