"""The built docs render in headless Chromium, and no code block scrolls sideways.

Needs a built site: set ``SKCONCEPTS_DOCS_HTML`` to its folder, e.g.::

    python -m sphinx -W -b html docs docs/_build/html
    SKCONCEPTS_DOCS_HTML=docs/_build/html python -m pytest tests/test_docs_render.py

(``.ci/run`` does exactly this after the docs build.) Without it, or without
selenium, Chromium and chromedriver (Debian: ``apt-get install chromium
chromium-driver``), the tests skip and say why.

At a 1 300 x 1 500 window, the front page and a gallery page are captured and
must not be blank, the gallery page shows its figures, and on those pages and
every page of the user guide and the gallery each ``<pre>`` element's
``scrollWidth`` is at most its ``clientWidth``.
"""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

WIDTH, HEIGHT = 1300, 1500
SITE = os.environ.get("SKCONCEPTS_DOCS_HTML")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
GALLERY_PAGE = "auto_examples/plot_concepts_in_five_minutes.html"


def _site():
    if not SITE:
        pytest.skip(
            "no built site: build the docs (python -m sphinx -W -b html docs "
            "docs/_build/html) and set SKCONCEPTS_DOCS_HTML=docs/_build/html"
        )
    site = Path(SITE).resolve()
    if not (site / "index.html").is_file():
        pytest.fail(f"SKCONCEPTS_DOCS_HTML={SITE!r} holds no index.html")
    return site


@pytest.fixture(scope="module")
def site():
    return _site()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _site()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "Chromium or chromedriver not installed "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, site, page):
    path = site / page
    assert path.is_file(), f"{page} is not in the built site {site}"
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    # the theme sets the layout from script: let it settle
    browser.execute_script("return document.fonts ? document.fonts.ready : null")
    assert browser.execute_script("return window.innerWidth") == WIDTH


OVERFLOWING_PRE = """
return Array.from(document.querySelectorAll('pre'))
  .filter(p => p.offsetParent !== null && p.scrollWidth > p.clientWidth)
  .map(p => [p.scrollWidth, p.clientWidth, p.textContent.split('\\n')
    .reduce((a, b) => a.length >= b.length ? a : b, '').slice(0, 100)]);
"""


def _overflowing(browser):
    return browser.execute_script(OVERFLOWING_PRE)


def _screenshot(browser):
    from PIL import Image

    png = browser.get_screenshot_as_png()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.mark.parametrize("page", ["index.html", GALLERY_PAGE])
def test_page_renders_without_sideways_scrolling(browser, site, page):
    _open(browser, site, page)
    pixels = _screenshot(browser)
    assert pixels.shape[1] == WIDTH
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.02, f"{page} looks blank ({non_white:.4f} non-white)"
    n_pre = browser.execute_script("return document.querySelectorAll('pre').length")
    assert n_pre > 0, f"{page} shows no code block"
    assert _overflowing(browser) == [], f"{page}: code blocks scroll sideways"
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= WIDTH, f"{page} is {scroll} px wide at a {WIDTH}-px window"


def test_gallery_page_shows_its_figures(browser, site):
    _open(browser, site, GALLERY_PAGE)
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('img.sphx-glr-single-img,"
        " img.sphx-glr-multi-img')).map(i => [i.naturalWidth, i.naturalHeight])"
    )
    assert sizes, "no figure on the gallery page"
    assert all(w > 100 and h > 100 for w, h in sizes), sizes


def test_no_page_of_the_guide_or_gallery_scrolls_sideways(browser, site):
    pages = sorted(
        str(p.relative_to(site))
        for folder in ("user_guide", "auto_examples")
        for p in (site / folder).glob("*.html")
    )
    pages += ["quickstart.html", "interpreto.html", "api.html"]
    assert len(pages) > 10
    bad = {}
    for page in pages:
        _open(browser, site, page)
        if overflowing := _overflowing(browser):
            bad[page] = overflowing
    assert bad == {}, f"code blocks that scroll sideways: {bad}"
