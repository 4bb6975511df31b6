"""The bot's main loop: handshake, then poll and do what the server says until
told to stop (seed 000, "bot_main.py"): run a task (in a task runner process,
`w/` under the bot's directory), sleep, update to other code, restart, or
terminate. Tasks run one at a time.

The bot proves who it is at the handshake, which hands it its bot token
(bot/credentials.py): on a 401 it drops that token and handshakes again. The
handshake may also give the bot group's hooks script, which replaces the
zip's bot_config.py from then on.

The hooks of bot_config.py (bot/hooks.py; seed 000, "Hooks") are called at the
seed's times: `setup_bot` and `on_bot_startup` before the first call to the
server, `on_handshake` after the handshake, `get_dimensions` and `get_state`
(with the default health check) for the attributes of every call,
`on_bot_idle` after each "sleep", `on_before_task` and `on_after_task` around
each task, `get_authentication_headers` before the headers expire, and
`on_bot_shutdown` then `setup_bot` before the process exits or execs. A hook
that fails is reported as a `bot_error` event; so is an exception of the bot's
own (events.py), and the loop goes on.

The process around the loop (arguments, the directory's lock, signals) is
`start_bot`'s, in bot/commands.py.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import random
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence, TypeVar

from bot import credentials as credentials_lib
from bot import events, host_state, layout as layout_lib, probation, remote, runner_supervisor
from bot import hooks as hooks_lib
from bot.cas_cache import Limits
from bot.runner_protocol import RunnerInput
from bot.runner_server import RunnerServer
from bot.running_code import Code, current_code
from bot.task_runner import Clock, Timings
from bot.unpacked_code import UnpackedCode
from bot.updater import UpdateError, Updater
from shared import dimensions as dims_lib
from shared.api_error import ApiError
from shared.bot_api import (
    BotAttributes, Candidate, Completion, HandshakeReply, Restart, Run, Skip, Sleep, Terminate, Update, UpdateCode,
)
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleeper = Callable[[float], object]

#: The loop's own backoff after a failed iteration, on top of the HTTP retries.
BACKOFF_BASE_SECS, BACKOFF_MAX_SECS = 1.0, 60.0
#: How long to wait before polling again after an update that failed.
UPDATE_RETRY_SECS = 60.0
#: The bot's last-ditch timeout of a task, past everything the runner may take.
LAST_DITCH_MARGIN_SECS = 120.0
#: Added to it for a task with an input tree or `outputs` to move: minutes of
#: downloads or uploads are a runner at work, not a hung one. (What a task
#: leaves in ${ISOLATED_OUTDIR} alone must upload within the margin.)
LAST_DITCH_CAS_SECS = 1800.0
#: How long the hooks' dimensions and state are reused: a custom get_state may
#: be slow, and a poll, its claim and the task's start come within moments.
#: running_time and sleep_streak are current on every call regardless.
ATTRIBUTES_TTL_SECS = 5.0
#: get_authentication_headers is called again this long before its headers expire.
AUTH_REFRESH_MARGIN_SECS = 300.0
#: After a hook rebooted the host, how long the bot waits for the SIGTERM of
#: the shutdown before it reports that the host did not reboot and carries on.
REBOOT_WAIT_SECS = 300.0
#: How long the bot lets the server hold a poll that finds no task (a long
#: poll: a task is picked up as soon as it comes); the server may hold less.
POLL_HOLD_SECS = 60.0
#: How soon a stop (SIGTERM) ends the wait for a held poll's answer.
STOP_CHECK_SECS = 0.25
#: The file on_before_task may write for the task (SWARMING_BOT_FILE), beside
#: w/, which the runner wipes before the command starts; deleted after the task.
BOT_FILE = "bot_file.json"
#: Runners are forked from a runner server (bot/runner_server.py) where the bot runs from a zip on Linux.
FORK_RUNNERS = sys.platform.startswith("linux")


class Outcome(str, enum.Enum):
    """What one poll led to."""

    SLEPT = "slept"
    RAN = "ran"
    SKIPPED = "skipped"  # Every candidate went to another bot: poll again at once.
    UPDATE_FAILED = "update failed"  # Reported, then waited before polling again.
    RESTARTED = "restarted"  # Only seen when the exec returns: a test's.
    REBOOTING = "rebooting"  # A hook rebooted the host; the bot waited for its SIGTERM.
    TERMINATED = "terminated"


class Bot:
    """The long-lived loop state of one bot."""

    def __init__(self, api: remote.Remote, work_dir: Path, bot_id: str, *,
                 shutdown: threading.Event, overrides: dims_lib.Dimensions | None = None,
                 bot_config: ModuleType | None = None, sleep: Sleeper | None = None,
                 rand: random.Random | None = None, timings: Timings = Timings(),
                 clock: Clock = time.monotonic, now: Clock = time.time,
                 reboot: Callable[[], Any] = host_state.reboot, code: Code | None = None,
                 updater: Updater | None = None, credentials: credentials_lib.Credentials | None = None,
                 last_ditch_margin: float = LAST_DITCH_MARGIN_SECS,
                 attributes_ttl: float = ATTRIBUTES_TTL_SECS):
        # The Bot API; it retries transient failures itself, and holds the bot token.
        self._remote = api
        self._layout = layout_lib.Layout(work_dir)  # The bot's directory; each task runs in its w/.
        # What the handshake may show: the hook's token, a bootstrap token, the static token.
        self._credentials = credentials or credentials_lib.Credentials(self._layout.bootstrap_token)
        self._connected = False  # A handshake went through, and no 401 came since.
        # --dimension values, over the hooks' dimensions; the id is always the bot's.
        self._overrides: dims_lib.Dimensions = {**(overrides or {}), "id": [bot_id]}
        self._shutdown = shutdown  # Set by stop(): ends the loop and stops the running task.
        self._sleep = sleep or shutdown.wait  # Every wait of the loop; SIGTERM cuts it short.
        self._rand = rand or random.Random()  # Jitter of the loop's backoff.
        self._timings = timings  # Of the task runner.
        self._clock = clock  # Measures running time, idle time and the attributes' age.
        self._now = now  # Unix time, which the authentication headers' expiry is in.
        self._reboot = reboot  # Reboots the host, for a hook's bot.host_reboot().
        self._code = code or current_code()  # What runs: its version, how to start a runner.
        # The running zip unpacked and compiled, which runners start from; None from source.
        self._unpacked = (UnpackedCode(self._code.zip_path, self._code.version, self._layout.code)
                          if self._code.zip_path is not None else None)
        self._runner_server: RunnerServer | None = None  # Forks the runners from the unpacked copy.
        # Update, restart, last known good copy.
        self._updater = updater or Updater(self._code, self._layout, [], bot_token=lambda: api.token)
        self._last_ditch_margin = last_ditch_margin  # Past the runner's own allowances.
        self._attributes_ttl = attributes_ttl  # How long the hooks' dimensions and state are reused.
        self._attributes_at: float | None = None  # When the hooks last gave dimensions and state; None: stale.
        # Guards the attributes: an event may be posted from any thread (the excepthook's).
        self._attributes_lock = threading.RLock()
        self._auth_due: float | None = -math.inf  # When to ask for headers again (Unix time); None: never.
        self._last_action = clock()  # When the last task ended (or the bot started): on_bot_idle's idle time.
        self._error_streak = 0  # Failed iterations in a row; the loop's backoff grows with it.
        self._poll_uuid: str | None = None  # Kept until a poll is answered, so a retried poll is the same.
        self._fallback: tuple[str, str] | None = None  # A version that failed to start, to report once.
        self._reported_bad: set[str] = set()  # Versions whose failed update was reported: once is enough.
        self._stop_reason: str | None = None  # Why the loop was told to end (a signal, `terminate`).
        self._shut_down_reason: str | None = None  # Set once the shutdown hooks ran: they run once.
        self._restart_request: str | None = None  # A hook's bot.bot_restart() message, honoured next step.
        self._rebooting = False  # A hook's bot.host_reboot() went through: wait for the SIGTERM.
        self._group_script: str | None = None  # The bot group's hooks script in use; None: the zip's hooks.
        #: bot_event, rate-limited; never raises.
        self.reporter = events.Reporter(self._post_event)
        #: What the hooks see of the bot; its dimensions and state are the last reported.
        self.view = hooks_lib.BotView(bot_id, work_dir, api.server, report=self.reporter.report, clock=clock,
                                      reboot=self._reboot_host, restart=self._request_restart)
        # The default hooks first: a bot_config.py that fails to load is
        # reported, and the report's attributes need hooks.
        self.hooks = hooks_lib.Hooks(report=self.reporter.report)
        self.hooks = (hooks_lib.Hooks(bot_config, self.reporter.report) if bot_config is not None
                      else hooks_lib.Hooks.load(report=self.reporter.report))

    @property
    def bot_id(self) -> str:
        return self.view.id

    @property
    def sleep_streak(self) -> int:
        """Polls answered "sleep" in a row; the server's idle backoff grows with it."""
        return self.view.sleep_streak

    @sleep_streak.setter
    def sleep_streak(self, value: int) -> None:
        self.view.sleep_streak = value

    def attributes(self) -> BotAttributes:
        """Dimensions and state from the hooks (at most `attributes_ttl` old),
        with the current running_time and sleep_streak."""
        with self._attributes_lock:
            now = self._clock()
            if self._attributes_at is None or now - self._attributes_at >= self._attributes_ttl:
                self._refresh_attributes()
                self._attributes_at = now
            state = {**self.view.state, "running_time": self.view.running_time,
                     "sleep_streak": self.view.sleep_streak}
            if self._updater.bad_versions:  # So the server stops offering them and hands out tasks.
                state["refused_versions"] = sorted(self._updater.bad_versions)
            return BotAttributes(self.view.dimensions, state, self._code.version)

    def _refresh_attributes(self) -> None:
        dimensions = {**self.hooks.get_dimensions(self.view), **self._overrides}
        try:
            dimensions = dims_lib.validate_bot(dimensions, "dimensions")
        except ValidationError as e:  # Too many keys: sent anyway, for the server's 400 to name them.
            self.reporter.error(f"the hooks' dimensions with --dimension are not valid: {e}")
        self.view.dimensions = dimensions
        self.view.state = self.hooks.get_state(self.view)  # With `quarantined` when unhealthy.

    def _stale_attributes(self) -> None:
        self._attributes_at = None

    def report_fallback(self, version: str, why: str) -> None:
        """This bot was started in place of `version`, which failed to start."""
        self._updater.bad_versions[version] = f"it failed to start: {why}"
        self._fallback = (version, why)
        self._reported_bad.add(version)

    def stop(self, reason: str) -> None:
        """Ends the loop, and a running task with the grace dance (SIGTERM, `terminate`)."""
        self._stop_reason = self._stop_reason or reason
        self._shutdown.set()

    def run(self, once: bool = False) -> None:
        """Starts (setup_bot, on_bot_startup), handshakes, polls until stopped
        (with `once`, until a task has run or a poll was answered with
        something else than a claim), then shuts down (on_bot_shutdown,
        setup_bot, the bot_shutdown event)."""
        if not self.hooks.setup_bot(self.view):
            logger.warning("bot %s: setup_bot() returned False: not starting", self.bot_id)
            self.reporter.report(events.BOT_SHUTDOWN, "setup_bot() returned False: the bot does not start")
            return
        self.hooks.on_bot_startup(self.view)
        while not self._shutdown.is_set():
            if not self._connected:  # At start, and after a 401.
                self._guarded(self.handshake, self._fatal_at_start)
                continue
            outcome = self._guarded(self.run_once)
            if once and outcome not in (None, Outcome.SKIPPED):
                break
        self._shut_down(self._stop_reason or ("done (--once)" if once else "stopped"))

    def _unless_stopped(self, call: Callable[[], T]) -> T | None:
        """`call()` on a thread of its own, or None when the bot is stopped
        first: a held poll must not delay a SIGTERM by its hold. The call
        left behind is read-only (a poll), and ends with its hold."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["value"] = call()
            except BaseException as e:  # Raised again in the loop's thread.
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="poll", daemon=True).start()
        while not done.wait(STOP_CHECK_SECS):
            if self._shutdown.is_set():
                return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _fatal_at_start(self, error: Exception) -> bool:
        # New code that cannot even handshake because of a bug of its own
        # exits, so that zip_main falls back to the last known good copy.
        return self._updater.on_probation and not isinstance(error, ApiError)

    def handshake(self) -> HandshakeReply:
        """Shows the first credential the bot has (bot/credentials.py); the
        answer carries the bot token, which every later call sends."""
        self._refresh_auth()
        source, token = self._credentials.for_handshake(self._remote.token)
        previous, self._remote.token = self._remote.token, token
        try:
            reply = self._remote.handshake(self.attributes())
        except remote.Unauthorized as e:
            self._refused(source, e)
            raise
        except Exception:
            self._remote.token = previous  # Not refused: still the bot's to try again.
            raise
        self._credentials.connected()
        self._connected = True
        logger.info("bot %s: connected to %s with %s, server version %s, bot version %s (server's: %s)",
                    self.bot_id, self._remote.server, source.value, reply.server_version, self._code.version,
                    reply.bot_version)
        self._updater.connected()
        self._runner_python_args()  # Unpacks the version (once) and starts the runner server, not in a task's time.
        self.view.server_dimensions = reply.server_dimensions
        self._take_group_hooks(reply)
        self.hooks.on_handshake(self.view)
        self._stale_attributes()  # get_dimensions may depend on the server's dimensions from now on.
        if self._fallback:
            version, why = self._fallback
            self.reporter.error(f"version {version} failed to start ({why}); "
                                f"running the last known good code {self._code.version}")
            self._fallback = None
        return reply

    def _refused(self, source: credentials_lib.Source, error: remote.Unauthorized) -> None:
        """The handshake's credential was refused, or there was none: said
        plainly in the log, since the bot can report nothing to the server."""
        self._credentials.refused(source)
        if source in (credentials_lib.Source.HOOK, credentials_lib.Source.STATIC):
            logger.error("bot %s: the server refused %s: %s", self.bot_id, source.value, error.message)
            return
        where = self._credentials.bootstrap_file
        why = ("has no credential" if source is credentials_lib.Source.NONE
               else f"had {source.value} refused ({error.message})")
        logger.error("bot %s: the bot %s and needs a new bootstrap token: an admin mints one "
                     "(server_token), to write to %s (mode 0600) or to start the bot with (docs/fleet.md); "
                     "the bot looks for it there before each handshake", self.bot_id, why, where)

    def run_once(self) -> Outcome:
        """What a hook asked for (a restart, a reboot), else one poll and what it asks for."""
        requested = self._hook_request()
        if requested is not None:
            return requested
        self._refresh_auth()
        self._poll_uuid = self._poll_uuid or str(uuid.uuid4())
        attributes, request_uuid = self.attributes(), self._poll_uuid
        reply = self._unless_stopped(lambda: self._remote.poll(attributes, request_uuid, POLL_HOLD_SECS))
        if reply is None:
            return Outcome.SLEPT
        self._poll_uuid = None
        if isinstance(reply, Sleep):
            self.sleep_streak += 1
            self._updater.idle()
            self.hooks.on_bot_idle(self.view, max(0.0, self._clock() - self._last_action))
            self._sleep(reply.duration)
            return Outcome.SLEPT
        if isinstance(reply, UpdateCode):
            return self._update(reply.version)
        if isinstance(reply, Restart):
            self._restart(reply.message)
            return Outcome.RESTARTED
        if isinstance(reply, Terminate):
            self._terminate(reply.task_id)
            return Outcome.TERMINATED
        for candidate in reply.candidates:
            if self._claim_and_run(candidate):
                self.sleep_streak = 0
                return Outcome.RAN
        return Outcome.SKIPPED

    def _hook_request(self) -> Outcome | None:
        if self._rebooting:
            self._await_reboot()
            return Outcome.REBOOTING
        if self._restart_request is not None:
            message, self._restart_request = self._restart_request, None
            self._restart(message)
            return Outcome.RESTARTED
        return None

    def _request_restart(self, message: str) -> None:
        """A hook's bot.bot_restart(): done at the start of the next step, not
        inside the hook."""
        logger.info("bot %s: a hook asked for a restart: %s", self.bot_id, message)
        self._restart_request = message

    def _reboot_host(self) -> None:
        """A hook's bot.host_reboot(), after its bot_rebooting event: raises
        (into the hook, which is reported) if the host refused."""
        self._reboot()
        self._rebooting = True

    def _await_reboot(self) -> bool:
        """Waits for the SIGTERM of the host's shutdown, taking no task; False
        when none came in time, reported, and the bot carries on."""
        self._rebooting = False
        logger.info("bot %s: the host is rebooting; waiting for it", self.bot_id)
        self._sleep(REBOOT_WAIT_SECS)
        if self._shutdown.is_set():
            return True
        self.reporter.error(f"the host did not reboot within {REBOOT_WAIT_SECS:g} s; the bot carries on")
        return False

    def _refresh_auth(self) -> None:
        """The get_authentication_headers hook's headers, asked again when
        they are about to expire: its Authorization for the handshake, the
        others on every call."""
        if self._auth_due is None or self._now() < self._auth_due:
            return
        headers, expiry = self.hooks.get_authentication_headers(self.view)
        authorization = headers.pop(hooks_lib.AUTHORIZATION, None)
        self._credentials.hook = None if authorization is None else credentials_lib.bearer_token(authorization)
        self._remote.set_headers(headers)
        self._auth_due = None if expiry is None else expiry - AUTH_REFRESH_MARGIN_SECS

    def _update(self, version: str) -> Outcome:
        try:
            self._updater.update(lambda v, path: self._remote.bot_code(v, path), version,
                                 before_exec=lambda: self._shut_down(f"updating to version {version}"))
        except UpdateError as e:
            logger.error("bot %s: %s", self.bot_id, e)
            if e.bad and e.version not in self._reported_bad:
                self._reported_bad.add(e.version)
                self.reporter.error(str(e))
            # A refused version is in the next poll's state, and the server then
            # hands out tasks: no need to wait. Anything else is waited on.
            if e.version not in self._updater.bad_versions:
                self._sleep(UPDATE_RETRY_SECS * self._rand.uniform(0.8, 1.0))
            return Outcome.UPDATE_FAILED
        return Outcome.RESTARTED  # Only when the exec returned: a test's.

    def _restart(self, message: str) -> None:
        # The server's `restart` (the host) and `bot_restart` both restart the
        # bot process: rebooting the host is a hook's to do (on_bot_shutdown
        # may call bot.host_reboot), and then the bot waits for it instead.
        self._shut_down(f"restarting: {message}")
        if self._rebooting and self._await_reboot():
            return
        self._updater.restart(message)

    def _shut_down(self, reason: str) -> None:
        """Before the process exits or execs, once: on_bot_shutdown, setup_bot
        (seed: "called on the initial startup and just before shutdown"),
        then the bot_shutdown event."""
        if self._shut_down_reason is not None:
            return
        self._shut_down_reason = reason
        logger.info("bot %s: shutting down: %s", self.bot_id, reason)
        self.close()
        self.hooks.on_bot_shutdown(self.view)
        self.hooks.setup_bot(self.view)  # What it answers no longer matters.
        self.reporter.report(events.BOT_SHUTDOWN, reason)

    def _terminate(self, task_id: str) -> None:
        """Ends the termination task (claimed like any task, completed with
        exit code 0), then the bot."""
        logger.info("bot %s: terminating (task %s)", self.bot_id, task_id)
        try:
            claimed = self._remote.claim(self.attributes(), Candidate(task_id, 0), claim_id=str(uuid.uuid4()))
            run_id = claimed.manifest.task_id if isinstance(claimed, Run) else None
        except remote.BadManifest as e:  # Termination tasks have no command to speak of.
            run_id = e.run_id
        except ApiError as e:
            logger.error("bot %s: the termination task %s could not be claimed: %s", self.bot_id, task_id, e)
            run_id = None
        if run_id is not None:
            try:
                self._remote.task_update(self.attributes(), run_id, Update(0, completion=Completion(0, 0.0)))
            except ApiError as e:
                logger.error("task %s (bot %s): the termination was not reported: %s", run_id, self.bot_id, e)
        self.stop(f"terminated by task {task_id}")

    def _claim_and_run(self, candidate: Candidate) -> bool:
        """True when the claim was won, whether the task could run or not."""
        try:
            claimed = self._remote.claim(self.attributes(), candidate, claim_id=str(uuid.uuid4()))
        except remote.BadManifest as e:
            message = f"bad manifest: {e.message}"
            self._task_error(e.run_id, message)
            self._after_task(False, True, {}, {"task_id": e.run_id, "error": message})
            return True
        if isinstance(claimed, Skip):
            logger.info("task %s (bot %s): skipped: %s", candidate.task_id, self.bot_id, claimed.reason)
            return False
        manifest = claimed.manifest
        run_id = manifest.task_id
        logger.info("task %s (bot %s): claimed, running %s", run_id, self.bot_id, list(manifest.command))
        report = self._run_runner(manifest, claimed.run_token)
        summary: dict[str, Any] = {"task_id": run_id}
        if report.error is not None or report.failure is not None:
            message = report.error if report.error is not None else report.failure
            self._task_error(run_id, message, report.missing_cas if report.error is not None else None)
            failure, internal_failure = False, True
            summary["error"] = message
        else:
            assert report.result is not None  # Else the runner died: a failure.
            logger.info("task %s (bot %s): ended: %s", run_id, self.bot_id, report.result)
            if report.succeeded:
                self._updater.task_succeeded()
            summary.update(report.result.to_wire())
            failure, internal_failure = bool(report.result.exit_code), False
        self._after_task(failure, internal_failure, manifest.dimensions, summary)
        return True

    def _run_runner(self, manifest: Manifest, run_token: str) -> runner_supervisor.RunnerReport:
        """Runs the task runner on `manifest`, on_before_task first: it gets
        the bot file, the runner's command and its environment (which the
        task inherits), and may change the last two in place."""
        bot_file = self._layout.root / BOT_FILE
        try:
            bot_file.write_text(json.dumps(self.attributes().to_wire(), sort_keys=True), encoding="utf-8")
        except OSError as e:
            logger.error("task %s (bot %s): cannot write %s: %s", manifest.task_id, self.bot_id, bot_file, e)
        env = self._runner_env()
        env["SWARMING_BOT_FILE"] = str(bot_file)
        # runner_supervisor starts `runner_cmd` followed by arguments of its own.
        python_args = self._runner_python_args()
        runner_cmd = [sys.executable, *python_args, "run_task"]
        given = list(runner_cmd)
        self.hooks.on_before_task(self.view, str(bot_file), runner_cmd, env)

        def popen(args: Sequence[str], **kwargs: Any) -> Any:
            if runner_cmd != given and list(args[:len(given)]) == given:
                logger.info("task %s: on_before_task changed the runner's command to %s", manifest.task_id,
                            runner_cmd)
                return subprocess.Popen([*runner_cmd, *args[len(given):]], **kwargs)
            return self._start_runner(args, python_args, **kwargs)

        try:
            report = runner_supervisor.run(
                self._runner_input(manifest, run_token), python_args=python_args,
                cwd=self._code.source_root, env=env, shutdown=self._shutdown,
                deadline_secs=self._last_ditch(manifest), popen=popen,
            )
            if report.failure is not None and self._unpacked is not None:
                self._unpacked.suspect()  # A damaged copy may be why: checked whole before the next task,
                self.close()  # and a new runner server started from it.
            return report
        finally:
            try:
                bot_file.unlink()
            except OSError:  # Never written; or left for the start-up clean-up.
                pass

    def _runner_python_args(self) -> list[str]:
        """`python3 <these> run_task` starts a task runner: from the unpacked
        copy of the running version, or, should it fail to build, the zip."""
        if self._unpacked is not None:
            try:
                self._unpacked.ensure()
            except (OSError, zipfile.BadZipFile) as e:
                self.reporter.error(f"cannot unpack version {self._code.version} into {self._unpacked.path}: "
                                    f"{e}; task runners start from the zip")
            else:
                self._serve_runners(self._unpacked.python_args())
                return self._unpacked.python_args()
        return self._code.python_args()

    def _serve_runners(self, python_args: list[str]) -> None:
        """Starts the runner server of `python_args`, unless it runs."""
        server = self._runner_server
        if not FORK_RUNNERS or (server is not None and server.alive):
            return
        self.close()
        try:
            self._layout.logs.mkdir(parents=True, exist_ok=True)
            self._runner_server = RunnerServer(python_args, env=self._runner_env(),
                                               stdout=self._layout.runner_stdout)
        except OSError as e:
            logger.error("bot %s: cannot start the runner server (%s): task runners are spawned", self.bot_id, e)

    def _start_runner(self, args: Sequence[str], python_args: Sequence[str], **kwargs: Any) -> Any:
        """Forks the runner from the runner server, when it serves these
        python arguments and can; else spawns it."""
        server = self._runner_server
        prefix = [sys.executable, *python_args, "run_task"]
        if server is not None and server.python_args == tuple(python_args) and list(args[:len(prefix)]) == prefix:
            try:
                return server.popen(args[len(prefix):], **kwargs)
            except OSError as e:
                logger.error("bot %s: the runner server cannot fork (%s): spawning the task runner", self.bot_id, e)
        return subprocess.Popen(args, **kwargs)

    def close(self) -> None:
        """Ends the runner server, if any (before the bot exits or execs)."""
        if self._runner_server is not None:
            self._runner_server.close()
            self._runner_server = None

    def _after_task(self, failure: bool, internal_failure: bool, dimensions: dims_lib.Dimensions,
                    summary: dict[str, Any]) -> None:
        self.hooks.on_after_task(self.view, failure, internal_failure, dimensions, summary)
        self._last_action = self._clock()
        self._stale_attributes()  # The task changed the disk, TEMP, maybe the host.

    def _runner_input(self, manifest: Manifest, run_token: str) -> RunnerInput:
        attributes = self._remote.with_session(self.attributes())
        # The dimensions the task sees (LUCI_CONTEXT) are the bot's as the
        # server has them: its group's (the pool among them) over its own.
        attributes = dataclasses.replace(attributes, dimensions={**attributes.dimensions,
                                                                 **self.view.server_dimensions})
        # The hooks' settings as of the attributes above (get_state calls get_settings).
        limits = Limits.from_settings(self.view.settings)
        return RunnerInput(manifest, self._remote.server, attributes, self._layout.root, self._timings, limits,
                           run_token, self.view.settings.get("run_tasks_as"))

    def _runner_env(self) -> dict[str, str]:
        env = probation.environ_without_bot_vars()  # Neither the runner nor a task gets them,
        env.pop(credentials_lib.STATIC_TOKEN_ENV, None)  # nor the bot's credential.
        return env

    def _take_group_hooks(self, reply: HandshakeReply) -> None:
        """The bot group's hooks script, when the handshake gives one: written
        to hooks/ and loaded in place of the hooks in use (one that fails to
        load is reported, and the default hooks apply). The same script again
        keeps its module as it is."""
        if reply.bot_config is None or reply.bot_config == self._group_script:
            return
        name = re.sub(r"[^A-Za-z0-9_-]", "_", reply.bot_config_name.removesuffix(".py")) or "group"
        path = self._layout.hooks / f"bot_config_{name}.py"
        try:
            layout_lib.remove(self._layout.hooks)
            self._layout.hooks.mkdir()
            path.write_text(reply.bot_config, encoding="utf-8")
        except OSError as e:
            self.reporter.error(f"cannot write the bot group's hooks script to {path}: {e}; "
                                f"keeping the hooks of {self.hooks.name}")
            return
        self.hooks = hooks_lib.Hooks.load(path, self.reporter.report)
        self._group_script = reply.bot_config

    def _last_ditch(self, manifest: Manifest) -> float:
        """Past the hard timeout, the grace, the output drain and the runner's
        patience with the server: only a runner gone wrong takes longer."""
        grace = self._timings.grace_period if manifest.grace_period is None else manifest.grace_period
        transfers = LAST_DITCH_CAS_SECS if manifest.cas_input_root is not None or manifest.outputs else 0.0
        return (manifest.hard_timeout + grace + self._timings.drain + self._timings.report_patience
                + self._last_ditch_margin + transfers)

    def _task_error(self, run_id: str, message: str, missing_cas: Sequence[Digest] | None = None) -> None:
        """Ends a claimed run the bot cannot carry out, so that it fails now
        rather than when its pings stop; the bot goes on polling either way."""
        logger.error("task %s (bot %s): internal error: %s", run_id, self.bot_id, message)
        try:
            self._remote.task_error(self.attributes(), run_id, message, missing_cas)
        except ApiError as e:
            logger.error("task %s (bot %s): the error was not reported: %s", run_id, self.bot_id, e)

    def _post_event(self, event: str, message: str) -> None:
        """The Reporter's way to the server (which handles what this raises)."""
        self._remote.event(self.attributes(), event, message)

    def _guarded(self, step: Callable[[], T],
                 fatal: Callable[[Exception], bool] = lambda error: False) -> T | None:
        """Runs one step of the loop; a failure is logged and backed off from,
        never fatal: the bot must outlive server outages and its own bugs."""
        try:
            result = step()
        except Exception as e:
            if fatal(e):
                raise
            # The exponent capped: a bot waiting hours for a credential fails
            # thousands of times, and 2 ** 1024 is no float.
            delay = min(BACKOFF_MAX_SECS, BACKOFF_BASE_SECS * 2 ** min(self._error_streak, 32))
            delay *= self._rand.uniform(0.5, 1.0)
            self._error_streak += 1
            if isinstance(e, remote.Unauthorized):  # The bot token expired or was refused.
                self._remote.token = None
                self._connected = False
                self._auth_due = -math.inf  # The next handshake asks the hook anew: it may have failed.
                logger.error("bot %s: %s: %s; handshaking again in %.1f s", self.bot_id, step.__name__, e, delay)
            else:
                logger.exception("bot %s: %s failed; retrying in %.1f s", self.bot_id, step.__name__, delay)
            if not isinstance(e, ApiError):  # The server's failures are its to log, not to be told.
                self.reporter.error(f"{step.__name__} failed:\n{traceback.format_exc()}")
            self._sleep(delay)
            return None
        self._error_streak = 0
        return result
