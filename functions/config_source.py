"""The service configuration as a function instance sees it.

The config (pools, bot groups, settings, the bots' hooks scripts: see
`shared.service_config`) is one Cloud Storage object, `config/service.json`,
that the deployment or `config_push` (`swarming config push`) writes whole,
so that no reader sees a mix of two versions. Each instance keeps the one it
read and looks again when it is more than `REFRESH_SECS` old: one metadata
request (its generation) when nothing changed. A pushed change takes effect
within a minute, without a restart, and costs no Firestore read.
"""

import json
import logging
import threading
import time
from typing import Any, Callable, Mapping

from google.api_core import exceptions as gexc

from functions.errors import Unavailable
from shared import service_config
from shared.errors import ConfigError, ValidationError
from shared.service_config import ServiceConfig

logger = logging.getLogger(__name__)

OBJECT = "config/service.json"
REFRESH_SECS = 30.0


class ConfigSource:
    def __init__(self, bucket: Callable[[], Any], clock: Callable[[], float] = time.monotonic,
                 refresh_secs: float = REFRESH_SECS):
        self._bucket = bucket  # Made on first use.
        self._clock = clock
        self._refresh_secs = refresh_secs
        self._lock = threading.Lock()
        #: (generation, config) of the object last read; None before the first read.
        self._current: tuple[int, ServiceConfig] | None = None
        self._checked_at = -float("inf")

    def get(self) -> ServiceConfig:
        """The current config; Unavailable (503) when none was ever pushed."""
        with self._lock:
            if self._current is None or self._clock() - self._checked_at >= self._refresh_secs:
                self._refresh()
            assert self._current is not None
            return self._current[1]

    def _refresh(self) -> None:
        """Reads the object again if its generation changed; a failure keeps
        what was read before (logged), unless nothing was."""
        try:
            blob = self._bucket().get_blob(OBJECT)
            if blob is None:
                raise LookupError(f"no service configuration: push one (swarming config push) to {OBJECT}")
            if self._current is None or blob.generation != self._current[0]:
                body = json.loads(blob.download_as_bytes(if_generation_match=blob.generation))
                self._current = (blob.generation, service_config.parse(service_config.from_wire(body)))
                logger.info("service configuration %s (generation %s)", self._current[1].version, blob.generation)
        except (gexc.GoogleAPIError, LookupError, ValueError, ConfigError, ValidationError) as e:
            if self._current is None:
                raise Unavailable(f"the service configuration cannot be read: {e}") from e
            logger.error("keeping service configuration %s: %s", self._current[1].version, e)
        self._checked_at = self._clock()

    def push(self, files: Mapping[str, str]) -> ServiceConfig:
        """Checks `files` whole (ConfigError lists every problem) and makes
        them the current config; the next `get` of every instance sees them."""
        config = service_config.parse(files)
        body = json.dumps(service_config.to_wire(files), sort_keys=True).encode()
        self._bucket().blob(OBJECT).upload_from_string(body, content_type="application/json")
        with self._lock:
            self._checked_at = -float("inf")  # This instance sees it at once.
        return config
