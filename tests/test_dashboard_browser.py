"""The dashboard in a real browser (Debian's chromium, driven by selenium) against a real
`collector serve` loaded with a scenario: every panel shows what the API answers, a filter
change updates the numbers and the URL, the live panel moves when events arrive over gRPC, and
a token the collector does not know is said in words.

Screenshots of the whole page at a laptop's and a phone's width are saved under
tests/artifacts/ (not kept in git) to be looked at.
"""

import asyncio
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest

from analytics_fixtures import event_lines, scenario
from procs import ENV, Collector, free_port, wait_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
try:
    import selenium  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = "selenium is not installed (pip install -e '.[test]')"
for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if MISSING is None and not pathlib.Path(path).exists():
        MISSING = f"{path} is missing (Debian: apt-get install -y {package}; .ci/run does it)"
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
TOKEN = "dashboard-test-token"
# the scenario's show, as the page's URL gives it
RANGE = {"projectId": "8", "from": "2026-03-11T20:13:20Z", "to": "2026-03-12T00:13:20Z"}
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--lang=en-US"]
PANELS = ("viewers", "engagement", "polls", "sponsors", "revenue", "funnel", "activity")
WAIT = 60  # seconds a page may take to settle on a busy machine (a bound, not a measure)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def served(tmp_path):
    """`collector serve` with the medium show imported into its store, and its HTTP address."""
    http = free_port()
    c = Collector(tmp_path / "collector",
                  top={"http_listen": f"127.0.0.1:{http}", "admin_tokens": {TOKEN: [8, 12]}})
    events = tmp_path / "show.jsonl"
    events.write_text("\n".join(event_lines(scenario("show_medium")["events"])) + "\n",
                      encoding="utf-8")
    subprocess.run([sys.executable, "-m", "collector", "import", "--config", str(c.config),
                    str(events)], check=True, env=ENV, capture_output=True)
    c.start()
    wait_port(http)
    c.http = f"http://127.0.0.1:{http}"
    yield c
    c.stop()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium'}"]:
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, env={"LANG": "en_US.UTF-8", "TZ": "UTC",
                                         "HOME": str(tmp_path)})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(1366, 900)
    yield driver
    driver.quit()


# ------------------------------------------------------------------------------ the page


def page_url(served, **params) -> str:
    return f"{served.http}/?{urllib.parse.urlencode(params)}"


