import datetime
import random

from client.exit_status import ExitStatus, for_result
from functions import stdout
from shared import task_id

def _now_in_millis() -> datetime.datetime:
    """The present, to the millisecond a task id keeps."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


NOW = _now_in_millis()


def test_task_id_shape_and_time():
    tid = task_id.task_id(task_id.new_request_id(NOW, random.Random(1)))
    assert len(tid) == 16 and tid.endswith("0") and task_id.is_valid(tid)
    assert task_id.created_at(tid) == NOW
    assert task_id.run_id(tid, 1) == tid[:-1] + "1"
    assert task_id.summary_id(task_id.run_id(tid, 1)) == tid
    assert not task_id.is_valid("xyz") and not task_id.is_valid("")


def test_task_ids_sort_by_creation_time():
    later = NOW + datetime.timedelta(milliseconds=1)
    assert task_id.task_id(task_id.new_request_id(NOW)) < task_id.task_id(task_id.new_request_id(later))


def test_stdout_pieces_cover_the_packet_exactly():
    data = b"x" * (stdout.CHUNK_SIZE + 10)
    pieces = stdout.pieces(stdout.CHUNK_SIZE - 5, data)
    assert [(i, p, len(b)) for i, p, b in pieces] == [
        (0, stdout.CHUNK_SIZE - 5, 5), (1, 0, stdout.CHUNK_SIZE), (2, 0, 5)]
    assert b"".join(b for _, _, b in pieces) == data
    assert stdout.pieces(0, b"") == []


def test_exit_codes_mirror_the_task():
    assert for_result({"state": "COMPLETED", "exit_code": 0}) == 0
    assert for_result({"state": "COMPLETED", "exit_code": 3}) == 3
    assert for_result({"state": "COMPLETED", "exit_code": -9}) == 137
    assert for_result({"state": "TIMED_OUT", "exit_code": -15}) == ExitStatus.TIMED_OUT
    assert for_result({"state": "EXPIRED"}) == ExitStatus.EXPIRED
    assert for_result({"state": "BOT_DIED"}) == ExitStatus.BOT_DIED
