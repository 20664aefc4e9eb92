"""Headless Chromium driven by selenium: Debian's ``chromium`` and the ``chromedriver`` of the same build
(scripts/deps/browser.sh), no download of either. Used by the dashboard's browser tests and its benchmark.

Pages of the dashboard set ``document.body.dataset.ready`` and the performance mark ``watcher-ready`` once
drawn; ``open`` and ``follow`` wait for that on the new page (never on the one being left).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
READY = "return !window.__left && document.body && document.body.dataset.ready === '1'"


def chromium(download_dir: Path | None = None, width: int = 1400, height: int = 1000) -> WebDriver:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    if download_dir is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    if download_dir is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def wait_ready(driver: WebDriver, timeout: float = 30) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(READY))


def open(driver: WebDriver, url: str, timeout: float = 30) -> None:
    driver.get(url)
    wait_ready(driver, timeout)


def follow(driver: WebDriver, element: WebElement, timeout: float = 30) -> None:
    """Click something that loads another page, and wait until that page is drawn."""
    driver.execute_script("window.__left = true")  # gone with the old page's window
    element.click()
    wait_ready(driver, timeout)


def ready_ms(driver: WebDriver) -> float:
    """Milliseconds from the navigation's start to the page being drawn (navigation timing)."""
    return float(driver.execute_script("return performance.getEntriesByName('watcher-ready')[0].startTime"))
