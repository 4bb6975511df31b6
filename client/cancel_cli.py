"""`swarming cancel` and `swarming cancel-tasks`: stop tasks, one by id or every one with some tags."""

import json
import sys
from typing import Any

import click

from client.api import ApiError, Client
from client.exit_status import ExitStatus
from client.tasks_cli import fail, server_options, tag_type

#: Tasks looked at per `tasks_cancel` call (its limit is 1000).
PAGE = 500


@click.command()
@server_options
@click.argument("task_id")
@click.option("--kill-running", is_flag=True, help="Also stop it if it runs (it ends KILLED); else only if pending.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer, {canceled, was_running}.")
def cancel(client: Client, task_id: str, kill_running: bool, as_json: bool) -> None:
    """Cancel a task: a pending one ends CANCELED, a running one (with --kill-running) KILLED.

    Exits 1 when nothing was cancelled: the task had ended, or runs and --kill-running was not given."""
    try:
        answer = client.call("task_cancel", {"task_id": task_id, "kill_running": kill_running})
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    elif answer["canceled"]:
        click.echo(f"{task_id}: {'killing (it was running)' if answer['was_running'] else 'canceled'}")
    if not answer["canceled"]:
        why = "it runs; give --kill-running to stop it" if answer["was_running"] else "it has ended"
        click.echo(f"error: {task_id} was not canceled: {why}", err=True)
        sys.exit(ExitStatus.ERROR)


@click.command("cancel-tasks")
@server_options
@click.option("--tag", "tags", multiple=True, required=True, type=tag_type, metavar="KEY:VALUE",
              help="Only tasks with this tag; repeat to AND tags. A pool:NAME tag lets a pool's admins cancel "
                   "others' tasks.")
@click.option("--kill-running", is_flag=True, help="Also stop the running ones (they end KILLED).")
@click.option("--json", "as_json", is_flag=True, help="Print {matched, canceled}.")
def cancel_tasks(client: Client, tags: tuple[str, ...], kill_running: bool, as_json: bool) -> None:
    """Cancel every pending task (and with --kill-running, every running one) having all the tags.

    Goes through the matching tasks page by page, showing the count so far on stderr."""
    total = {"matched": 0, "canceled": 0}
    body: dict[str, Any] = {"tags": list(tags), "kill_running": kill_running, "limit": PAGE, "cursor": None}
    try:
        while True:
            page = client.call("tasks_cancel", body)
            total = {key: total[key] + page[key] for key in total}
            body["cursor"] = page["cursor"]
            if not body["cursor"]:
                break
            click.echo(f"matched {total['matched']}, canceled {total['canceled']} so far", err=True)
    except ApiError as e:
        fail(e)
    except KeyboardInterrupt:
        click.echo(f"interrupted: matched {total['matched']}, canceled {total['canceled']}", err=True)
        sys.exit(ExitStatus.INTERRUPTED)
    click.echo(json.dumps(total, indent=2) if as_json else
               f"canceled {total['canceled']} of {total['matched']} matching tasks")
