"""A real headless Chromium (Debian's chromium + chromium-driver, driven by selenium) and real engines.

The browser is started once per test session. Screenshots land in ``$RT_PHYSIO_ARTEFACTS`` (default: the pytest
base temp folder's ``artefacts/``), printed at the end of each test that saves one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)


def _find(names: tuple[str, ...], what: str) -> str:
    for name in names:
        if Path(name).is_file() or shutil.which(name):
            return name
    pytest.fail(f"{what} not found ({', '.join(names)}): `make test` installs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)", pytrace=False)


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM, "Chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    # an explicit driver path: selenium must never try to download a driver (no network)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_find(CHROMEDRIVER, "chromedriver")))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("RT_PHYSIO_ARTEFACTS", tmp_path_factory.getbasetemp() / "artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
