"""swarming_bot.zip's commands (`python3 swarming_bot.zip <command>`, or
`python -m bot <command>` from source; seed: "Control flow"):

    start_bot   run the bot (the default); from a zip not named .1/.2, copy
                it to swarming_bot.1.zip and exec that copy
    config      print the zip's config.json
    version     print the zip's digest ("dev" from source)
    is_fine     exit 0 if this code imports and its config is readable
    attributes  print the bot's dimensions, state and version as JSON
    run_task    internal: run one task (bot/runner_main.py)
    runner_server  internal: fork the bot's task runners (bot/runner_server.py)

Exit codes: see ExitCode; `run_task` has its own (bot/runner_protocol.py).

`start_bot` and `run_task` import the code they run only when they run it:
`version` and `config` work on any python3 >= 3.9 without the libraries the
zip vendors (requests), which the bot's HTTP needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Sequence

import bot as bot_package
from bot import credentials, events, layout as layout_lib, os_platform, probation
from bot import hooks as hooks_lib
from bot.running_code import CONFIG, Code, current_code
from bot.updater import ExecPython, Updater, copy_atomically
from shared import dimensions as dims_lib
from shared.bot_api import BotAttributes
from shared.errors import ValidationError

logger = logging.getLogger(__name__)

BOT_CONFIG = "bot_config"  # The hooks module the server injects at the zip's root.
#: Modules of the bot package `is_fine` does not import: they run the bot.
_ENTRY_MODULES = ("__main__", "zip_main")


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # argparse's.
    NOT_OURS = 3  # The directory is another bot's, or holds files no bot made.


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        command, args = "start_bot", argv
    else:
        command, args = argv[0], argv[1:]
    handler = COMMANDS.get(command)
    if handler is None:
        sys.stderr.write(f"unknown command {command!r}; the commands: {', '.join(COMMANDS)}\n")
        return ExitCode.USAGE
    return handler(args)


# start_bot.

def start_bot(args: Sequence[str]) -> int:
    code = current_code()
    if code.zip_path is not None and code.zip_path.name not in layout_lib.RUNNING_ZIPS:
        return _self_copy(code, args)
    return run_bot(args, code)


def _self_copy(code: Code, args: Sequence[str], exec_python: ExecPython = os_platform.exec_python) -> int:
    """Copies the zip to swarming_bot.1.zip and execs that copy: the bot only
    ever runs from .1 or .2, so swarming_bot.zip stays the last known good."""
    assert code.zip_path is not None
    layout = layout_lib.Layout(code.zip_path.parent)
    # Overwriting the copy another bot runs from would break it: check first.
    probe = os_platform.DirectoryLock(layout.lock)
    if layout.lock.exists():
        if not probe.acquire():
            sys.stderr.write(f"swarming bot: another bot is running in {layout.root} "
                             f"(it holds {layout.lock}); run one bot per directory\n")
            return ExitCode.NOT_OURS
        probe.release()
    target = layout.root / layout_lib.RUNNING_ZIPS[0]
    # The credentials left in files (bootstrap_token) stay there for the copy to take.
    sys.stderr.write(f"swarming bot: copying {code.zip_path} to {target} and running it (pid {os.getpid()})\n")
    copy_atomically(code.zip_path, target)
    exec_python([str(target), "start_bot", *args], None)
    return ExitCode.OK


@dataclasses.dataclass(frozen=True)
class Options:
    server: str
    work_dir: Path
    token: str | None  # --token: a token to handshake with, given on the command line or in the environment.
    bootstrap_token_file: Path
    bot_id: str
    dimensions: dims_lib.Dimensions  # --dimension: over the hooks' dimensions.
    once: bool


def parse_args(argv: Sequence[str], code: Code) -> Options:
    """From a zip, the server defaults to its config.json's and the directory
    is the zip's; from source both are required."""
    in_zip = code.zip_path is not None
    config_server = code.config().get("server") if in_zip else None
    parser = argparse.ArgumentParser(
        prog="python3 swarming_bot.zip start_bot" if in_zip else "python -m bot",
        description="Runs a Swarming bot. Other commands: " + ", ".join(COMMANDS) + ".")
    parser.add_argument("--server", required=not config_server, default=config_server,
                        help="the server's base URL" + (f" (default: {config_server})" if config_server else ""))
    if in_zip:
        parser.set_defaults(work_dir=code.zip_path.parent)
    else:
        parser.add_argument("--work-dir", required=True, type=Path,
                            help="the bot's directory, which it owns whole: everything it does not know "
                                 "there is deleted at start-up; tasks run in its w/")
    parser.add_argument("--id", help="the bot id (default: $SWARMING_BOT_ID, else the short hostname)")
    parser.add_argument("--dimension", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                        help="replaces a dimension's values from bot_config.py's get_dimensions(); "
                             "repeat a key to give it several")
    parser.add_argument("--bootstrap-token-file", type=Path, metavar="PATH",
                        help="a file holding a bootstrap token, which the bot reads then deletes at start, and "
                             "looks for again whenever it has no credential (default: bootstrap_token in its "
                             "directory)")
    parser.add_argument("--token", help="a token to handshake with (a bootstrap token), in place of the file "
                                        "(default: $SWARMING_TOKEN); the bot's tasks may read its environment "
                                        "and command line, so prefer the file")
    parser.add_argument("--once", action="store_true",
                        help="stop after one task has run or one poll was answered with something else")
    args = parser.parse_args(argv)
    try:
        dimensions = _dimensions(args.dimension)
    except ValidationError as e:
        parser.error(str(e))
    work_dir = Path(os.path.abspath(args.work_dir))
    bootstrap_file = (Path(os.path.abspath(args.bootstrap_token_file)) if args.bootstrap_token_file
                      else layout_lib.Layout(work_dir).bootstrap_token)
    return Options(server=args.server, work_dir=work_dir,
                   token=args.token or os.environ.get(credentials.STATIC_TOKEN_ENV) or None,
                   bootstrap_token_file=bootstrap_file, bot_id=bot_id_from(args.id), dimensions=dimensions,
                   once=args.once)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _dimensions(overrides: list[tuple[str, str]]) -> dims_lib.Dimensions:
    given: dims_lib.Dimensions = {}
    for key, value in overrides:
        given.setdefault(key, []).append(value)
    if "id" in given:
        raise ValidationError("--dimension id", "set the bot id with --id")
    return dims_lib.validate_bot(given, "--dimension")


