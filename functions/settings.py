"""Server settings: `SWARMING_*` environment variables, then documented defaults.

Each field names its variable in its metadata (`env`), so that the variables
the code reads are one list (`VARIABLES`): Terraform's environment of every
function is checked against it. A deployed function (Cloud Run sets
`K_SERVICE`) must also have those marked `deployed`, checked at start-up
(`check_deployed`) so that a missing one fails the deploy, naming it, rather
than the first request.
"""

import dataclasses
import os
import re
from typing import Any, Mapping

from shared.errors import SwarmingError

#: Set by Cloud Run, and so by Cloud Functions (2nd gen), in every instance.
DEPLOYED_MARKER = "K_SERVICE"


class SettingsError(SwarmingError):
    pass


def _env(name: str, default: Any = "", deployed: bool = False, **kwargs: Any) -> Any:
    """A field read from the environment variable `name`; `deployed`: required in a deployed function."""
    return dataclasses.field(default=default, metadata={"env": name, "deployed": deployed}, **kwargs)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a function instance reads from its environment. Who may do what,
    and which bots may connect, is the service configuration instead
    (functions.config_source), which changes without a restart."""

    project: str = _env("SWARMING_PROJECT", deployed=True)
    #: The bucket of the bot code, the CAS and the service configuration.
    bucket: str = _env("SWARMING_BUCKET", deployed=True)
    server_version: str = _env("SWARMING_SERVER_VERSION", "dev")
    #: How often a function instance writes the bots it saw (functions.bot_liveness).
    sightings_flush_secs: float = _env("SWARMING_SIGHTINGS_FLUSH_SECS", 30.0)
    #: A bot not seen for this long is dead (PROTOCOL.md).
    bot_death_timeout_secs: int = _env("SWARMING_BOT_DEATH_TIMEOUT_SECS", 600)
    #: The base URL the functions are reached at, which timers call back and
    #: the bot zip names; the request's when empty (the local stack only).
    functions_url: str = _env("SWARMING_FUNCTIONS_URL", deployed=True)
    #: The Cloud Tasks queue of the timers: projects/P/locations/L/queues/Q.
    tasks_queue: str = _env("SWARMING_TASKS_QUEUE", deployed=True)
    #: host:port of the local Cloud Tasks emulator; empty in production.
    tasks_emulator_host: str = _env("SWARMING_TASKS_EMULATOR_HOST")
    #: The service account Cloud Tasks and Cloud Scheduler call the functions as.
    service_account: str = _env("SWARMING_SERVICE_ACCOUNT", deployed=True)
    #: Where the certificates of ID tokens are; Google's unless on the local stack.
    id_token_certs_url: str = _env("SWARMING_ID_TOKEN_CERTS_URL")
    #: How long a successful idempotent task is reused (Swarming: 7 days).
    dedup_max_age_secs: int = _env("SWARMING_DEDUP_MAX_AGE_SECS", 7 * 24 * 3600)
    #: The key of the tokens the server signs (bootstrap, bot and run tokens):
    #: from the environment (Secret Manager in production), never a file.
    token_secret: str = _env("SWARMING_TOKEN_SECRET", deployed=True, repr=False)
    #: Proxies in front of the functions that append the client's address to
    #: X-Forwarded-For (Google's front end: 1); 0: the connection's address.
    trusted_proxy_hops: int = _env("SWARMING_TRUSTED_PROXY_HOPS", 0)
    #: The directory holding `bot/` and `shared/` the bot zip is built from;
    #: the repository when empty. Unused with `bot_zip`.
    bot_source_dir: str = _env("SWARMING_BOT_SOURCE_DIR")
    #: The bot zip of this release, built once by `infra/release.py`
    #: (relative to the working directory: the function's source root); when
    #: empty, the zip is built from `bot_source_dir` (the local stack).
    bot_zip: str = _env("SWARMING_BOT_ZIP", deployed=True)
    #: How often an instance looks at the bot code's files for a change.
    bot_code_recheck_secs: float = _env("SWARMING_BOT_CODE_RECHECK_SECS", 10.0)
    #: The Cloud Storage API endpoint signed URLs point at: the emulator's on the local stack.
    storage_url: str = _env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com")
    #: A service-account key file (JSON) that signs CAS URLs locally; when
    #: empty, the runtime's own service account signs through IAM signBlob.
    signing_key_file: str = _env("SWARMING_SIGNING_KEY_FILE")
    #: The IAM Credentials API that signs CAS URLs without a key file (a local
    #: stand-in in tests).
    iam_credentials_url: str = _env("SWARMING_IAM_CREDENTIALS_URL", "https://iamcredentials.googleapis.com")
    #: How long a signed CAS URL is valid.
    cas_url_ttl_secs: int = _env("SWARMING_CAS_URL_TTL_SECS", 1800)
    #: The longest a bot's poll is held open waiting for a task (functions.long_poll);
    #: below bot_poll's function timeout. 0: answer at once, bots back off as before.
    poll_hold_secs: float = _env("SWARMING_POLL_HOLD_SECS", 60.0)
    #: The most polls an instance holds on one queue; the bots beyond back off
    #: as before: a held poll keeps an instance billed, a sleeping bot does not.
    poll_holds_per_queue: int = _env("SWARMING_POLL_HOLDS_PER_QUEUE", 10)
    #: How long an instance's polls reuse the heads of queues it read
    #: (functions.heads); 0: every poll reads them.
    poll_reuse_secs: float = _env("SWARMING_POLL_REUSE_SECS", 1.0)
    #: The most Firestore commits an instance has in flight (0: no bound).
    #: For the emulator (functions.service.gate_commits); the local stack sets it.
    firestore_max_commits: int = _env("SWARMING_FIRESTORE_MAX_COMMITS", 0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(field.metadata["env"])
            if raw:
                values[field.name] = _parse(field, raw)
        missing = [f.metadata["env"] for f in dataclasses.fields(cls)
                   if f.name in ("project", "bucket") and f.name not in values]
        if missing:
            raise SettingsError(f"environment variable {missing[0]} is not set")
        return cls(**values)


def _parse(field: dataclasses.Field, raw: str) -> Any:
    kind = type(field.default)
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"environment variable {field.metadata['env']}: {raw!r} is not a {kind.__name__}") \
            from None


#: Every environment variable a function reads → its default ("" for none).
VARIABLES: dict[str, str] = {f.metadata["env"]: str(f.default) for f in dataclasses.fields(Settings)}
#: Read by functions-framework, not by this code: the threads of an instance's
#: gunicorn worker, one per request it serves at once (a held poll holds one).
FRAMEWORK_VARIABLES: tuple[str, ...] = ("THREADS",)
#: Those a deployed function must have.
DEPLOYED_VARIABLES: tuple[str, ...] = tuple(f.metadata["env"] for f in dataclasses.fields(Settings)
                                            if f.metadata["deployed"])
_QUEUE_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/queues/[^/]+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")


def deployed(environ: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get(DEPLOYED_MARKER))


def check_deployed(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of a deployed function, or a SettingsError naming every
    variable that is missing or malformed."""
    environ = os.environ if environ is None else environ
    problems = [f"{name} is not set" for name in DEPLOYED_VARIABLES if not environ.get(name)]
    if problems:
        raise SettingsError("this deployed function cannot start: " + "; ".join(problems))
    settings = Settings.from_env(environ)
    if settings.functions_url and not settings.functions_url.startswith(("https://", "http://")):
        problems.append(f"SWARMING_FUNCTIONS_URL: {settings.functions_url!r} is not an http(s) URL")
    if settings.tasks_queue and not _QUEUE_RE.match(settings.tasks_queue):
        problems.append(f"SWARMING_TASKS_QUEUE: {settings.tasks_queue!r} is not projects/P/locations/L/queues/Q")
    if settings.service_account and not _EMAIL_RE.match(settings.service_account):
        problems.append(f"SWARMING_SERVICE_ACCOUNT: {settings.service_account!r} is not a service account email")
    if settings.bot_zip and not os.path.isfile(settings.bot_zip):
        problems.append(f"SWARMING_BOT_ZIP: no file {settings.bot_zip} in the function's source")
    if problems:
        raise SettingsError("this deployed function cannot start: " + "; ".join(problems))
    return settings
