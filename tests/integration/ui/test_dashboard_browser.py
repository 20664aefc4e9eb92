"""The dashboard in headless Chromium against a real backend seeded with a scripted class over HTTP
(tests/support/classroom.py): sign in, course -> assignment -> student, sort, flags, a diff, the replay,
CSV and ProgSnap2 exports, the language switch.

``WATCHER_SCREENSHOTS=1`` also writes each view to docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from support import browser, classroom
from support.backend import run_backend

SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    env = {"WATCHER_STUCK_COMPILES": "3", "WATCHER_PASTE_BYTES": "1000", "WATCHER_TIME_ZONE": "Asia/Seoul"}
    handle = run_backend(tmp_path_factory.mktemp("ui"), env=env)
    classroom.seed(handle)
    yield handle
    handle.stop()


@pytest.fixture
def downloads(tmp_path):
    return tmp_path / "downloads"


@pytest.fixture
def driver(downloads):
    downloads.mkdir()
    d = browser.chromium(downloads)
    yield d
    d.quit()


def shot(driver, name: str) -> None:
    if os.environ.get("WATCHER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def downloaded(folder: Path, suffix: str) -> Path:
    """The file the browser finished downloading (Chromium writes *.crdownload until it is complete)."""
    WebDriverWait(None, 30).until(lambda _: [p for p in folder.iterdir() if p.name.endswith(suffix)])
    return next(p for p in folder.iterdir() if p.name.endswith(suffix))


def sign_in(driver, backend, token: str) -> None:
    browser.open(driver, backend.url + "/ui")
    assert driver.find_element(By.ID, "auth-error").text  # no token yet: the page says to sign in
    driver.find_element(By.ID, "token").send_keys(token)
    browser.follow(driver, driver.find_element(By.ID, "signin-button"))


def texts(driver, selector: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def student_rows(driver) -> list[str]:
    return [e.get_attribute("data-row") for e in driver.find_elements(By.CSS_SELECTOR, "#students tbody tr")]


def test_course_assignment_student_diff_replay_exports_and_language(backend, driver, downloads):
    sign_in(driver, backend, backend.tokens["read"])
    shot(driver, "courses")
    browser.follow(driver, driver.find_element(By.LINK_TEXT, "os"))

    # course -> assignments, with their charts
    assert driver.current_url.endswith("/ui/courses/os")
    rows = texts(driver, "#assignments tbody tr td:first-child")
    assert sorted(rows) == ["hw1", "hw1", "hw2"]  # hw1 in sections 1 and 2
    charts = driver.find_elements(By.CSS_SELECTOR, ".assignment-charts")
    assert len(charts) == 3 and all(c.find_elements(By.CSS_SELECTOR, "svg polyline, svg circle") for c in charts)
    assert "Asia/Seoul" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "course")

    link = driver.find_element(By.CSS_SELECTOR, "a[href='/ui/courses/os/sections/1/assignments/hw1']")
    browser.follow(driver, link)

    # assignment -> students: flags with their thresholds on the page, sorting, heat strips
    assert sorted(student_rows(driver)) == [classroom.S_STUCK, classroom.S_PASTE, classroom.S_STEADY]
    thresholds = driver.find_element(By.ID, "thresholds").text
    assert "3 or more failing compiles" in thresholds and "1000 bytes" in thresholds

    def row(student):
        return driver.find_element(By.CSS_SELECTOR, f"#students tr[data-row='{student}']")

    assert [f.text for f in row(classroom.S_STUCK).find_elements(By.CSS_SELECTOR, ".flag")] == ["stuck"]
    assert [f.text for f in row(classroom.S_PASTE).find_elements(By.CSS_SELECTOR, ".flag")] == ["large paste"]
    assert not row(classroom.S_STEADY).find_elements(By.CSS_SELECTOR, ".flag")
    assert all(
        r.find_elements(By.CSS_SELECTOR, "svg.heat path")
        for r in driver.find_elements(By.CSS_SELECTOR, "#students tbody tr")
    )
    saves = driver.find_element(By.CSS_SELECTOR, "#students th[data-key='saves']")
    saves.click()  # ascending: the paste student saved twice, the stuck one five times, the steady one seven
    assert student_rows(driver) == [classroom.S_PASTE, classroom.S_STUCK, classroom.S_STEADY]
    saves.click()
    assert student_rows(driver) == [classroom.S_STEADY, classroom.S_STUCK, classroom.S_PASTE]
    shot(driver, "assignment")

    # exports: the table as CSV, the assignment as a ProgSnap2 zip
    driver.find_element(By.ID, "export-csv").click()
    table = downloaded(downloads, ".csv").read_text(encoding="utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(table)))
    assert [r["Student"] for r in exported] == [classroom.S_STEADY, classroom.S_STUCK, classroom.S_PASTE]
    assert {r["Student"]: r["Flags"] for r in exported}[classroom.S_STUCK] == "stuck"
    assert {r["Student"]: r["Failed compiles"] for r in exported}[classroom.S_STUCK] == "4"
    driver.find_element(By.ID, "export-progsnap2").click()
    archive = zipfile.ZipFile(downloaded(downloads, ".zip"))
    main_table = archive.read("progsnap2-os-1-hw1/MainTable.csv").decode()
    assert main_table.count("File.Edit") == 7 + 5 + 2 and classroom.S_OTHER_SECTION not in main_table
    assert any(name.startswith("progsnap2-os-1-hw1/CodeStates/") for name in archive.namelist())

    # student timeline: every event on one axis; a save opens its code and the diff from the previous one
    browser.follow(driver, driver.find_element(By.LINK_TEXT, classroom.S_STEADY))
    marks = driver.find_elements(By.CSS_SELECTOR, "#axis .mark")
    assert len(marks) == len(driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 7 + 5 + 4
    detail = texts(driver, "#events tbody td:nth-child(4)")
    assert "signal 11" in detail and "failed (exit 1)" in detail
    assert "gcc -Wall -o main main.c" in texts(driver, "#events tbody td:nth-child(5)")
    main_saves = [r for r in driver.find_elements(By.CSS_SELECTOR, "#events tr.save") if "main.c" in r.text]
    main_saves[1].click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "diff"))
    assert driver.find_element(By.ID, "code").text == classroom.STEADY_VERSIONS[1].rstrip("\n")
    added = texts(driver, "#diff .add")
    assert added == ['+    printf("hello\\n");']
    shot(driver, "student")

    # the replay: main.c from its last version back to its first, one step at a time
    from selenium.webdriver.support.select import Select

    Select(driver.find_element(By.ID, "replay-file")).select_by_visible_text("main.c")
    slider = driver.find_element(By.ID, "replay-slider")
    code = driver.find_element(By.ID, "replay-code")
    WebDriverWait(driver, 30).until(lambda d: code.text == classroom.STEADY_VERSIONS[-1].rstrip("\n"))
    for version in reversed(range(len(classroom.STEADY_VERSIONS) - 1)):
        slider.send_keys(Keys.ARROW_LEFT)
        WebDriverWait(driver, 30).until(lambda d: code.get_attribute("data-version") == str(version))
        assert code.text == classroom.STEADY_VERSIONS[version].rstrip("\n")
    assert "1 / 5" in driver.find_element(By.ID, "replay-label").text

    # the language switch: Korean labels, the same data
    browser.follow(driver, driver.find_element(By.ID, "lang"))
    assert driver.find_element(By.ID, "lang").text == "English"
    assert "타임라인" in driver.find_element(By.TAG_NAME, "main").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#axis .mark")) == 16
    shot(driver, "student-ko")
    browser.open(driver, backend.url + "/ui/courses/os/sections/1/assignments/hw1")
    headers = texts(driver, "#students th")
    assert "학생" in headers and "실패한 컴파일" in headers
    assert "막힘" in texts(driver, "#students .flag")
    shot(driver, "assignment-ko")


def test_a_wrong_token_is_refused_on_the_page(backend, driver):
    browser.open(driver, backend.url + "/ui")
    driver.find_element(By.ID, "token").send_keys("not-a-token-at-all")
    browser.follow(driver, driver.find_element(By.ID, "signin-button"))
    assert "The token was refused" in driver.find_element(By.ID, "auth-error").text
    assert not driver.find_elements(By.CSS_SELECTOR, ".course")


def test_a_section_scoped_token_sees_only_its_section(backend, driver):
    with backend.client("admin") as http:
        r = http.post("/api/v1/admin/tokens", json={"name": "ta-os-1", "courses": ["os/1"]})
    assert r.status_code == 201, r.text
    sign_in(driver, backend, r.json()["token"])
    listed = texts(driver, ".course tbody tr td:nth-child(2)")
    assert listed and set(listed) == {"1"}  # the courses page: section 1's assignments only
    browser.follow(driver, driver.find_element(By.LINK_TEXT, "os"))
    assert texts(driver, "#assignments tbody tr td:nth-child(2)") == ["1", "1"]
    assert len(driver.find_elements(By.CSS_SELECTOR, ".assignment-charts")) == 2
    assert classroom.S_OTHER_SECTION not in driver.page_source

    # its own students' code opens (the page says whose save it is); section 2 is refused
    browser.open(driver, backend.url + f"/ui/courses/os/sections/1/assignments/hw1/students/{classroom.S_STEADY}")
    driver.find_elements(By.CSS_SELECTOR, "#events tr.save")[0].click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "code"))
    assert driver.find_element(By.ID, "code").text == classroom.UTIL_VERSIONS[0].rstrip("\n")
    for page in (
        "/ui/courses/os/sections/2/assignments/hw1",
        f"/ui/courses/os/sections/2/assignments/hw1/students/{classroom.S_OTHER_SECTION}",
    ):
        browser.open(driver, backend.url + page)
        refused = driver.find_element(By.ID, "auth-error").text
        assert refused.startswith("Not for this token") and "may not read course 'os' section '2'" in refused
        assert not driver.find_elements(By.CSS_SELECTOR, "#students, #events")


def test_a_long_timeline_shows_its_first_page_whole_then_loads_more(backend, driver):
    script = classroom.Script(backend, "202600077", "1", "hw3", classroom.T0)
    for i in range(1100):  # more than a page (1,000) and than the rows drawn with the page (150)
        script.run(exit_code=i % 3, after=7)
    for start in range(0, 1100, 500):
        res = backend.post_events(script.events[start : start + 500])
        assert res.status_code == 200 and res.json()["accepted"] == len(script.events[start : start + 500])
    browser.open(driver, backend.url + "/ui")
    driver.execute_script("sessionStorage.setItem('watcher.token', arguments[0])", backend.tokens["read"])
    browser.open(driver, backend.url + "/ui/courses/os/sections/1/assignments/hw3/students/202600077")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".events[data-complete]"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 1000
    assert len(driver.find_elements(By.CSS_SELECTOR, "#axis .mark")) == 1000
    more = driver.find_element(By.ID, "load-more")
    more.click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "shown").text.startswith("1100 "))
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".events[data-complete]"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 1100
    assert not more.is_displayed()


def test_an_assignment_or_student_page_requests_its_data_once(backend, driver):
    # index.html starts the request before app.js loads; app.js takes it over instead of asking again
    browser.open(driver, backend.url + "/ui")
    driver.execute_script("sessionStorage.setItem('watcher.token', arguments[0])", backend.tokens["read"])
    base = "/ui/courses/os/sections/1/assignments/hw1"
    for page, data in ((base, "/activity"), (f"{base}/students/{classroom.S_STEADY}", "/events?limit=1000")):
        browser.open(driver, backend.url + page)
        requested = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/api/v1/'))"
        )
        assert [n for n in requested if n.endswith(data)] == [backend.url + "/api/v1" + page[3:] + data]
    assert driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")
