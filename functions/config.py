"""Server settings: `SWARMING_*` environment variables, then documented defaults."""

import dataclasses
import json
import os
from typing import Any

from shared.errors import SwarmingError


class ConfigError(SwarmingError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    project: str
    bucket: str
    #: The local config file (tokens and their roles).
    config_path: str
    server_version: str = "dev"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            project=_required("SWARMING_PROJECT"),
            bucket=os.environ.get("SWARMING_BUCKET", "swarming-local"),
            config_path=_required("SWARMING_CONFIG"),
            server_version=os.environ.get("SWARMING_SERVER_VERSION", "dev"),
        )

    def load_config(self) -> dict[str, Any]:
        with open(self.config_path, encoding="utf-8") as f:
            return json.load(f)


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value