def bot_id_from(flag: str | None) -> str:
    """--id, else $SWARMING_BOT_ID, else the hostname without its domain."""
    return flag or os.environ.get("SWARMING_BOT_ID") or socket.gethostname().split(".")[0]


def run_bot(argv: Sequence[str], code: Code) -> int:
    """Runs the bot in its directory: locks and clears it (layout.py), takes
    the credentials left in files there (credentials.py), then loops until
    SIGTERM, `terminate`, or an exec into other code."""
    from bot import bot_main
    from bot.remote import Remote

    options = parse_args(argv, code)
    bot_layout = layout_lib.Layout(options.work_dir)
    try:
        lock = layout_lib.take(bot_layout)
    except layout_lib.LayoutError as e:
        sys.stderr.write(f"swarming bot: {e}\n")
        return ExitCode.NOT_OURS
    layout_lib.log_to(bot_layout.bot_log, stderr=True)
    # Before any hook or task runs: neither file may outlive this moment.
    handed_over = credentials.take(bot_layout.bot_token)
    bootstrap = credentials.take(options.bootstrap_token_file)
    shutdown = threading.Event()
    # Before its handshake, the bot's calls (its events) send what it has of a bot token.
    api = Remote(options.server, handed_over or options.token)
    updater = Updater(code, bot_layout, argv, bot_token=lambda: api.token)
    bot = bot_main.Bot(api, options.work_dir, options.bot_id, overrides=options.dimensions, shutdown=shutdown,
                       code=code, updater=updater,
                       credentials=credentials.Credentials(options.bootstrap_token_file, bootstrap=bootstrap,
                                                           static=options.token))
    uninstall_excepthook = events.install_excepthook(bot.reporter)

    def stop(signum: int) -> None:
        logger.info("signal %d received: shutting down", signum)
        bot.stop(f"{signal.Signals(signum).name} received")

    os_platform.on_stop_signals(stop)
    os_platform.on_stack_dump_signal(logger)
    fallback = probation.take_bad_version()
    if fallback:
        logger.error("bot %s: started in place of version %s, which failed to start (%s)",
                     options.bot_id, *fallback)
        bot.report_fallback(*fallback)
    logger.info("bot %s: starting in %s, version %s, pid %d, hooks %s, dimensions given %s", options.bot_id,
                options.work_dir, code.version, os.getpid(), bot.hooks.name, options.dimensions)
    try:
        bot.run(once=options.once)
    except Exception:  # Fatal (a new version's own bug at start): reported before zip_main falls back.
        bot.reporter.error(f"the bot failed:\n{traceback.format_exc()}")
        if updater.on_probation:  # zip_main execs the last known good copy, which takes the token.
            updater.hand_over()
        raise
    finally:
        uninstall_excepthook()
        api.close()
        lock.release()
    logger.info("bot %s: stopped", options.bot_id)
    return ExitCode.OK


