"""The bot code: `swarming_bot.zip`, named by its digest: built once per
release (`Prebuilt`, deployed), or by the server from its sources (`Sources`,
the local stack, so that an edited bot file is served without a restart).

The zip holds every `.py` of the `bot/` and `shared/` packages, the pure-Python
packages the bot imports (`VENDORED`, taken from where this server has them
installed; compiled modules left out, so the zip runs on any CPU), and three
files at its root: `__main__.py` (`bot/zip_main.py`), `config.json` (the URL
the zip was fetched from and the server version) and `bot_config.py` (the
project's default hooks: a bot group's own come with the handshake, so the
zip, and its version, are the same whatever the service configuration).

Its version is `digest()` of those entries, not of the zip's bytes, so it does
not depend on timestamps or compression; the zip is written deterministically
anyway (sorted entries, fixed dates). A function instance builds a version at
most once, and stores it once in Cloud Storage under `bot_code/<digest>.zip`
(create-only), from where every other instance serves it.
"""

import collections
import dataclasses
import importlib.util
import io
import json
import logging
import os
import re
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from google.api_core import exceptions as gexc

from shared.bot_archive import digest, entries_of
from shared.errors import SwarmingError

logger = logging.getLogger(__name__)

#: The repository: the default home of `bot/` and `shared/`.
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "shared")
#: What the bot imports beyond the standard library (requests and its own
#: dependencies); all pure Python once their optional compiled speed-ups
#: (charset_normalizer's) are left out.
VENDORED = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")
#: Package data the vendored code reads at run time: certifi's CA bundle.
VENDORED_DATA = (".pem",)
ZIP_MAIN = "bot/zip_main.py"
DEFAULT_BOT_CONFIG = "bot/default_bot_config.py"
#: `__main__.py` until `bot/zip_main.py` exists.
STAND_IN_MAIN = "import sys\nfrom bot import commands\nraise SystemExit(commands.main(sys.argv[1:]))\n"
EMPTY_BOT_CONFIG = '"""The hooks of this server\'s bots: none, the defaults apply."""\n'
#: The earliest date a zip can hold: every entry gets it, so the same entries
#: give the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
OBJECT_PREFIX = "bot_code/"
VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
#: How many built or downloaded zips (about 1 MB each), and how many server
#: URLs' current versions, an instance keeps in memory.
MAX_ZIPS, MAX_URLS = 4, 16


class BotCodeError(SwarmingError):
    """The bot code cannot be built: a source is missing."""


