"""What every handler needs: settings, the store, the authenticator and a clock.

Built lazily on first use from the environment (no client at import time), once
per function instance; tests swap in their own with `use()`.
"""

import contextlib
import datetime
import functools
from pathlib import Path
from typing import Callable, Iterator

import requests.adapters
from google.cloud import firestore, storage

from functions import cas
from functions.auth import GOOGLE_CERTS_URL, Authenticator, IdTokens
from functions.bootstrap import BootstrapTokens
from functions.bot_code import BotCodeCache, Sources
from functions.fleet import Fleet
from functions.context import Context
from functions.config import ServerConfig, Settings
from functions.bot_store import BotStore
from functions.bot_registry import Registry
from functions.bot_liveness import Sightings
from functions.queues import QueueCache
from functions.store import Store
from functions.timers import TimerSettings, Timers, make_client


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Service:
    def __init__(self, settings: Settings, clock: Callable[[], datetime.datetime] = utcnow):
        self.settings = settings
        self.clock = clock

    @functools.cached_property
    def store(self) -> Store:
        return Store(firestore.Client(project=self.settings.project))

    @functools.cached_property
    def bot_store(self) -> BotStore:
        return BotStore(self.store.db)

    @functools.cached_property
    def registry(self) -> Registry:
        return Registry(self.bot_store, Sightings(self.settings.sightings_flush_secs))

    @functools.cached_property
    def context(self) -> Context:
        return Context(store=self.store, bots=self.bot_store, timers=self.timers, queues=self.queue_cache,
                       lifo_pools=self.config.lifo_pools, dedup_max_age_secs=self.settings.dedup_max_age_secs)

    @functools.cached_property
    def fleet(self) -> Fleet:
        return Fleet(self.bot_store, self.settings.bot_death_timeout_secs)

    @functools.cached_property
    def queue_cache(self) -> QueueCache:
        return QueueCache()

    @functools.cached_property
    def _config_file(self) -> dict:
        return self.settings.load_config()

    @functools.cached_property
    def config(self) -> ServerConfig:
        return ServerConfig.from_json(self._config_file)

    @functools.cached_property
    def auth(self) -> Authenticator:
        settings = self.settings
        id_tokens = None
        if settings.service_account:
            id_tokens = IdTokens(settings.service_account, settings.id_token_certs_url or GOOGLE_CERTS_URL)
        return Authenticator(self._config_file, id_tokens, self.bootstrap_tokens)

    @functools.cached_property
    def bootstrap_tokens(self) -> BootstrapTokens | None:
        """None when no secret is set (SWARMING_BOOTSTRAP_SECRET, else the
        config file's `bootstrap_secret`): bootstrap tokens are then refused."""
        secret = self.settings.bootstrap_secret or self.config.bootstrap_secret
        return BootstrapTokens(secret, self.clock) if secret else None

    @functools.cached_property
    def bucket(self) -> storage.Bucket:
        client = storage.Client(project=self.settings.project)
        # Room for the CAS lookups' threads, which would otherwise open and drop connections past 10.
        for scheme in ("http://", "https://"):
            client._http.mount(scheme, requests.adapters.HTTPAdapter(pool_maxsize=cas.LOOKUP_WORKERS))
        return client.bucket(self.settings.bucket)

    @functools.cached_property
    def cas(self) -> cas.CasStore:
        s = self.settings
        return cas.CasStore(self.bucket, cas.Signer(s.signing_key_file), s.storage_url, s.cas_url_ttl_secs)

    @functools.cached_property
    def bot_code(self) -> BotCodeCache:
        s = self.settings
        hooks = None
        if self.config.bot_config:
            hooks = Path(s.config_path).parent / self.config.bot_config
        sources = Sources(root=Path(s.bot_source_dir), bot_config=hooks) if s.bot_source_dir else Sources(
            bot_config=hooks)
        return BotCodeCache(sources, s.server_version, lambda: self.bucket, s.bot_code_recheck_secs)

    @functools.cached_property
    def timers(self) -> Timers:
        s = self.settings
        timer_settings = TimerSettings(queue=s.tasks_queue, functions_url=s.functions_url,
                                       service_account=s.service_account, emulator_host=s.tasks_emulator_host)
        return Timers(make_client(timer_settings), timer_settings)


_current: Service | None = None


def current() -> Service:
    global _current
    if _current is None:
        _current = Service(Settings.from_env())
    return _current


@contextlib.contextmanager
def use(service: Service) -> Iterator[Service]:
    global _current
    previous, _current = _current, service
    try:
        yield service
    finally:
        _current = previous
