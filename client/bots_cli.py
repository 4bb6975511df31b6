"""`swarming bots`, `bot` and `bot-tasks`: the fleet as the registry sees it; `terminate` and
`delete-bots`: taking bots out of it."""

import json
import sys
from typing import Any, Iterator

import click

from client.api import ApiError, Client
from client.exit_status import ExitStatus
from client.tasks_cli import _collect, fail, pairs, server_options

#: Bots asked for per page while listing.
PAGE = 500


def _tristate(name: str, off: str, help_text: str) -> Any:
    return click.option(f"--{name}/--{off}", default=None, help=help_text)


@click.command()
@server_options
@click.option("-d", "--dimension", "dimensions", multiple=True, metavar="KEY=VALUE",
              help="Only bots with this dimension (repeat to AND).")
@_tristate("busy", "idle", "Only bots running a task, or only idle ones.")
@_tristate("dead", "alive", "Only bots not seen for the death timeout (600 s), or only live ones.")
@_tristate("quarantined", "not-quarantined", "Only quarantined bots, or only the others.")
@_tristate("maintenance", "no-maintenance", "Only bots in maintenance, or only the others.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many bots (default: all).")
@click.option("--count", "count_only", is_flag=True,
              help="Print how many bots match, and how many are busy, dead, quarantined, in maintenance.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of bots, or the counts).")
def bots(client: Client, dimensions: tuple[str, ...], busy: bool | None, dead: bool | None,
         quarantined: bool | None, maintenance: bool | None, limit: int | None, count_only: bool,
         as_json: bool) -> None:
    """List the bots, filtered by dimensions and state."""
    filters = {"dimensions": [f"{k}:{v}" for k, v in pairs(dimensions, "--dimension")], "is_busy": busy,
               "is_dead": dead, "quarantined": quarantined, "in_maintenance": maintenance}
    try:
        if count_only:
            counts = client.call("bots_count", filters)
            counts.pop("now", None)
            click.echo(json.dumps(counts, indent=2) if as_json else
                       "  ".join(f"{k}: {v}" for k, v in counts.items()))
            return
        found = list(paged(client, "bots_list", filters, limit))
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for bot in found:
        click.echo(_line(bot))


def paged(client: Client, function: str, body: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
    """The items of `function`'s pages, following the cursor until `limit` items or the end."""
    cursor, shown = None, 0
    while True:
        page_size = min(PAGE, limit - shown) if limit else PAGE
        page = client.call(function, {**body, "limit": page_size, "cursor": cursor})
        yield from page["items"]
        shown += len(page["items"])
        cursor = page["cursor"]
        if not cursor or (limit and shown >= limit):
            return


def _line(bot: dict[str, Any]) -> str:
    status = ("dead" if bot["is_dead"] else "quarantined" if bot["quarantined"]
              else "maintenance" if bot["maintenance_msg"] else f"busy {bot['task_id']}" if bot["is_busy"]
              else "idle")
    dims = " ".join(f"{d['key']}={','.join(d['value'])}" for d in bot["dimensions"] if d["key"] != "id")
    return f"{bot['bot_id']:<24} {status:<26} {bot['last_seen_ts']:<28} {dims}"


@click.command()
@server_options
@click.argument("bot_id")
@click.option("--events", "event_count", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="How many of its latest events to show.")
@click.option("--tasks", "task_count", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="How many of its latest tasks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {bot, events, tasks}.")
def bot(client: Client, bot_id: str, event_count: int, task_count: int, as_json: bool) -> None:
    """Show one bot: its dimensions, state, latest events and tasks."""
    try:
        shown = {"bot": client.call("bot_get", {"bot_id": bot_id})}
        shown["events"] = _latest(client, "bot_events", bot_id, event_count)
        shown["tasks"] = _latest(client, "bot_tasks", bot_id, task_count)
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    info = shown["bot"]
    for key in ("bot_id", "version", "task_id", "is_dead", "quarantined", "maintenance_msg", "first_seen_ts",
                "last_seen_ts"):
        click.echo(f"{key + ':':<17}{info[key]}")
    click.echo("dimensions:")
    for dim in info["dimensions"]:
        click.echo(f"  {dim['key']}: {', '.join(dim['value'])}")
    click.echo(f"state:           {json.dumps(info['state'], sort_keys=True)}")
    click.echo("events:")
    for event in shown["events"]:
        click.echo(f"  {event['ts']}  {event['event_type']:<15} {event.get('message', '')}")
    click.echo("tasks:")
    for task in shown["tasks"]:
        click.echo(f"  {task_line(task)}")


def _latest(client: Client, function: str, bot_id: str, count: int) -> list[dict[str, Any]]:
    return client.call(function, {"bot_id": bot_id, "limit": count})["items"] if count else []


def task_line(task: dict[str, Any]) -> str:
    return f"{task['task_id']}  {task['state']:<12} exit {task['exit_code']}  {task['name']}"


@click.command("bot-tasks")
@server_options
@click.argument("bot_id")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many tasks, newest first (pages are followed).")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks' results as a JSON list.")
def bot_tasks(client: Client, bot_id: str, limit: int, as_json: bool) -> None:
    """List the tasks a bot ran, newest first."""
    try:
        found = list(paged(client, "bot_tasks", {"bot_id": bot_id}, limit))
    except ApiError as e:
        fail(e)
    click.echo(json.dumps(found, indent=2) if as_json else "\n".join(map(task_line, found)), nl=bool(found))


@click.command()
@server_options
@click.argument("bot_id")
@click.option("--reason", default="", help="Why: shown in the termination task's name.")
@click.option("--wait", is_flag=True, help="Wait until the bot ran its termination task (it then exits).")
@click.option("--timeout", type=float, default=0, help="With --wait: give up after this many seconds (0: never).")
def terminate(client: Client, bot_id: str, reason: str, wait: bool, timeout: float) -> None:
    """Ask a bot to stop: it finishes its current task, then runs a termination task and exits.

    Prints the termination task's id; with --wait, exits as 'collect' of that task does."""
    if timeout and not wait:
        raise click.UsageError("--timeout goes with --wait")
    try:
        task_id = client.call("bot_terminate", {"bot_id": bot_id, "reason": reason})["task_id"]
    except ApiError as e:
        fail(e)
    click.echo(task_id)
    if wait:
        sys.exit(_collect(client, [task_id], timeout, False, None, None))


@click.command("delete-bots")
@server_options
@click.argument("bot_ids", nargs=-1, required=True, metavar="BOT_ID...")
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
def delete_bots(client: Client, bot_ids: tuple[str, ...], force: bool) -> None:
    """Forget bots. A bot still running comes back when it next calls the server.

    Asks first, unless --force. Exits 1 if any bot was unknown (the others are deleted)."""
    if not force:
        click.confirm(f"Delete {len(bot_ids)} bot(s): {' '.join(bot_ids)}?", abort=True, err=True)
    failed = False
    for bot_id in bot_ids:
        try:
            client.call("bot_delete", {"bot_id": bot_id})
            click.echo(f"deleted {bot_id}")
        except ApiError as e:
            click.echo(f"error: {bot_id}: {e.message}", err=True)
            failed = True
    sys.exit(ExitStatus.ERROR if failed else ExitStatus.SUCCESS)