def write_zip(entries: Mapping[str, bytes]) -> bytes:
    """The zip of `entries`, the same bytes for the same entries (with the
    same zlib)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.create_system = 3  # Unix, whatever the server's OS.
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name], compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def config_json(server_url: str, server_version: str) -> bytes:
    return json.dumps({"server": server_url, "server_version": server_version}, indent=2,
                      sort_keys=True).encode() + b"\n"


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where the zip's files come from."""

    #: The directory holding `bot/` and `shared/`.
    root: Path = REPO_ROOT
    vendored: tuple[str, ...] = VENDORED

    def files(self) -> dict[str, Path]:
        """Zip name → file, for every entry read from disk."""
        files: dict[str, Path] = {}
        for package in PACKAGES:
            directory = self.root / package
            if not (directory / "__init__.py").is_file():
                raise BotCodeError(f"no package {directory}")
            files.update(_walk(directory, package, (".py",)))
        for name in self.vendored:
            files.update(_walk(_installed(name), name, (".py",) + VENDORED_DATA))
        if (self.root / ZIP_MAIN).is_file():
            files["__main__.py"] = self.root / ZIP_MAIN
        if (self.root / DEFAULT_BOT_CONFIG).is_file():
            files["bot_config.py"] = self.root / DEFAULT_BOT_CONFIG
        return files

    def signature(self) -> tuple:
        """Changes whenever an input file is added, removed or changed on disk."""
        out = []
        for name, path in sorted(self.files().items()):
            st = path.stat()
            out.append((name, str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def entries(self, server_url: str, server_version: str) -> dict[str, bytes]:
        entries = {name: path.read_bytes() for name, path in self.files().items()}
        entries.setdefault("__main__.py", STAND_IN_MAIN.encode())
        entries.setdefault("bot_config.py", EMPTY_BOT_CONFIG.encode())
        entries["config.json"] = config_json(server_url, server_version)
        return entries


@dataclasses.dataclass(frozen=True)
class Prebuilt:
    """The zip of a release, built once by `local.release` (so every function
    of a deployment serves the same version, whatever each has installed)."""

    path: Path

    def signature(self) -> tuple:
        st = self.path.stat()
        return (str(self.path), st.st_mtime_ns, st.st_size)

    def entries(self, server_url: str, server_version: str) -> dict[str, bytes]:
        """Its entries, if it names `server_url`: a release built for another
        URL would send bots elsewhere."""
        entries = entries_of(self.path)
        named = json.loads(entries["config.json"])["server"]
        if named != server_url:
            raise BotCodeError(f"{self.path} was built for {named}, not {server_url}: build the release for this URL")
        return entries


def _installed(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BotCodeError(f"the bot needs {package}, which this server does not have installed")
    return Path(list(spec.submodule_search_locations)[0])


def _walk(directory: Path, prefix: str, suffixes: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """Source files, without tests, caches or compiled modules."""
    for parent, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests", "test"))
        for name in sorted(names):
            if not name.endswith(suffixes) or name.startswith("test_") or name.endswith("_test.py"):
                continue
            path = Path(parent) / name
            yield f"{prefix}/{path.relative_to(directory).as_posix()}", path


@dataclasses.dataclass
class _Current:
    """The current version for one server URL, and when its sources were last looked at."""

    signature: tuple
    checked_at: float
    version: str


class BotCodeCache:
    """This function instance's bot code: the current version per server URL
    (the URL is in the zip, so each URL has its own), and the zips it built or
    downloaded.

    `version()` is called by every poll: it costs no Firestore or Cloud
    Storage call, only a look at the source files' sizes and times every
    `recheck_secs` (so a changed hooks file or a new bot file is picked up
    without a redeploy on the local stack), and a re-read when they changed.
    """

    def __init__(self, sources: Sources | Prebuilt, server_version: str, bucket: Callable[[], Any],
                 recheck_secs: float = 10.0, monotonic: Callable[[], float] = time.monotonic):
        self._sources = sources
        self._server_version = server_version
        #: The Cloud Storage bucket, made on first use (polls never need it).
        self._bucket = bucket
        self._recheck_secs = recheck_secs
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._current: collections.OrderedDict[str, _Current] = collections.OrderedDict()
        #: The entries of current versions not built yet (read to digest them).
        self._unbuilt: dict[str, dict[str, bytes]] = {}
        self._zips: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        #: Versions this instance built (tests and the benchmark look).
        self.built: list[str] = []
        #: Versions this instance read from Cloud Storage.
        self.downloaded: list[str] = []

    def version(self, server_url: str) -> str:
        """The version bots fetching from `server_url` should run."""
        with self._lock:
            now = self._monotonic()
            current = self._current.get(server_url)
            if current and now - current.checked_at < self._recheck_secs:
                return current.version
            signature = self._sources.signature()
            if current and current.signature == signature:
                current.checked_at = now
                return current.version
            entries = self._sources.entries(server_url, self._server_version)
            version = digest(entries)
            self._current[server_url] = _Current(signature, now, version)
            self._current.move_to_end(server_url)
            if len(self._current) > MAX_URLS:
                self._current.popitem(last=False)
            if version not in self._zips:
                self._unbuilt[version] = entries
            live = {c.version for c in self._current.values()}
            for stale in [v for v in self._unbuilt if v not in live]:
                del self._unbuilt[stale]
            return version

    def fetch(self, version: str, server_url: str) -> bytes | None:
        """The zip of `version`: from memory, else Cloud Storage, else built
        when it is the current version for `server_url`; None if unknown."""
        if not VERSION_RE.match(version):
            return None
        data = self._remembered(version) or self._download(version)
        if data is not None:
            return data
        if version != self.version(server_url):
            return None
        with self._build_lock:  # One build per version, however many ask at once.
            data = self._remembered(version)
            if data is None:
                data = self._build(version, server_url)
        return data

    def _remembered(self, version: str) -> bytes | None:
        with self._lock:
            data = self._zips.get(version)
            if data is not None:
                self._zips.move_to_end(version)
            return data

    def _remember(self, version: str, data: bytes) -> None:
        with self._lock:
            self._zips[version] = data
            self._unbuilt.pop(version, None)
            if len(self._zips) > MAX_ZIPS:
                self._zips.popitem(last=False)

    def _build(self, version: str, server_url: str) -> bytes:
        started = time.perf_counter()
        with self._lock:
            entries = self._unbuilt.get(version)
        if entries is None:  # Only after its zip was evicted from memory and not stored.
            entries = self._sources.entries(server_url, self._server_version)
        if digest(entries) != version:
            raise BotCodeError(f"the sources changed while building {version}")
        data = write_zip(entries)
        self.built.append(version)
        logger.info("built bot code %s: %d bytes in %.0f ms", version, len(data),
                    (time.perf_counter() - started) * 1000)
        self._store(version, data)
        self._remember(version, data)
        return data

    def _store(self, version: str, data: bytes) -> None:
        blob = self._bucket().blob(object_name(version))
        try:
            blob.upload_from_string(data, content_type="application/zip", if_generation_match=0)
        except gexc.PreconditionFailed:
            pass  # Another instance stored it first: the same entries.
        except gexc.GoogleAPICallError:
            # Serve it anyway; another instance will store it.
            logger.exception("could not store bot code %s", version)

    def _download(self, version: str) -> bytes | None:
        try:
            data = self._bucket().blob(object_name(version)).download_as_bytes()
        except gexc.NotFound:
            return None
        try:
            intact = digest(entries_of(data)) == version
        except zipfile.BadZipFile:
            intact = False
        if not intact:
            logger.error("%s in Cloud Storage is not version %s: ignored", object_name(version), version)
            return None
        self.downloaded.append(version)
        self._remember(version, data)
        return data


def object_name(version: str) -> str:
    return f"{OBJECT_PREFIX}{version}.zip"
