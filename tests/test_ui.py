"""The web UI in a real browser (playwright over the system's chromium)
against the real gateway, emulators and bots: sign-in, each page with real
data, the live stdout, the buttons, why a task is pending, readable errors,
and the accessibility basics. Each page's screenshot (1280×800) is saved
under SWARMING_UI_SCREENSHOTS (CI keeps it) or the test's tmp dir."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from functions import ui_session
from shared import local_state
from tests.builders import task_body
from tests.conftest import REPO

SWARMING = str(Path(sys.executable).with_name("swarming"))

#: Where the screenshots go (a directory CI keeps), else the test's tmp dir.
SCREENSHOTS_ENV = "SWARMING_UI_SCREENSHOTS"
CHROMIUM_ENV = "SWARMING_CHROMIUM"
#: Prints one line a second, the fourth in red.
LINES = ("import sys, time\n"
         "for i in range(8):\n"
         "    print(('\\x1b[31mline %d\\x1b[0m' if i == 3 else 'line %d') % i, flush=True)\n"
         "    time.sleep(1)\n")
#: The controls a keyboard must reach, and whose names the accessibility tree must give.
CONTROLS = "a[href], button, select, input:not([type=hidden]), textarea, [tabindex='0']"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
    if not executable:
        pytest.fail(f"no chromium: install Debian's 'chromium' package (make install does) or set {CHROMIUM_ENV}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    root = Path(os.environ[SCREENSHOTS_ENV]) if os.environ.get(SCREENSHOTS_ENV) else tmp_path / "screenshots"

    def shoot(page: Page, name: str) -> Path:
        path = root / f"{request.node.name}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        return path

    return shoot


@pytest.fixture
def sign_in(browser: Browser, base_url: str, tokens) -> Iterator[Callable[[str], Page]]:
    """A page of a browser signed in as `email` by the one-time link `local up` prints."""
    contexts = []

    def open_as(email: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{base_url}/ui/signin#{tokens.person(email)}")
        expect(page.locator("form.who span")).to_have_text(f"user:{email}")
        return page

    yield open_as
    for context in contexts:
        context.close()


def _new_task(api, role: str = "user", command: list[str] | None = None, **dims: str) -> str:
    body = task_body(command or ["true"], dimensions={"pool": "e2e", **dims})
    return api.ok("tasks_new", body, role=role)["task_id"]


def _wait(predicate: Callable[[], bool], secs: float = 60) -> None:
    deadline = time.monotonic() + secs
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _check_accessible(page: Page) -> None:
    """Every control is reached by Tab, in turn, and the accessibility tree
    names each one (a label, a text, an aria-label)."""
    expected = page.locator(CONTROLS).evaluate_all("els => els.filter(e => e.offsetParent !== null || "
                                                   "e.getClientRects().length).length")
    reached = set()
    page.locator("body").focus()
    for _ in range(expected + 5):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => { const e = document.activeElement; return e && e !== document.body ? "
                                  "[...document.querySelectorAll('*')].indexOf(e) : -1 }"))
    reached.discard(-1)
    assert len(reached) >= expected, f"Tab reached {len(reached)} of {expected} controls"
    tree = page.locator("main").aria_snapshot() + page.locator("header").aria_snapshot()
    unnamed = [line for line in tree.splitlines()
               if re.match(r"\s*- (button|combobox|listbox|textbox|link)\s*(\[|:|$)", line)]
    assert not unnamed, f"controls without a name: {unnamed}"


def test_the_sign_in_link_works_once_and_sets_an_http_only_cookie(browser, base_url, tokens, sign_in):
    link = f"{base_url}/ui/signin#{tokens.person('user@example.com')}"
    page = browser.new_page()
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Tasks")
    cookie = next(c for c in page.context.cookies() if c["name"] == ui_session.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert "#" not in page.url  # The token left the address bar.

    again = browser.new_page()
    again.goto(link)
    expect(again.locator("main")).to_contain_text("this sign-in link was used already")
    again.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("h1")).to_have_text("Sign in")
    assert not [c for c in page.context.cookies() if c["name"] == ui_session.COOKIE]
    page.close()


def test_the_link_local_up_prints_signs_the_browser_in_once(browser, tmp_path):
    state = str(tmp_path / "stack")
    up = subprocess.run([SWARMING, "local", "up", "--detach", "--state-dir", state], capture_output=True, text=True,
                        cwd=REPO, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        link = next(line for line in up.stdout.splitlines() if line.startswith("web UI: ")).removeprefix("web UI: ")
        assert re.fullmatch(r"http://[^/]+/ui/signin#[\w-]+\.[\w-]+\.[\w-]+", link), link
        page = browser.new_page()
        page.goto(link)
        expect(page.locator("form.who span")).to_have_text(f"user:{local_state.local_user()}")
        page.get_by_role("link", name="Bots").click()
        expect(page.locator("h1")).to_have_text("Bots")
        again = browser.new_page()
        again.goto(link)
        expect(again.locator("main")).to_contain_text("this sign-in link was used already")
    finally:
        subprocess.run([SWARMING, "local", "down", "--state-dir", state], capture_output=True, timeout=120)


def test_google_sign_in_s_cross_site_post_is_taken_with_its_csrf_double_submit_only(base_url, tokens):
    def post(credential: str, cookie: str, field: str) -> requests.Response:
        return requests.post(f"{base_url}/ui/signin", data={"credential": credential, ui_session.GOOGLE_CSRF: field},
                             cookies={ui_session.GOOGLE_CSRF: cookie}, allow_redirects=False, timeout=30,
                             headers={"Origin": "https://accounts.google.com", "Sec-Fetch-Site": "cross-site"})

    forged = post(tokens.person("user@example.com"), "one", "another")
    assert forged.status_code == 403 and "sign in from this site" in forged.text
    taken = post(tokens.person("user@example.com"), "same", "same")
    assert taken.status_code == 303 and taken.headers["Location"] == f"{base_url}/ui/"
    assert ui_session.COOKIE in taken.cookies
    for credential, status, why in (("garbage", 400, "not an ID token"), (tokens.bot(), 403, "only people"),
                                    (tokens.person("user@example.com", audience="https://elsewhere"), 401, "audience")):
        refused = post(credential, "same", "same")
        assert refused.status_code == status and why in refused.text, refused.text
        assert ui_session.COOKIE not in refused.cookies


def test_a_page_not_signed_in_leads_to_sign_in_and_a_foreign_post_is_not_signed_in(base_url, sign_in):
    answer = requests.get(f"{base_url}/ui/bots?pool=e2e", timeout=30)
    assert answer.status_code == 401 and answer.headers["Content-Type"].startswith("text/html")
    assert '<h1>Sign in</h1>' in answer.text and 'name="next" value="/bots?pool=e2e"' in answer.text
    page = sign_in("user@example.com")
    cookie = next(c for c in page.context.cookies() if c["name"] == ui_session.COOKIE)
    # Another site's form: its POST carries the cookie but is not signed in.
    posted = requests.post(f"{base_url}/ui/api/task_cancel", json={"task_id": "0" * 16},
                           cookies={ui_session.COOKIE: cookie["value"]},
                           headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, timeout=30)
    assert posted.status_code == 401


def test_the_task_page_follows_the_live_stdout_in_colour(api, sign_in, start_bot, shots):
    task_id = _new_task(api, command=[sys.executable, "-c", LINES])
    start_bot()
    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    stdout = page.locator("#stdout")
    expect(stdout).to_contain_text("line 3", timeout=60_000)
    assert api.ok("task_result", {"task_id": task_id})["state"] == "RUNNING"  # Seen before the task ended.
    expect(stdout.locator("span.ansi-fg31")).to_have_text("line 3")
    assert "\x1b" not in stdout.inner_text()
    expect(page.locator(".actions button", has_text="Kill")).to_be_visible()
    shots(page, "task-running")
    # Once the task ends, the page shows its result.
    expect(page.locator("h1 .state")).to_have_text("COMPLETED", timeout=60_000)
    expect(stdout).to_contain_text("line 7")
    expect(page.locator("#result dt:has-text('Exit code') + dd")).to_have_text("0")
    _check_accessible(page)
    shots(page, "task-completed")


def test_a_long_log_is_shown_from_its_tail_fetched_by_pieces(api, sign_in, start_bot):
    script = "import sys; sys.stdout.write('BEGIN\\n' + ('y' * 99 + '\\n') * 30000 + 'END\\n')"  # 3 MB.
    task_id = _new_task(api, command=[sys.executable, "-c", script])
    start_bot()
    _wait(lambda: api.ok("task_result", {"task_id": task_id})["state"] == "COMPLETED")
    page = sign_in("user@example.com")
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/api/task_stdout" in r.url else None)
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    stdout = page.locator("#stdout")
    expect(stdout).to_contain_text("END")
    assert "BEGIN" not in stdout.inner_text()
    earlier = page.locator("#stdout-earlier")
    expect(earlier).to_be_visible()
    earlier.click()
    _wait(lambda: stdout.inner_text().count("y" * 99) >= 22_000, 30)  # 2 MiB and 256 KiB more, of 100-byte lines.
    assert all(int(re.search(r"length=(\d+)", url).group(1)) <= 256 * 1024 for url in asked), asked


def test_what_a_task_carries_is_shown_as_text_never_run(api, sign_in):
    hostile = "<img src=x onerror=\"window.pwned=1\">"
    body = task_body(["echo", hostile], dimensions={"pool": "e2e"}, tags=[f"note:{hostile}"])
    task_id = api.ok("tasks_new", body)["task_id"]
    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    expect(page.locator("code.tag", has_text="note:")).to_have_text(f"note:{hostile}")
    expect(page.locator("main")).to_contain_text(f"echo {hostile}")
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("main img").count() == 0


def test_a_task_s_inputs_link_to_their_files_and_each_file_downloads(api, sign_in, tmp_path, as_user, shots):
    root = tmp_path / "inputs"
    (root / "nested").mkdir(parents=True)
    big = os.urandom(200 * 1024)  # Not packed: its own blob, downloaded by a signed URL.
    (root / "nested" / "big.bin").write_bytes(big)
    (root / "small.txt").write_text("small")
    archived = subprocess.run([SWARMING, "archive", "--server", api.base_url, str(root)], capture_output=True,
                              text=True, timeout=120, cwd=REPO)
    assert archived.returncode == 0, archived.stderr
    digest_hash, size = archived.stdout.strip().split("/")
    body = task_body(["true"], dimensions={"pool": "e2e"})
    body["task_slices"][0]["properties"]["cas_input_root"] = {"digest": {"hash": digest_hash, "size_bytes": int(size)}}
    task_id = api.ok("tasks_new", body)["task_id"]

    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    page.locator(f"a[href$='/ui/files/{digest_hash}/{size}']").click()
    files = page.locator("#files")
    expect(files).to_contain_text("small.txt")
    shots(page, "files")
    link = files.get_by_role("link", name="nested/big.bin")
    fetched = page.request.get(link.get_attribute("href"))
    assert fetched.ok and fetched.body() == big
    assert page.request.get(f"{api.base_url}/ui/files/{'0' * 64}/10").status == 404


def test_the_tasks_page_lists_newest_first_with_counts_filters_and_pages(api, sign_in, shots):
    ids = [_new_task(api, command=["echo", str(n)]) for n in range(3)]
    api.ok("task_cancel", {"task_id": ids[0]})
    other = api.ok("tasks_new", task_body(["true"], dimensions={"pool": "default"}))["task_id"]
    page = sign_in("user@example.com")

    page.goto(f"{api.base_url}/ui/tasks?pool=e2e")
    links = page.locator("#tasks tbody tr td:first-child a")
    expect(links).to_have_count(3)
    assert [href.rsplit("/", 1)[1] for href in links.evaluate_all("as => as.map(a => a.href)")] == ids[::-1]
    assert other not in page.content()  # Another pool's.
    expect(page.locator('#task-counts [data-count="PENDING"]')).to_contain_text("2")
    expect(page.locator('#task-counts [data-count="CANCELED"]')).to_contain_text("1")
    _check_accessible(page)
    shots(page, "tasks")

    page.select_option("#state", "CANCELED")
    page.locator("#task-filters button", has_text="Filter").click()
    expect(links).to_have_count(1)
    assert links.get_attribute("href").endswith(ids[0])

    page.goto(f"{api.base_url}/ui/tasks?pool=e2e&limit=2")
    expect(links).to_have_count(2)
    page.locator("#next-page").click()
    expect(links).to_have_count(1)
    assert links.get_attribute("href").endswith(ids[0])

    page.goto(f"{api.base_url}/ui/tasks?pool=e2e&since=century")
    expect(page.locator("main")).to_contain_text("since: one of")


def test_why_pending_and_cancel_from_the_page(api, sign_in, shots):
    impossible = _new_task(api, os="NoSuchOS")
    first, second = _new_task(api), _new_task(api)
    page = sign_in("user@example.com")

    page.goto(f"{api.base_url}/ui/task/{impossible}")
    row = page.locator("#why-pending tbody tr").first
    expect(row.locator(".matching")).to_have_text("0")
    expect(row.locator(".blocking")).to_contain_text("pool:e2e")  # No live bot at all in the pool.
    page.goto(f"{api.base_url}/ui/task/{second}")
    expect(page.locator("#why-pending .position").first).to_have_text("1")  # `first` is ahead of it.
    shots(page, "why-pending")

    page.locator(".actions button", has_text="Cancel").click()
    expect(page.locator("h1 .state")).to_have_text("CANCELED")
    assert api.ok("task_result", {"task_id": second})["state"] == "CANCELED"
    assert api.ok("task_result", {"task_id": first})["state"] == "PENDING"


def test_the_dimension_that_rules_out_the_most_bots_is_named(api, sign_in, start_bot):
    start_bot()
    _wait(lambda: api.ok("bots_count", {"dimensions": ["pool:e2e"]}, role="admin")["count"] == 1)
    task_id = _new_task(api, os="NoSuchOS")
    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    row = page.locator("#why-pending tbody tr").first
    expect(row.locator(".matching")).to_have_text("0")
    expect(row.locator(".blocking")).to_contain_text("os:NoSuchOS (0 live bots have it)")


def test_retry_makes_a_new_task_from_the_same_request(api, sign_in):
    task_id = _new_task(api, command=["echo", "again"])
    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/task/{task_id}")
    page.locator(".actions button", has_text="Retry").click()
    page.wait_for_url(re.compile(r".*/ui/task/(?!" + task_id + ")[0-9a-f]+$"))
    retried = page.url.rsplit("/", 1)[1]
    request = api.ok("task_request", {"task_id": retried})
    assert request["task_slices"][0]["properties"]["command"] == ["echo", "again"]
    assert "user:user@example.com" in request["tags"]


def test_a_viewer_sees_the_task_but_no_button_and_the_api_refuses_it(api, sign_in):
    body = task_body(["true"], dimensions={"pool": "authz"})
    task_id = api.ok("tasks_new", body, role="admin")["task_id"]
    admin = sign_in("admin@example.com")
    admin.goto(f"{api.base_url}/ui/task/{task_id}")
    expect(admin.locator(".actions button")).to_have_count(2)  # Cancel, Retry.

    viewer = sign_in("viewer@example.com")
    viewer.goto(f"{api.base_url}/ui/task/{task_id}")
    expect(viewer.locator("h1 .state")).to_have_text("PENDING")
    expect(viewer.locator(".actions button")).to_have_count(0)
    refused = viewer.evaluate("""async (id) => {
        const r = await fetch('/ui/api/task_cancel', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                      body: JSON.stringify({task_id: id})});
        return [r.status, (await r.json()).error.message];
    }""", task_id)
    assert refused[0] == 403 and "may not cancel task" in refused[1]
    assert api.ok("task_result", {"task_id": task_id}, role="admin")["state"] == "PENDING"


def test_the_bots_pages_show_the_fleet_filtered_and_one_bot(api, sign_in, start_bot, shots):
    start_bot("e2e-ui-bot")
    _wait(lambda: api.ok("bots_count", {"dimensions": ["pool:e2e"]}, role="admin")["count"] == 1)
    page = sign_in("user@example.com")
    page.goto(f"{api.base_url}/ui/bots?pool=e2e")
    expect(page.locator("#bots tbody")).to_contain_text("e2e-ui-bot")
    expect(page.locator('#counts [data-count="count"]')).to_have_text("1 bots")
    expect(page.locator('#counts [data-count="alive"]')).to_have_text("1 alive")
    _check_accessible(page)
    page.get_by_role("button", name="Load the pool's dimension values").click()
    expect(page.locator("#dimensions option", has_text="id:e2e-ui-bot")).to_have_count(1)
    shots(page, "bots")

    page.select_option("#dimensions", "id:e2e-ui-bot")
    page.select_option("#state", "dead")
    page.locator(".filters button", has_text="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]dimensions=id%3Ae2e-ui-bot&state=dead"))
    expect(page.locator("#bots tbody")).to_contain_text("No bot matches")

    page.goto(f"{api.base_url}/ui/bots?pool=e2e")
    page.locator("#bots a", has_text="e2e-ui-bot").click()
    expect(page.locator("h1")).to_contain_text("Bot e2e-ui-bot")
    expect(page.locator(".dims")).to_contain_text("e2e-ui-bot")
    expect(page.locator("#bot-events tbody")).to_contain_text("bot_connected")
    expect(page.locator(".actions button")).to_have_count(2)  # Terminate, Delete: user administers e2e.
    _check_accessible(page)
    shots(page, "bot")


def test_errors_are_readable_pages(api, sign_in, base_url):
    page = sign_in("user@example.com")
    page.goto(f"{base_url}/ui/task/{'0' * 15}1")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("no task")
    page.goto(f"{base_url}/ui/no/such/page")
    expect(page.locator("h1")).to_have_text("Not found")
    page.goto(f"{base_url}/ui/bots?state=sleeping")
    expect(page.locator("main")).to_contain_text("state: one of")


def test_a_person_without_a_role_reads_why_not(browser, base_url, tokens):
    page = browser.new_page()
    page.goto(f"{base_url}/ui/signin#{tokens.person('stranger@example.com')}")
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator("main")).to_contain_text("has no role in any pool")
    page.close()
