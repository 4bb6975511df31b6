"""`swarming bots` and `swarming bot`: the fleet as the registry sees it."""

import json
from typing import Any, Iterator

import click

from client.api import ApiError, Client
from client.tasks_cli import fail, pairs, server_options

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
        found = list(_all_bots(client, filters, limit))
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for bot in found:
        click.echo(_line(bot))


def _all_bots(client: Client, filters: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
    """Follows the cursor until `limit` bots or the end."""
    cursor, shown = None, 0
    while True:
        page_size = min(PAGE, limit - shown) if limit else PAGE
        page = client.call("bots_list", {**filters, "limit": page_size, "cursor": cursor})
        for bot in page["items"]:
            yield bot
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
        click.echo(f"  {task['task_id']}  {task['state']:<10} exit {task['exit_code']}  {task['name']}")


def _latest(client: Client, function: str, bot_id: str, count: int) -> list[dict[str, Any]]:
    return client.call(function, {"bot_id": bot_id, "limit": count})["items"] if count else []
