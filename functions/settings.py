"""Server settings: `SWARMING_*` environment variables, then documented defaults."""

import dataclasses
import os

from shared.errors import SwarmingError


class SettingsError(SwarmingError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a function instance reads from its environment. Who may do what,
    and which bots may connect, is the service configuration instead
    (functions.config_source), which changes without a restart."""

    project: str
    bucket: str
    server_version: str = "dev"
    #: How often a function instance writes the bots it saw (functions.bot_liveness).
    sightings_flush_secs: float = 30.0
    #: A bot not seen for this long is dead (PROTOCOL.md).
    bot_death_timeout_secs: int = 600
    #: The base URL the functions are reached at, which timers call back.
    functions_url: str = ""
    #: The Cloud Tasks queue of the timers: projects/P/locations/L/queues/Q.
    tasks_queue: str = ""
    #: host:port of the local Cloud Tasks emulator; empty in production.
    tasks_emulator_host: str = ""
    #: The service account Cloud Tasks and Cloud Scheduler call the functions as.
    service_account: str = ""
    #: Where the certificates of ID tokens are; Google's unless on the local stack.
    id_token_certs_url: str = ""
    #: How long a successful idempotent task is reused (Swarming: 7 days).
    dedup_max_age_secs: int = 7 * 24 * 3600
    #: The key of the tokens the server signs (bootstrap, bot and run tokens):
    #: from the environment (Secret Manager in production), never a file.
    token_secret: str = dataclasses.field(default="", repr=False)
    #: Proxies in front of the functions that append the client's address to
    #: X-Forwarded-For (Google's front end: 1); 0: the connection's address.
    trusted_proxy_hops: int = 0
    #: The directory holding `bot/` and `shared/` the bot zip is built from;
    #: the repository when empty.
    bot_source_dir: str = ""
    #: How often an instance looks at the bot code's files for a change.
    bot_code_recheck_secs: float = 10.0
    #: The Cloud Storage API endpoint signed URLs point at: the emulator's on the local stack.
    storage_url: str = "https://storage.googleapis.com"
    #: A service-account key file (JSON) that signs CAS URLs locally; when
    #: empty, the runtime's own service account signs through IAM signBlob.
    signing_key_file: str = ""
    #: How long a signed CAS URL is valid.
    cas_url_ttl_secs: int = 1800

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            project=_required("SWARMING_PROJECT"),
            bucket=_required("SWARMING_BUCKET"),
            server_version=os.environ.get("SWARMING_SERVER_VERSION", "dev"),
            sightings_flush_secs=float(os.environ.get("SWARMING_SIGHTINGS_FLUSH_SECS", "30")),
            bot_death_timeout_secs=int(os.environ.get("SWARMING_BOT_DEATH_TIMEOUT_SECS", "600")),
            functions_url=os.environ.get("SWARMING_FUNCTIONS_URL", ""),
            tasks_queue=os.environ.get("SWARMING_TASKS_QUEUE", ""),
            tasks_emulator_host=os.environ.get("SWARMING_TASKS_EMULATOR_HOST", ""),
            service_account=os.environ.get("SWARMING_SERVICE_ACCOUNT", ""),
            id_token_certs_url=os.environ.get("SWARMING_ID_TOKEN_CERTS_URL", ""),
            dedup_max_age_secs=int(os.environ.get("SWARMING_DEDUP_MAX_AGE_SECS", str(7 * 24 * 3600))),
            token_secret=os.environ.get("SWARMING_TOKEN_SECRET", ""),
            trusted_proxy_hops=int(os.environ.get("SWARMING_TRUSTED_PROXY_HOPS", "0")),
            bot_source_dir=os.environ.get("SWARMING_BOT_SOURCE_DIR", ""),
            bot_code_recheck_secs=float(os.environ.get("SWARMING_BOT_CODE_RECHECK_SECS", "10")),
            storage_url=os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com",
            signing_key_file=os.environ.get("SWARMING_SIGNING_KEY_FILE", ""),
            cas_url_ttl_secs=int(os.environ.get("SWARMING_CAS_URL_TTL_SECS", "1800")),
        )


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SettingsError(f"environment variable {name} is not set")
    return value
