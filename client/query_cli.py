"""`swarming tasks`: find tasks by state, tags and time (tasks_list,
tasks_count), newest first."""

import json
from typing import Any, Iterator

import click

from client.api import ApiError, Client
from client.tasks_cli import fail, server_options

#: Tasks asked for per page while listing (the service's maximum).
PAGE = 1000
#: The `state` filters of tasks_list, as the reference names them.
STATES = ("ALL", "PENDING", "RUNNING", "PENDING_RUNNING", "COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILURE",
          "EXPIRED", "TIMED_OUT", "BOT_DIED", "CANCELED", "KILLED", "NO_RESOURCE", "CLIENT_ERROR", "DEDUPED")
TIMES = ("created_ts", "started_ts", "completed_ts")


@click.command()
@server_options
@click.option("--tag", "tags", multiple=True, metavar="KEY:VALUE",
              help="Only tasks with this tag (repeat to AND). A pool's viewers name it: --tag pool:NAME.")
@click.option("--state", type=click.Choice(STATES, case_sensitive=False), default="ALL", show_default=True,
              help="Only tasks in this state.")
@click.option("--sort", type=click.Choice(TIMES), default="created_ts", show_default=True,
              help="The time the tasks are listed by (newest first) and --start/--end bound.")
@click.option("--start", metavar="TIME", help="From this time on: RFC 3339 (2026-12-04T21:00:00Z) or epoch seconds.")
@click.option("--end", metavar="TIME", help="Before this time: RFC 3339 or epoch seconds.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many tasks (pages are followed up to it).")
@click.option("--count", "count_only", is_flag=True, help="Print how many tasks match instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of task results, or the count.")
def tasks(client: Client, tags: tuple[str, ...], state: str, sort: str, start: str | None, end: str | None,
          limit: int, count_only: bool, as_json: bool) -> None:
    """List tasks by state, tags and time, newest first."""
    for tag in tags:
        if ":" not in tag:
            raise click.BadParameter(f"{tag!r} is not key:value", param_hint="--tag")
    selection = {"tags": list(tags), "state": state.upper(), "sort": sort, "start": _time(start),
                 "end": _time(end)}
    try:
        if count_only:
            _print_count(client.call("tasks_count", selection), as_json)
            return
        found = list(_all_tasks(client, selection, limit))
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for task in found:
        click.echo(_line(task, sort))


def _time(text: str | None) -> str | float | None:
    """Epoch seconds as a number; anything else as given (the service checks it)."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def _all_tasks(client: Client, selection: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    """Follows the cursor until `limit` tasks or the end (a page may be short
    of its size with a cursor still set)."""
    cursor, shown = None, 0
    while shown < limit:
        page = client.call("tasks_list", {**selection, "limit": min(PAGE, limit - shown), "cursor": cursor})
        yield from page["items"]
        shown += len(page["items"])
        cursor = page["cursor"]
        if not cursor:
            return


def _print_count(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"count": answer["count"], "at_least": answer["at_least"]}))
    else:
        click.echo(f"{'at least ' if answer['at_least'] else ''}{answer['count']}")


def _line(task: dict[str, Any], sort: str) -> str:
    exit_code = "" if task["exit_code"] is None else f"exit {task['exit_code']}"
    return f"{task['task_id']}  {task['state']:<12} {task[sort] or '':<28} {exit_code:<8} {task['name']}"
