"""What every handler needs: settings, the service configuration, the store,
the authenticator and a clock.

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
from functions.auth import Authenticator
from functions.bot_auth import BotTokens
from functions.bot_code import BotCodeCache, Prebuilt, Sources
from functions.bot_liveness import Sightings
from functions.bot_registry import Registry
from functions.bot_store import BotStore
from functions.config_source import ConfigSource
from functions.context import Context
from functions.fleet import Fleet
from functions.id_tokens import GOOGLE_CERTS_URL, IdTokens
from functions.queues import QueueCache
from functions.settings import Settings
from functions.signed_tokens import SignedTokens
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
                       config=self.service_config.get, dedup_max_age_secs=self.settings.dedup_max_age_secs)

    @functools.cached_property
    def fleet(self) -> Fleet:
        return Fleet(self.bot_store, self.settings.bot_death_timeout_secs)

    @functools.cached_property
    def queue_cache(self) -> QueueCache:
        return QueueCache()

    @functools.cached_property
    def service_config(self) -> ConfigSource:
        return ConfigSource(lambda: self.bucket)

    @functools.cached_property
    def signed_tokens(self) -> SignedTokens | None:
        """None without SWARMING_TOKEN_SECRET: no bootstrap, bot or run token is then valid."""
        return SignedTokens(self.settings.token_secret) if self.settings.token_secret else None

    @functools.cached_property
    def bot_tokens(self) -> BotTokens:
        return BotTokens(self.signed_tokens)

    @functools.cached_property
    def auth(self) -> Authenticator:
        ids = IdTokens(self.settings.id_token_certs_url or GOOGLE_CERTS_URL)
        return Authenticator(ids, self.signed_tokens, self.settings.service_account, self.clock)

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
        return cas.CasStore(self.bucket, cas.signer(s.signing_key_file, s.iam_credentials_url), s.storage_url,
                            s.cas_url_ttl_secs, self.clock)

    @functools.cached_property
    def bot_code(self) -> BotCodeCache:
        s = self.settings
        sources: Sources | Prebuilt
        if s.bot_zip:
            sources = Prebuilt(Path(s.bot_zip))
        else:
            sources = Sources(root=Path(s.bot_source_dir)) if s.bot_source_dir else Sources()
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
