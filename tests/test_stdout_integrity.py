"""A run's stdout is what its bot sent, or less, never other bytes: written
bytes are never replaced, a packet that arrives after the run's end is kept
up to the length the end gave, and a hole is never read as bytes."""

import base64
import logging
import uuid

import pytest

from functions import stdout
from functions.stdout import CHUNK_SIZE, Chunk, Refused
from tests.builders import bot_body, task_body


# The chunks: pure logic.

def _written(*packets: tuple[int, bytes]) -> dict[int, Chunk]:
    """The chunks after these packets (offset, bytes), in order."""
    chunks: dict[int, Chunk] = {}
    for offset, data in packets:
        chunks.update(stdout.write(chunks, offset, data))
    return chunks

def test_a_chunk_keeps_which_bytes_were_written_and_an_identical_rewrite_changes_nothing():
    chunks = stdout.write({}, 7, b"line 2\n")
    assert chunks[0].spans == ((7, 14),)
    filled = stdout.write(chunks, 0, b"line 1\n")[0]
    assert filled.spans == ((0, 14),) and filled.data == b"line 1\nline 2\n"
    assert stdout.write({0: filled}, 3, b"e 1\nli") == {}
    assert Chunk.from_doc(filled.to_doc()) == filled


def test_across_a_chunk_boundary_each_chunk_gets_its_part():
    chunks = stdout.write({}, CHUNK_SIZE - 2, b"abcd")
    assert {i: (c.spans, c.data[-2:]) for i, c in chunks.items()} == {
        0: (((CHUNK_SIZE - 2, CHUNK_SIZE),), b"ab"), 1: (((0, 2),), b"cd")}


def test_a_rewrite_of_other_bytes_is_refused_naming_the_first_byte_that_differs():
    chunks = stdout.write({}, CHUNK_SIZE - 2, b"abcd")
    with pytest.raises(Refused, match=f"byte {CHUNK_SIZE + 1} differs"):
        stdout.write(chunks, CHUNK_SIZE - 1, b"bcX")
    with pytest.raises(Refused):
        stdout.write(chunks, CHUNK_SIZE - 4, b"\0\0\0")  # a NUL over a written byte is a change too
    assert set(stdout.write(chunks, CHUNK_SIZE - 4, b"\0\0")) == {0}  # the hole before it is not written


def test_a_chunk_stored_before_spans_were_kept_counts_as_written_whole():
    assert Chunk.from_doc({"data": b"abc"}).spans == ((0, 3),)


def test_a_read_stops_at_the_first_hole_and_tells_a_hole_from_the_end():
    chunks = _written((0, b"head"), (10, b"tail"))
    assert stdout.read(chunks, 0, 100) == stdout.Read(b"head", gap=True)
    assert stdout.read(chunks, 10, 100) == stdout.Read(b"tail", gap=False)
    assert stdout.read(chunks, 10, 100, final_length=20) == stdout.Read(b"tail", gap=True)
    assert stdout.read(chunks, 0, 2) == stdout.Read(b"he", gap=False)  # a page, not a hole
    whole = _written((0, b"x" * CHUNK_SIZE), (CHUNK_SIZE, b"y"))
    assert stdout.read(whole, CHUNK_SIZE - 1, 100) == stdout.Read(b"xy", gap=False)
    assert stdout.read({1: whole[1]}, 0, CHUNK_SIZE + 1) == stdout.Read(b"", gap=True)  # a missing chunk


# Through the bot API and task_stdout, on the emulator.

def _running(api) -> tuple[str, str]:
    task_id = api.ok("tasks_new", task_body())["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id=uuid.uuid4().hex), role="bot")
    return task_id, claim["manifest"]["task_id"]


def _update(api, run_id: str, data: bytes, offset: int, **fields):
    body = bot_body(task_id=run_id, output=base64.b64encode(data).decode(), output_chunk_start=offset, **fields)
    return api.post("bot_task_update", body, role="bot")


def _stdout(api, task_id: str, **params) -> tuple[bytes, int, bool]:
    answer = api.ok("task_stdout", {"task_id": task_id, **params})
    return base64.b64decode(answer["output"]), answer["next_offset"], answer["gap"]


def test_an_identical_rewrite_is_accepted_and_a_different_one_refused_and_logged(api, caplog):
    task_id, run_id = _running(api)
    assert _update(api, run_id, b"hello world\n", 0).status_code == 200
    assert _update(api, run_id, b"world", 6).status_code == 200
    with caplog.at_level(logging.WARNING, logger="functions.runs"):
        refused = _update(api, run_id, b"there", 6)
    assert refused.status_code == 409 and "byte 6 differs" in refused.json()["error"]["message"]
    assert f"run {run_id} of bot bot-1: output: byte 6 differs" in caplog.text
    assert _stdout(api, task_id) == (b"hello world\n", 12, False)


def test_a_hole_is_never_read_as_bytes_and_the_missing_packet_fills_it(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, b"world\n", 6).status_code == 200
    assert _stdout(api, task_id) == (b"", 0, True)
    assert _stdout(api, task_id, offset=6) == (b"world\n", 12, False)
    assert _update(api, run_id, b"hello ", 0).status_code == 200
    assert _stdout(api, task_id) == (b"hello world\n", 12, False)


def test_a_missing_chunk_stops_the_read_where_the_stdout_stops_and_says_so(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, b"a" * 10, 0).status_code == 200
    assert _update(api, run_id, b"c" * 10, 2 * CHUNK_SIZE).status_code == 200
    assert _stdout(api, task_id) == (b"a" * 10, 10, True)


def test_packets_sent_before_the_end_are_kept_after_it_up_to_the_length_it_gave(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, b"first ", 0).status_code == 200
    # The end rides on the last packet; the one before it (bytes 6..13) is still on its way.
    assert _update(api, run_id, b"third\n", 13, exit_code=0, duration=1.0).status_code == 200
    assert api.ok("task_result", {"task_id": task_id})["stdout_length"] == 19
    assert _stdout(api, task_id) == (b"first ", 6, True)
    late = _update(api, run_id, b"second ", 6)
    assert late.status_code == 200 and late.json()["must_stop"] is True
    assert _stdout(api, task_id) == (b"first second third\n", 19, False)
    assert _update(api, run_id, b"third\n", 13, exit_code=0, duration=1.0).status_code == 200  # the end resent
    past_the_end = _update(api, run_id, b"more", 19)
    assert past_the_end.status_code == 409 and "ended with 19 bytes" in past_the_end.json()["error"]["message"]
    assert _update(api, run_id, b"SECOND", 6).status_code == 409
    assert _stdout(api, task_id) == (b"first second third\n", 19, False)


def test_output_that_is_not_base64_is_a_400_naming_it(api):
    task_id, run_id = _running(api)
    response = api.post("bot_task_update", bot_body(task_id=run_id, output="é", output_chunk_start=0), role="bot")
    assert response.status_code == 400 and response.json()["error"]["field"] == "output"
    assert _stdout(api, task_id) == (b"", 0, False)
