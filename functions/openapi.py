"""The HTTP API's OpenAPI document, made from the registry of functions.

`functions/openapi.json` is the committed copy (what reviewers and client
generators read); `python -m functions.openapi` rewrites it, and a test fails
when it no longer matches the registry.
"""

import json
from pathlib import Path
from typing import Any

from functions.endpoints import FUNCTIONS
from functions.http import Function

PATH = Path(__file__).with_name("openapi.json")
ERROR_STATUSES = {
    "400": "Invalid input; `field` names it", "401": "No or unknown credentials", "403": "Not allowed",
    "404": "Unknown id", "405": "Method not allowed", "409": "Conflict", "413": "Too large",
    "503": "Retry later",
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Serverless Swarming", "version": "1",
                 "description": "Every function is a Cloud Function at BASE_URL/<name>. Field names, defaults "
                                "and limits follow LUCI Swarming (see README.md)."},
        "servers": [{"url": "{base_url}", "variables": {"base_url": {"default": "http://127.0.0.1:8080"}}}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token of the config file, or an OIDC ID token"}},
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
        "tags": [function.name.split("_")[0]],
        "x-roles": sorted(role.value for role in function.roles),
        "responses": responses,
    }
    if method == "POST":
        operation["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    else:
        operation["description"] = "Parameters as query strings (the same names as the POST body's fields)."
    return operation


def text() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    PATH.write_text(text())
