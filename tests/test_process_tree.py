"""bot/process_tree.py in a Python of its own that becomes a child subreaper
(as the task runner does), so that this test process stays as it is."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreapers are Linux's")

_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from bot import process_tree

    assert process_tree.become_subreaper()
    scans = []
    scan = process_tree._live_processes
    process_tree._live_processes = lambda: scans.append(1) or scan()
    command = subprocess.Popen(["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE)
    escaped = int(command.stdout.read())
    command.wait()  # Its orphan, out of its group, is re-parented to this subreaper.
    tree = process_tree.Tree.of_runner(command.pid, subreaper=True)
    found = [p.pid for p in tree.members()]
    scanned = len(scans)
    left = tree.kill()
    scans.clear()
    after = tree.members()
    print(found == [escaped], scanned, left == [], after == [], len(scans))
""")


def test_a_subreaper_finds_an_escaped_orphan_and_once_it_has_no_child_reads_no_process_list() -> None:
    answer = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    # The orphan is found by a scan, and killed; once the subreaper has no
    # child left, telling the tree empty scans nothing.
    assert answer.stdout.split() == ["True", "1", "True", "True", "0"], answer.stderr
