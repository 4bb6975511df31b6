"""Every composite index the store's queries need is declared in Terraform
(the emulator runs any query; production refuses one without its index)."""

import re
from pathlib import Path

import pytest

from functions import store

FIRESTORE_TF = Path(__file__).resolve().parents[1] / "infra" / "terraform" / "firestore.tf"
_INDEX_BLOCK = re.compile(r'resource\s+"google_firestore_index"\s+"\w+"\s*\{(.*?)\n\}', re.S)


def declared_indexes() -> set[tuple[str, tuple[str, ...]]]:
    declared = set()
    for body in _INDEX_BLOCK.findall(FIRESTORE_TF.read_text()):
        collection = re.search(r'collection\s*=\s*"([^"]+)"', body).group(1)
        fields = tuple(re.findall(r'field_path\s*=\s*"([^"]+)"', body))
        declared.add((collection, fields))
    return declared


def test_every_composite_index_is_declared_in_terraform():
    assert declared_indexes() >= store.COMPOSITE_INDEXES


def test_an_ordered_or_ranged_query_without_a_declared_index_is_refused():
    with pytest.raises(store.UndeclaredIndex, match="task_results"):
        store.query(None, store.TASK_RESULTS, [("state", "==", "PENDING")], order_by="created_ts")
    with pytest.raises(store.UndeclaredIndex, match="bots"):
        store.query(None, store.BOTS, [("is_dead", "==", True), ("updated_ts", "<", 0)])


def test_equality_filters_alone_need_no_composite_index(svc):
    """Firestore merges single-field indexes for them (the bot list filters)."""
    assert store.query(svc.store.db, store.BOTS, [("is_dead", "==", True), ("is_busy", "==", False)]) == []
