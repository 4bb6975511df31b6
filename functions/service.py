"""What every handler needs: settings, the service configuration, the store,
the authenticator and a clock.

Built lazily on first use from the environment (no client at import time), once
per function instance; tests swap in their own with `use()`.
"""

import contextlib
import datetime
import functools
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import requests
import requests.adapters
from google.cloud import firestore, storage
from google.cloud.storage import retry as storage_retry
from google.pubsub_v1 import PublisherClient

from functions import cas, notifications
from functions.auth import Authenticator
from functions.bot_auth import BotTokens
from functions.bot_code import BotCodeCache, Prebuilt, Sources
from functions.bot_liveness import Sightings
from functions.bot_registry import Registry
from functions.bot_store import BotStore
from functions.config_source import ConfigSource
from functions.context import Context
from functions.fleet import Fleet
from functions.heads import Heads
from functions.id_tokens import GOOGLE_CERTS_URL, IdTokens
from functions.offers import Offers
from functions.pending_watch import PendingWatch
from functions.queues import QueueCache
from functions.settings import Settings
from functions.signed_tokens import SignedTokens
from functions.store import RETRY_SECS, CommitRefused, Store
from functions.timers import TimerSettings, Timers, make_client


#: Each attempt of a call to Firestore or Cloud Storage gives up after this
#: long, and its retries after RETRY_SECS in all (functions/store.py, whose
#: queries take it too): when a backend is
#: unreachable, a request answers 503 within seconds (functions.http) instead
#: of holding its caller for the clients' defaults (one to five minutes).
CALL_TIMEOUT_SECS = 10.0
#: Cloud Storage's (connect, read) timeouts: a read's is per socket read, not
#: the whole download's.
STORAGE_TIMEOUT = (5.0, CALL_TIMEOUT_SECS)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _bounded_firestore(project: str, most_commits: int = 0) -> firestore.Client:
    """A Firestore client whose every method has the bounds above. The
    generated client wraps each RPC in a default retry and timeout, which the
    store never overrides (nor do a transaction's begin, commit and rollback):
    bounding the defaults bounds every call. With `most_commits`, at most
    that many commits are in flight at once (`gate_commits`)."""
    client = firestore.Client(project=project)
    for method in client._firestore_api.transport._wrapped_methods.values():
        method._timeout = CALL_TIMEOUT_SECS
        if method._retry is not None:
            method._retry = method._retry.with_timeout(RETRY_SECS)
    if most_commits:
        gate_commits(client, most_commits)
    return client


def gate_commits(client: firestore.Client, most: int, wait_secs: float = CALL_TIMEOUT_SECS) -> None:
    """At most `most` of the client's commits in flight at once; one that
    waited `wait_secs` for its turn is refused unsent (CommitRefused: a
    503, nothing written). The Firestore emulator serves commits under
    process-wide locks and notifies every listener within each commit: past a
    few hundred waiting commits its lock manager slows down with each one
    waiting, deadlines pass and retries add more (measured in the load bench:
    344 commits blocked, a write to a new document 9–30 s). Queued here, they
    wait in a cheap line instead. Production Firestore needs no gate."""
    transport = client._firestore_api.transport
    commit = transport._wrapped_methods[transport.commit]
    turns = threading.BoundedSemaphore(most)

    def gated(*args: Any, **kwargs: Any) -> Any:
        if not turns.acquire(timeout=wait_secs):
            raise CommitRefused(f"{most} commits in flight on this instance for {wait_secs:g} s")
        try:
            return commit(*args, **kwargs)
        finally:
            turns.release()

    transport._wrapped_methods[transport.commit] = gated


class _BoundedAdapter(requests.adapters.HTTPAdapter):
    """Each Cloud Storage request with STORAGE_TIMEOUT, not the client's 60 s."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return super().send(request, **{**kwargs, "timeout": STORAGE_TIMEOUT})


def _bound_storage_retries() -> None:
    """google-cloud-storage takes a retry per call, and every method defaults
    to the one Retry object of its retry module (alone or within a conditional
    policy), 120 s long; no caller here passes its own. Bounding that object
    bounds every Cloud Storage call of the process."""
    storage_retry.DEFAULT_RETRY._timeout = RETRY_SECS


class Service:
    def __init__(self, settings: Settings, clock: Callable[[], datetime.datetime] = utcnow):
        self.settings = settings
        self.clock = clock

    @functools.cached_property
    def store(self) -> Store:
        return Store(_bounded_firestore(self.settings.project, self.settings.firestore_max_commits),
                     on_end=lambda task_id: notifications.arm(self.timers, task_id, self.clock()))

    @functools.cached_property
    def publisher(self) -> notifications.Publisher:
        """Pub/Sub, or its emulator when PUBSUB_EMULATOR_HOST is set (the client reads it)."""
        return notifications.Publisher(PublisherClient())

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

    def close(self) -> None:
        """Stops what runs in the background for this service: the long
        poll's listeners, if any was made (a cached property not read yet)."""
        watch = self.__dict__.get("pending_watch")
        if watch is not None:
            watch.close()

    @functools.cached_property
    def pending_watch(self) -> PendingWatch:
        return PendingWatch(self.store.watch_pending)

    @functools.cached_property
    def offers(self) -> Offers:
        return Offers()

    @functools.cached_property
    def heads(self) -> Heads:
        return Heads(self.settings.poll_reuse_secs)

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
        _bound_storage_retries()
        client = storage.Client(project=self.settings.project)
        # Room for the CAS lookups' threads, which would otherwise open and drop connections past 10.
        for scheme in ("http://", "https://"):
            client._http.mount(scheme, _BoundedAdapter(pool_maxsize=cas.LOOKUP_WORKERS))
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
