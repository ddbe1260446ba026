"""Browser fixtures: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium
against Django's live server, for tests that look at pages as a person does.

`browser` yields a WebDriver with a fresh profile and a 1366 x 900 window; `screenshot(driver,
name)` saves var/screenshots/<name>.png for people to look at. Without Chromium or its driver the
tests skip, saying what to install; with REQUIRE_SERVICES=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1366, 900)
WAIT = 30  # seconds a page may take to show what a test waits for
HOW_TO_INSTALL = "Install them with: apt-get install chromium chromium-driver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _missing_browser() -> list[str]:
    problems = []
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (Path(program).is_file() and os.access(program, os.X_OK)):
            problems.append(f"{program} is missing")
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("selenium is not installed (pip install -r requirements-dev.txt)")
    return problems


@pytest.fixture(scope="session")
def _browser_available() -> None:
    problems = _missing_browser()
    if problems:
        message = f"{'; '.join(problems)}. {HOW_TO_INSTALL}"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
        pytest.skip(f"needs headless Chromium: {message}")


@pytest.fixture
def browser(_browser_available):
    """A headless Chromium WebDriver with a fresh profile, quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name: str, *, full_page: bool = True) -> Path:
    """Save what the browser shows as var/screenshots/<name>.png (the whole page by default)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    if full_page:
        page_height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, max(height, min(int(page_height) + 140, 6000)))
    try:
        driver.save_screenshot(str(path))
    finally:
        if full_page:
            driver.set_window_size(width, height)
    return path


def admin_log_in(browser, live_server, username: str, *, password: str, language: str | None = None) -> None:
    """Log in through the admin's own form and wait for the dashboard; with `language`, switch the
    admin to it with the selector in its header, as staff do."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait = WebDriverWait(browser, WAIT)
    wait.until(expected_conditions.presence_of_element_located((By.CLASS_NAME, "console-panel")))
    if language is not None:
        Select(browser.find_element(By.ID, "language-select")).select_by_value(language)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "html").get_attribute("lang") == language)


def horizontal_overflow(driver) -> int:
    """How many pixels of the page must be scrolled sideways to be seen: the page wider than the
    window, or a table wider than its box (the admin wraps result tables in a scrolling box)."""
    script = """
        let worst = document.documentElement.scrollWidth - window.innerWidth;
        for (const box of document.querySelectorAll('.results, .module, #content-main, table')) {
            worst = Math.max(worst, box.scrollWidth - box.clientWidth);
        }
        return worst;
    """
    return int(driver.execute_script(script))