def loads(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.loads || 0"))


def settle(driver, after: int = 0) -> None:
    """Wait until a load later than `after` has finished (every panel answered or failed)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(lambda d: loads(d) > after)


def sign_in(driver, token: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    form = WebDriverWait(driver, WAIT).until(ec.visibility_of_element_located((By.ID, "token-form")))
    box = form.find_element(By.ID, "token")
    box.send_keys(token)
    form.submit()


def open_dashboard(driver, served, **params) -> None:
    """Open the page as a person does: the token is asked for once, then the panels load."""
    driver.get(page_url(served, **params))
    assert driver.execute_script("return new Intl.NumberFormat().resolvedOptions().locale") == "en-US"
    sign_in(driver, TOKEN)
    settle(driver)


def text(el) -> str:
    """An element's text as shown, also when inside a closed <details>; spaces normalised."""
    return " ".join(el.get_attribute("textContent").replace("\u00a0", " ").split())


def cell(root, key: str | None, col: str):
    from selenium.webdriver.common.by import By

    scope = root if key is None else root.find_element(By.CSS_SELECTOR, f'[data-key="{key}"]')
    return text(scope.find_element(By.CSS_SELECTOR, f'[data-col="{col}"]'))


def api(served, path_and_query: str):
    request = urllib.request.Request(served.http + path_and_query,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)


def panel_query(driver, panel: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, panel).get_attribute("data-query")


# ------------------------------------------------------------------------------ numbers as shown


def _round(x, places: int) -> Decimal:
    # Intl rounds the shortest decimal that reads back as the double (1183.485, not the
    # 1183.48499... it holds) half away from zero
    exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    return exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def integer(n) -> str:
    return "–" if n is None else f"{n:,}"


def percent(x) -> str:
    if x is None:
        return "–"
    return f"{_round(Decimal(x) * 100, 1):,f}".removesuffix(".0") + "%"


def decimal(x) -> str:
    if x is None:
        return "–"
    return f"{_round(x, 2):,f}".rstrip("0").rstrip(".")


def amount(shown: str, currency: str, value) -> None:
    """A money amount as shown: its currency named or its symbol, and the value to the cent."""
    symbols = {"EUR": "€", "USD": "$", "GBP": "£"}
    assert currency in shown or symbols.get(currency, "\0") in shown, (shown, currency)
    number = re.search(r"\d[\d,]*(\.\d+)?", shown).group(0).replace(",", "")
    assert Decimal(number) == _round(value, 2), (shown, value)


# ------------------------------------------------------------------------------ the check


def check_panels(driver, served, want: dict) -> dict:
    """Every panel against the API's answer to the very query the panel made, and that query
    against the filters `want` (the URL's). The API's replies, by panel."""
    from selenium.webdriver.common.by import By

    replies = {}
    for panel in PANELS:
        query = panel_query(driver, panel)
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(query).query))
        assert query.startswith(f"/v1/analytics/{panel}?"), query
        for name, value in want.items():
            assert params.get(name) == value, (panel, name, query)
        replies[panel] = api(served, query)
        assert driver.find_element(By.ID, panel).get_attribute("data-error") is None, panel

    root = driver.find_element(By.ID, "engagement")
    for b in replies["engagement"]["broadcasts"]:
        assert cell(root, b["broadcast_id"], "rate") == percent(b["rate"])
        assert cell(root, b["broadcast_id"], "engaged") == integer(b["engaged"])
        assert cell(root, b["broadcast_id"], "audience") == integer(b["audience"])

    root = driver.find_element(By.ID, "polls")
    for poll in replies["polls"]["polls"]:
        card = root.find_element(By.CSS_SELECTOR, f'[data-key="{poll["broadcast_id"] or ""}|{poll["poll_id"]}"]')
        assert cell(card, None, "question") == (poll["question"] or f"Poll {poll['poll_id']}")
        assert cell(card, None, "voters") == integer(poll["voters"])
        for option in poll["options"]:
            index = "null" if option["index"] is None else str(option["index"])
            assert cell(card, index, "votes") == integer(option["votes"])
            assert cell(card, index, "option") == (option["option"] or f"Option {option['index'] or '?'}")

    root = driver.find_element(By.ID, "sponsors")
    for s in replies["sponsors"]["sponsors"]:
        key = f'{s["broadcast_id"] or ""}|{s["sponsor_id"]}'
        for col in ("impressions", "reach", "taps", "orders"):
            assert cell(root, key, col) == integer(s[col]), (key, col)
        assert cell(root, key, "ctr") == percent(s["ctr"])
        row = root.find_element(By.CSS_SELECTOR, f'[data-key="{key}"] [data-col="revenue"]')
        shown = {a.get_attribute("data-currency"): text(a)
                 for a in row.find_elements(By.CSS_SELECTOR, ".amount")}
        assert shown.keys() == s["revenue"].keys() and (shown or text(row) == "–"), (key, shown)
        for currency, value in s["revenue"].items():
            amount(shown[currency], currency, value)

    root = driver.find_element(By.ID, "revenue")
    for c in replies["revenue"]["currencies"]:
        amount(cell(root, c["currency"], "gross"), c["currency"], c["gross"])
        amount(cell(root, c["currency"], "aov"), c["currency"], c["aov"])
        assert cell(root, c["currency"], "orders") == integer(c["orders"])
        assert cell(root, c["currency"], "items_per_order") == decimal(c["items_per_order"])

    root = driver.find_element(By.ID, "funnel")
    for step in replies["funnel"]["steps"]:
        assert cell(root, step["action"], "users") == integer(step["users"])
        assert cell(root, step["action"], "conversion") == percent(step["conversion"])

    root = driver.find_element(By.ID, "activity")
    series = replies["activity"]["series"]
    assert cell(root, None, "events") == integer(sum(b["events"] for b in series))
    for b in series:
        assert cell(root, str(b["t"]), "events") == integer(b["events"])
        assert cell(root, str(b["t"]), "users") == integer(b["users"])

    root = driver.find_element(By.ID, "viewers")
    viewers = replies["viewers"]
    assert cell(root, None, "peak") == integer(viewers["peak"])
    assert cell(root, None, "unique_viewers") == integer(viewers["unique_viewers"])
    for b in viewers["series"]:
        assert cell(root, str(b["t"]), "viewers") == integer(b["viewers"])
    return replies


