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

from functions import endpoints
from functions.endpoints import FUNCTIONS
from functions.errors import HttpError
from functions.http import Function
from shared.bot_api import BOT_TOKEN_HEADER
from shared.wire import Schema

PATH = Path(__file__).with_name("openapi.json")
MARKDOWN = Path(__file__).resolve().parents[1] / "docs" / "http-api.md"
ERROR_STATUSES = {
    400: "Invalid input; `field` names it", 401: "No or unknown credentials", 403: "Not allowed",
    404: "Unknown id", 405: "Method not allowed", 409: "Conflict", 413: "Too large", 503: "Retry later",
}
#: Each error status's `code` (functions/errors.py).
CODES = {error.status: error.code for error in HttpError.__subclasses__()}
#: What every answer carries: what the call cost.
COST_HEADERS = ("X-Firestore-Reads", "X-Firestore-Writes", "X-Cloud-Tasks-Ops")
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
            "cron": "Timers and cron", "config": "Server"}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Serverless Swarming", "version": "1", "description": CONVENTIONS},
        "servers": [{"url": "{base_url}", "variables": {"base_url": {"default": "http://127.0.0.1:8080"}}}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A Google ID token, or a token the server signed "
                                                          "(a bot's, a task runner's, a bootstrap token)"}},
            "schemas": {"Error": _error_schema()},
            "headers": {name: {"description": "What the call cost", "schema": {"type": "string",
                                                                               "pattern": "^[0-9]+$"}}
                        for name in COST_HEADERS},
            "responses": {f"Error{status}": _error(status, text) for status, text in ERROR_STATUSES.items()},
        },
        "security": [{"bearer": []}],
        "paths": {f"/{f.name}": _path(f) for f in FUNCTIONS},
    }


def _error_schema() -> Schema:
    """The API's error (shared/api_error.py): `field` names a 400's field."""
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}


def _error(status: int, text: str) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"},
                        {"properties": {"error": {"properties": {"code": {"const": CODES[status]}}}}}]}
    return {"description": text, "headers": _cost_headers(), "content": {"application/json": {"schema": schema}}}


def _cost_headers() -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in COST_HEADERS}


def _path(function: Function) -> dict[str, Any]:
    return {method.lower(): _operation(function, method) for method in function.methods}


def _operation(function: Function, method: str) -> dict[str, Any]:
    """A function's contract (functions.endpoints.takes) says what it reads and answers."""
    contract = endpoints.contract(function)
    params = contract.params.schema()
    operation: dict[str, Any] = {
        "operationId": function.name if len(function.methods) == 1 else f"{function.name}_{method.lower()}",
        "summary": function.summary,
        "description": function.description,
        "tags": [function.name.split("_")[0]],
        "x-action": function.action.value,
        "x-who": function.action.who,
        "responses": _responses(function, contract),
    }
    if method == "POST":
        operation["requestBody"] = {"required": bool(params.get("required")), "content": {"application/json": {
            "schema": params}}}
    else:
        operation["parameters"] = _query(params, function.token_param)
    return operation


def _responses(function: Function, contract: endpoints.Contract) -> dict[str, Any]:
    media, answer = contract.media, contract.answer
    headers = {**_cost_headers(), BOT_TOKEN_HEADER: {"description": "To a bot: its renewed bot token",
                                                     "schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": headers,
                                         "content": {media: {"schema": answer}}}}
    if contract.redirects:
        responses["302"] = {"description": "To the current version", "headers": {
            "Location": {"schema": {"type": "string", "format": "uri"}}, **_cost_headers()}}
    statuses = sorted(endpoints.COMMON_ERRORS + contract.errors)
    responses.update({str(status): {"$ref": f"#/components/responses/Error{status}"} for status in statuses})
    return responses


def _query(params: Schema, token: bool) -> list[dict[str, Any]]:
    """The parameters of a GET: what a query string can carry of each."""
    required = params.get("required", [])
    parameters = [{"name": name, "in": "query", "required": name in required, "schema": _queried(schema)}
                  for name, schema in params.get("properties", {}).items()]
    if token:
        parameters.append({"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                           "description": "A bootstrap token, when the call has no Authorization header"})
    return parameters


def _queried(schema: Schema) -> Schema:
    """A query string has neither null nor objects: only the alternatives it can carry."""
    if "anyOf" in schema:
        kept = [_queried(s) for s in schema["anyOf"] if s.get("type") not in ("null", "object")]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**kept[0], **rest} if len(kept) == 1 else {"anyOf": kept, **rest}
    if schema.get("type") == "array":
        return {**schema, "items": _queried(schema["items"])}
    return schema


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
    lines = [f"### `{path[1:]}`", "", f"**{first['summary']}.** {methods}; who: {first['x-who']}.",
             "", first["description"], ""]
    body = first.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    fields = ({name: (schema, name in body.get("required", [])) for name, schema in body.get("properties", {}).items()}
              if body else {p["name"]: (p["schema"], p["required"]) for p in first.get("parameters", [])})
    lines += [f"- `{name}`{' (required)' if required else ''}: {_kind(schema)}"
              for name, (schema, required) in fields.items()]
    statuses = sorted(code for code in first["responses"] if code != "200")
    media = ", ".join(first["responses"]["200"].get("content", {}))
    return lines + ([""] if fields else []) + [f"Answers 200 ({media}); also {', '.join(statuses)}.", ""]


def _kind(schema: Schema) -> str:
    """A field's schema in a few words: its type, bounds, default and description."""
    if "anyOf" in schema or "oneOf" in schema:
        kinds = [_kind(s) for s in schema.get("anyOf", schema.get("oneOf", []))]
        text = " or ".join(dict.fromkeys(kinds))
    else:
        kind = schema.get("type", "any")
        text = " or ".join(kind) if isinstance(kind, list) else kind
        if "enum" in schema:
            text = "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
        if kind == "array":
            text = f"list of {_kind(schema['items'])}"
        bounds = [f"{word} {schema[key]}" for key, word in _BOUNDS if key in schema]
        text += f" ({', '.join(bounds)})" if bounds else ""
    extra = [f"default `{json.dumps(schema['default'])}`"] if "default" in schema else []
    extra += [schema["description"]] if "description" in schema else []
    return "; ".join([text, *extra])


_BOUNDS = [("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
           ("minItems", "≥"), ("maxItems", "≤"), ("maxProperties", "keys ≤"), ("pattern", "matching")]


def write() -> None:
    PATH.write_text(text())
    MARKDOWN.parent.mkdir(exist_ok=True)
    MARKDOWN.write_text(markdown(json.loads(text())))


if __name__ == "__main__":
    write()
