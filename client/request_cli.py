"""`swarming request-show`: what a task was asked to run."""

import json
from typing import Any

import click

from client.api import ApiError, Client
from client.tasks_cli import fail, server_options


@click.command("request-show")
@server_options
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stored request as JSON (a NewTaskRequest).")
def request_show(client: Client, task_id: str, as_json: bool) -> None:
    """Show a task's request: its fields and each slice's properties. Its secret bytes are never shown."""
    try:
        request = client.call("task_request", {"task_id": task_id})
    except ApiError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(request, indent=2))
        return
    for key in ("name", "user", "authenticated", "priority", "parent_task_id", "service_account"):
        if request.get(key) not in (None, ""):
            click.echo(f"{key + ':':<17}{request[key]}")
    click.echo(f"{'tags:':<17}{' '.join(request.get('tags', []))}")
    for index, task_slice in enumerate(request["task_slices"]):
        click.echo(f"slice {index}: expiration {task_slice['expiration_secs']} s"
                   f"{', waits for capacity' if task_slice.get('wait_for_capacity') else ''}")
        for line in properties_lines(task_slice["properties"]):
            click.echo(f"  {line}")


def properties_lines(properties: dict[str, Any]) -> list[str]:
    """One line per set property, `key: value`."""
    shown = {
        "command": " ".join(properties["command"]),
        "dimensions": " ".join(f"{d['key']}={d['value']}" for d in properties.get("dimensions", [])),
        "relative_cwd": properties.get("relative_cwd"),
        "env": " ".join(f"{e['key']}={e['value']}" for e in properties.get("env", [])),
        "env_prefixes": " ".join(f"{e['key']}={':'.join(e['value'])}" for e in properties.get("env_prefixes", [])),
        "cas_input_root": _digest(properties.get("cas_input_root")),
        "caches": " ".join(f"{c['name']}={c['path']}" for c in properties.get("caches", [])),
        "outputs": " ".join(properties.get("outputs", [])),
        "timeouts": f"hard {properties.get('execution_timeout_secs')} s, io {properties.get('io_timeout_secs')} s, "
                    f"grace {properties.get('grace_period_secs')} s",
        "idempotent": "yes" if properties.get("idempotent") else "",
        "secret_bytes": "yes (not shown)" if properties.get("has_secret_bytes") else "",
    }
    return [f"{key + ':':<15}{value}" for key, value in shown.items() if value]


def _digest(reference: dict[str, Any] | None) -> str:
    return f"{reference['digest']['hash']}/{reference['digest']['size_bytes']}" if reference else ""
