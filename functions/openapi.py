"""The HTTP API's OpenAPI document, made from the registry of functions, and
the reference in `docs/http-api.md`, rendered from that document.

`functions/openapi.json` is the committed copy (what reviewers and client
generators read), `docs/http-api.md` the one people read; `python -m
functions.openapi` rewrites both, and a test fails when either no longer
matches the registry. What a function does is its handler's docstring.
"""

import json
from pathlib import Path
from typing import Any

from functions.endpoints import FUNCTIONS
from functions.http import Function

PATH = Path(__file__).with_name("openapi.json")
MARKDOWN = Path(__file__).resolve().parents[1] / "docs" / "http-api.md"
ERROR_STATUSES = {
    "400": "Invalid input; `field` names it", "401": "No or unknown credentials", "403": "Not allowed",
    "404": "Unknown id", "405": "Method not allowed", "409": "Conflict", "413": "Too large",
    "503": "Retry later",
}
#: The conventions every function follows: the document's own description.
CONVENTIONS = """\
Every function is a Cloud Function at `BASE_URL/<name>` (the local gateway
serves the same paths). Calls are `POST` with a JSON object body; the readers
also take `GET` with the same names as query parameters; `bot_code` and
`bot_bootstrap` are `GET` only. Every call carries `Authorization: Bearer
<token>`: a Google ID token (a person, a CI service account, the timers'
service account), or a token the server signed (a bot's, a task runner's, a
bootstrap token). Who may call each function is said with it (`x-who`); the
roles come from the service configuration's pools and settings
(docs/fleet.md).

Errors are `{"error": {"code", "message", "field"?}}` with a fitting status:
400 names the invalid field by its path (`task_slices[1].properties.env[3].key`),
401 no or invalid credentials, 403 a caller without the role, 404 an unknown
id, 409 a conflict (a run the calling bot does not hold), 413 stdout past 100
MiB, 503 retry later. Every answer carries `X-Firestore-Reads`,
`X-Firestore-Writes` and `X-Cloud-Tasks-Ops`: what the call cost.

Field names, defaults and limits follow LUCI Swarming. Cursors are opaque
strings from the previous page, `null` on the last. Every bot call carries the
bot's `dimensions`, `state`, `version` and the last `session` the server
answered (`shared/bot_api.py` defines each bot message)."""
#: The sections of the reference in their order, by an operation's tag.
SECTIONS = {"tasks": "Tasks", "task": "A task", "bots": "The fleet", "bot": "Bots: the bot API, and one bot",
            "cas": "Files (content-addressed store)", "server": "Server", "timer": "Timers and cron",
            "cron": "Timers and cron"}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Serverless Swarming", "version": "1", "description": CONVENTIONS},
        "servers": [{"url": "{base_url}", "variables": {"base_url": {"default": "http://127.0.0.1:8080"}}}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A Google ID token, or a token the server signed "
                                                          "(a bot's, a task runner's, a bootstrap token)"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}}}}}},
            "responses": {f"Error{status}": {"description": text, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}} for status, text in ERROR_STATUSES.items()},
        },
        "security": [{"bearer": []}],
        "paths": {f"/{f.name}": _path(f) for f in FUNCTIONS},
    }


def _path(function: Function) -> dict[str, Any]:
    return {method.lower(): _operation(function, method) for method in function.methods}


def _operation(function: Function, method: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {
        "schema": {"type": "object"}}}}}
    responses.update({status: {"$ref": f"#/components/responses/Error{status}"} for status in ERROR_STATUSES})
    operation: dict[str, Any] = {
        "operationId": function.name if len(function.methods) == 1 else f"{function.name}_{method.lower()}",
        "summary": function.summary,
        "description": function.description,
        "tags": [function.name.split("_")[0]],
        "x-action": function.action.value,
        "x-who": function.action.who,
        "responses": responses,
    }
    if method == "POST":
        operation["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    return operation


def text() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    """The reference of the HTTP API, from the OpenAPI document alone."""
    lines = ["# The HTTP API", "",
             "<!-- Generated from functions/openapi.json by `python -m functions.openapi`: do not edit. -->", "",
             doc["info"]["description"], ""]
    by_section: dict[str, list[tuple[str, dict[str, Any]]]] = {title: [] for title in SECTIONS.values()}
    for path, operations in sorted(doc["paths"].items()):
        tag = next(iter(operations.values()))["tags"][0]
        by_section.setdefault(SECTIONS.get(tag, tag), []).append((path, operations))
    for section, entries in by_section.items():
        lines += [f"## {section}", ""]
        for path, operations in entries:
            lines += _markdown_function(path, operations)
    return "\n".join(lines).rstrip() + "\n"


def _markdown_function(path: str, operations: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(operations.values()))
    methods = ", ".join(method.upper() for method in operations)
    return [f"### `{path[1:]}`", "", f"**{first['summary']}.** {methods}; who: {first['x-who']}.",
            "", first["description"], ""]


def write() -> None:
    PATH.write_text(text())
    MARKDOWN.parent.mkdir(exist_ok=True)
    MARKDOWN.write_text(markdown(json.loads(text())))


if __name__ == "__main__":
    write()
