"""Every function as its own process, as deployed: each served by
functions-framework from a release directory (`local.release`) on a port of
its own, with the environment a deployed function has (`K_SERVICE` set, so
that settings are checked at start and logs are JSON), behind one proxy at
`BASE_URL/<name>` that, as Cloud Functions does, takes the function's name
off the path and appends the caller's address to X-Forwarded-For. A function
may have several processes, like a deployed function's instances: the proxy
takes them in turn.

The processes run on an interpreter that sees the installed packages but not
this repository (`isolated_python`), so a file missing from the release fails
as it would in production. Used by the test that the deployed artifact runs,
and by benches of per-instance behaviour.
"""

import concurrent.futures
import itertools
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import requests
from werkzeug.serving import BaseWSGIServer, make_server

from local import processes

#: Headers that describe one hop, not the message (RFC 9110 §7.6.1), and the
#: length, which the proxy sets itself.
_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                "transfer-encoding", "upgrade", "content-length", "host"}
START_SECS = 120.0
#: functions-framework's threads per process, as infra/terraform gives each
#: function (THREADS: its concurrency): bot_poll holds up to a thousand polls.
THREADS, POLL_THREADS = 80, 1000


def isolated_python(venv: Path) -> Path:
    """A virtual environment whose only packages are this interpreter's
    installed ones, without the `.pth` files that put this repository on the
    path (an editable install): what a function deployed with its
    requirements sees."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "installed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


class FunctionProcesses:
    """The functions `names` of the release in `source`, one process each,
    or as many as `copies` says for a function."""

    def __init__(self, source: Path, names: Sequence[str], env: Mapping[str, str], python: Path, log_dir: Path,
                 copies: Mapping[str, int] | None = None):
        self.source = source
        self.names = list(names)
        self.env = dict(env)
        self.python = python
        self.log_dir = log_dir
        self.copies = dict(copies or {})
        #: Function name → the URLs its processes serve at.
        self.routes: dict[str, list[str]] = {}
        self._processes: list[subprocess.Popen] = []
        self._proxy: BaseWSGIServer | None = None

    def start(self) -> None:
        """Starts every process at once, then waits for each to answer."""
        labels = [(name, self.label(name, n)) for name in self.names for n in range(self.copies.get(name, 1))]
        urls = []
        for name, label in labels:
            port = processes.free_port()
            self._processes.append(self._spawn(name, label, port))
            urls.append(f"http://127.0.0.1:{port}")
            self.routes.setdefault(name, []).append(urls[-1])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(self._wait, [label for _, label in labels], urls, self._processes))

    @staticmethod
    def label(name: str, copy: int) -> str:
        """What a process is called, and its log: the function's name, then `name.1`, `name.2`, ..."""
        return f"{name}.{copy}" if copy else name

    def _spawn(self, name: str, label: str, port: int) -> subprocess.Popen:
        args = [str(self.python), "-m", "functions_framework", "--target", name, "--source",
                str(self.source / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
        return processes.spawn(args, self.log_dir / f"{label}.log", cwd=self.source,
                               env={**self.env, "K_SERVICE": name, "PYTHONUNBUFFERED": "1",
                                    "THREADS": str(POLL_THREADS if name == "bot_poll" else THREADS)})

    def _wait(self, label: str, url: str, process: subprocess.Popen) -> None:
        processes.wait_until(_answers(url), process, label, self.log_dir / f"{label}.log", timeout=START_SECS)

    def serve_proxy(self, port: int = 0) -> str:
        """Serves the proxy in this process; returns its base URL."""
        self._proxy = make_server("127.0.0.1", port, proxy_app(self.routes), threaded=True)
        threading.Thread(target=self._proxy.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._proxy.server_port}"

    def log(self, label: str) -> str:
        """The log of the process `label` (a function's name, or `name.N` for its copies)."""
        return (self.log_dir / f"{label}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.shutdown()
        with concurrent.futures.ThreadPoolExecutor(len(self._processes) or 1) as pool:
            list(pool.map(processes.stop, [process.pid for process in self._processes]))


def _answers(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return True

    return ready


WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def proxy_app(routes: Mapping[str, str | Sequence[str]]) -> WsgiApp:
    """`/<name>/rest?query` → `<routes[name]>/rest?query`, redirects passed
    back as they are; a function of several URLs gets them in turn."""
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
    turns = {name: itertools.cycle([urls] if isinstance(urls, str) else urls) for name, urls in routes.items()}

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        name, _, rest = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        if name not in turns:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"no function {name!r}\n".encode()]
        query = environ.get("QUERY_STRING")
        url = f"{next(turns[name])}/{rest}" + (f"?{query}" if query else "")
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_HEADERS}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        forwarded = [part for part in (headers.get("X-Forwarded-For"), environ.get("REMOTE_ADDR")) if part]
        headers["X-Forwarded-For"] = ", ".join(forwarded)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        answer = session.request(environ["REQUEST_METHOD"], url, headers=headers, data=body,
                                 allow_redirects=False, timeout=600)
        out = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS | {"content-encoding"}]
        out.append(("Content-Length", str(len(answer.content))))
        start_response(f"{answer.status_code} {answer.reason}", out)
        return [answer.content]

    return app

