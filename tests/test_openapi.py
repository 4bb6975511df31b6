"""The OpenAPI document matches the registry of functions, and is current."""

import json

import requests

from functions import openapi
from functions.endpoints import FUNCTIONS


def test_every_function_and_only_they_are_documented_with_their_methods_and_who_may_call_them():
    paths = json.loads(openapi.PATH.read_text())["paths"]
    assert set(paths) == {f"/{f.name}" for f in FUNCTIONS}
    for function in FUNCTIONS:
        operations = paths[f"/{function.name}"]
        assert set(operations) == {m.lower() for m in function.methods}, function.name
        for operation in operations.values():
            assert operation["summary"], function.name
            assert (operation["x-action"], operation["x-who"]) == (function.action.value, function.action.who)


def test_the_committed_document_is_current():
    """Regenerate with `python -m functions.openapi` after changing the registry."""
    assert openapi.PATH.read_text() == openapi.text()


def test_the_reference_in_docs_is_rendered_from_the_committed_document():
    """docs/http-api.md is not written by hand: `python -m functions.openapi` renders it."""
    document = json.loads(openapi.PATH.read_text())
    assert openapi.MARKDOWN.read_text() == openapi.markdown(document)
    for function in FUNCTIONS:
        assert f"### `{function.name}`" in openapi.MARKDOWN.read_text()
        assert function.description and function.description in openapi.MARKDOWN.read_text(), function.name


def test_the_gateway_serves_it(base_url):
    answer = requests.get(f"{base_url}/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.json()["openapi"].startswith("3.")
