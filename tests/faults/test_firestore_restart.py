"""Case 4: Firestore restarted under load, its data restored. Two real bots
stream their tasks' stdout; the bots and the CLI are cut off (every
connection reset), Firestore's documents are exported with the emulator's
own export, the emulator is stopped and started again from that export, and
the bots come back. Every task ends once, its command run once, its stdout
byte for byte; `collect` waits through it all."""

import subprocess
import time

import pytest

from local import emulators
from tests.conftest import REPO
from tests.faults import checks
from tests.faults.proxy import Fault
from tests.faults.test_network_faults import SWARMING, _spared

BLOCKS = 400
TASKS = 2
#: How long Firestore stays down, its data exported.
DOWN_SECS = 3


@pytest.mark.usefixtures("as_user")
def test_tasks_end_once_with_their_stdout_across_a_firestore_restarted_from_its_export(
        svc, own_firestore, base_url, proxy, direct, start_bot, tmp_path):
    markers, go = [tmp_path / f"marker-{i}" for i in range(TASKS)], tmp_path / "go"
    task_ids = [subprocess.run([SWARMING, "trigger", "--server", base_url, "-d", "pool=e2e", "--wait-for-capacity",
                                "--", *checks.command(marker, BLOCKS, go)], capture_output=True, cwd=REPO,
                               timeout=120, check=True).stdout.decode().strip() for marker in markers]
    collects = [subprocess.Popen([SWARMING, "collect", "--server", base_url, "--timeout", "180", task_id],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO) for task_id in task_ids]
    try:
        for i in range(TASKS):
            start_bot(f"e2e-restart-{i}")
        for task_id in task_ids:
            checks.wait_stdout(direct, task_id, checks.first(BLOCKS))  # Both commands run.
        proxy.decide = lambda request: Fault.NONE if _spared(request) else Fault.RESET
        go.touch()  # The commands end while the service is cut off.
        time.sleep(1)  # Requests already past the proxy are answered.
        export = emulators.export_firestore(own_firestore.host, svc.settings.project, tmp_path / "export")
        own_firestore.stop()
        time.sleep(DOWN_SECS)
        own_firestore.start(import_data=export)
        proxy.decide = lambda _: Fault.NONE
        outputs = [collect.communicate(timeout=240) for collect in collects]
    finally:
        for collect in collects:
            collect.kill()

    printed = checks.first(BLOCKS) + checks.LAST
    for task_id, marker, collect, (out, err) in zip(task_ids, markers, collects, outputs):
        assert (collect.returncode, out) == (0, printed), err.decode()
        result = checks.assert_sound(direct, task_id, marker, printed)
        assert (result["state"], result["exit_code"], result["try_number"]) == ("COMPLETED", 0, 1)