def screenshot(driver, name: str, width: int) -> pathlib.Path:
    """The whole page at this width: the window made as tall as the document."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + 150)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


# ------------------------------------------------------------------------------ tests


def test_every_panel_shows_what_the_api_answers(served, browser):
    open_dashboard(browser, served, **RANGE)
    replies = check_panels(browser, served, RANGE)
    # no broadcast chosen: the viewers panel follows the one with the largest audience
    top = max(replies["engagement"]["broadcasts"], key=lambda b: b["audience"])
    assert f"broadcastId={urllib.parse.quote(top['broadcast_id'])}" in panel_query(browser, "viewers")
    assert all(replies[p] for p in PANELS) and replies["polls"]["polls"] and replies["sponsors"]["sponsors"]
    screenshot(browser, "dashboard-laptop", 1366)
    screenshot(browser, "dashboard-phone", 390)
    # the token was asked for once: a reload keeps it (for this tab), and the URL's filters
    browser.refresh()
    settle(browser)
    assert not browser.find_element("id", "token-form").is_displayed()
    check_panels(browser, served, RANGE)


def test_a_filter_change_updates_the_numbers_and_the_url(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_dashboard(browser, served, **RANGE)
    before = check_panels(browser, served, RANGE)
    done = loads(browser)
    country = browser.find_element(By.CSS_SELECTOR, '#filters input[name="country"]')
    country.send_keys("no", Keys.ENTER)
    settle(browser, done)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(browser.current_url).query))
    assert query == {**RANGE, "country": "NO"}
    after = check_panels(browser, served, {**RANGE, "country": "NO"})
    assert after["engagement"] != before["engagement"] and after["revenue"] != before["revenue"]

    # a broadcast with no events in the range is said in words
    done = loads(browser)
    broadcast = browser.find_element(By.CSS_SELECTOR, '#filters input[name="broadcastId"]')
    broadcast.send_keys("no-such-broadcast", Keys.ENTER)
    settle(browser, done)
    assert "broadcastId=no-such-broadcast" in browser.current_url
    assert text(browser.find_element(By.ID, "status")) == "No events for this broadcast in this range"
    assert text(browser.find_element(By.CSS_SELECTOR, "#engagement .body")) == \
        "No events for this broadcast in this range"


def test_the_live_panel_moves_when_events_arrive(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from collector.client import Client

    show = f"live-{uuid.uuid4().hex[:8]}"
    open_dashboard(browser, served, projectId="8", broadcastId=show)
    count = browser.find_element(By.ID, "now-count")
    WebDriverWait(browser, WAIT).until(lambda d: text(count) == "0")
    assert "live" in text(browser.find_element(By.ID, "live-state"))

    async def join(users: int) -> None:
        now = time.time_ns() // 1_000_000
        async with Client(served.target) as client:
            for n in range(users):
                batch = {"pid": 8, "uid": f"{show}-viewer-{n}", "now": now, "l": "nb_NO",
                         "pl": [{"euid": f"{show}-{n}", "ea": 20, "t": now, "ac": "broadcast.joined",
                                 "pr": {"broadcastId": show}}]}
                reply = await client.send(json.dumps(batch).encode())
                assert reply.accepted == 1, reply

    asyncio.run(join(3))
    WebDriverWait(browser, WAIT).until(lambda d: text(count) == "3")


def test_a_token_the_collector_does_not_know_is_said_in_words(served, browser):
    from selenium.webdriver.common.by import By

    browser.get(page_url(served, **RANGE))
    sign_in(browser, "not-a-token")
    from selenium.webdriver.support.ui import WebDriverWait

    message = browser.find_element(By.ID, "token-message")
    WebDriverWait(browser, WAIT).until(lambda d: "not accepted" in text(message))
    assert text(message).startswith("This token is not accepted")
    assert not browser.find_element(By.ID, "panels").is_displayed()
    sign_in(browser, TOKEN)  # and the right one opens the dashboard
    settle(browser)
    check_panels(browser, served, RANGE)