# The other commands.

def config(args: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="config", description="Prints the zip's config.json.").parse_args(args)
    code = current_code()
    if code.zip_path is None:
        sys.stderr.write("running from source: there is no config.json\n")
        return ExitCode.ERROR
    print(json.dumps(code.config(), indent=2, sort_keys=True))
    return ExitCode.OK


def version(args: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="version", description="Prints the bot code's digest.").parse_args(args)
    print(current_code().version)
    return ExitCode.OK


def is_fine(args: Sequence[str]) -> int:
    """Imports every module of the bot and the hooks, and reads the config:
    the check a new version passes before the bot execs into it."""
    argparse.ArgumentParser(prog="is_fine", description="Checks this code can run.").parse_args(args)
    try:
        for module in pkgutil.iter_modules(bot_package.__path__):
            if module.name not in _ENTRY_MODULES:
                importlib.import_module(f"bot.{module.name}")
        code = current_code()
        if code.zip_path is not None:
            server = code.config().get("server")
            if not isinstance(server, str) or not server:
                raise ValueError(f"{CONFIG} has no server URL")
            if importlib.util.find_spec(BOT_CONFIG) is not None:
                importlib.import_module(BOT_CONFIG)
    except Exception:
        traceback.print_exc()
        return ExitCode.ERROR
    print("fine")
    return ExitCode.OK


def attributes(args: Sequence[str]) -> int:
    """What a bot that just started says of itself: the hooks' dimensions and
    state, as its first handshake would."""
    parser = argparse.ArgumentParser(prog="attributes", description="Prints the bot's attributes as JSON.")
    parser.add_argument("--id", help="the bot id (default: $SWARMING_BOT_ID, else the short hostname)")
    options = parser.parse_args(args)
    code = current_code()
    work_dir = code.zip_path.parent if code.zip_path is not None else Path.cwd()
    bot_id = bot_id_from(options.id)
    hooks = hooks_lib.Hooks.load()
    view = hooks_lib.BotView(bot_id, work_dir)
    attrs = BotAttributes({**hooks.get_dimensions(view), "id": [bot_id]}, hooks.get_state(view), code.version)
    print(json.dumps(attrs.to_wire(), indent=2, sort_keys=True))
    return ExitCode.OK


def run_task(args: Sequence[str]) -> int:
    from bot import runner_main

    return runner_main.main(args)


def serve_runners(args: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="runner_server", description="Internal: forks the bot's task runners.")
    parser.add_argument("--socket-fd", type=int, required=True, help="the socket to the bot")
    options = parser.parse_args(args)
    from bot import runner_server

    return runner_server.serve(options.socket_fd)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "start_bot": start_bot, "config": config, "version": version, "is_fine": is_fine,
    "attributes": attributes, "run_task": run_task, "runner_server": serve_runners,
}
