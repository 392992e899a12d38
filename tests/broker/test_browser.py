"""The browser tracker and the demo shop in a real headless Chromium, through a real broker and two real
workers: a visit's events reach the events topic under the tracker's token, its PersonaEvent is
published and answered by both workers' visit lookup, the banner shows it, no client IP or
User-Agent is stored anywhere, consent(false) stops everything, and a crawler's visit is marked bot.

Chromium and its driver are Debian's (``make chromium``); Selenium is given both paths, so Selenium
Manager never runs and nothing is downloaded. ``PERSONASTREAM_UPDATE_SCREENSHOT=1`` also writes the
product page screenshot to ``docs/img/demo-site.png`` (always written under the test's temp dir).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.support.ui import WebDriverWait

from schemas.privacy import opaque_problem
from stream.tools.broker import free_port, stop_process
from stream.tools.demo_site import CATALOG
from tests.broker.harness import CLI, ROOT, partition_of

pytestmark = pytest.mark.kafka

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SCREENSHOT = ROOT / "docs" / "img" / "demo-site.png"
TOKEN = re.compile(r"[A-Za-z]{22}")


# --- processes ----------------------------------------------------------------------------------

def require_chromium() -> None:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make chromium` "
                    "(apt-get install chromium chromium-driver)")


def desktop_user_agent() -> str:
    """A desktop Chrome User-Agent of the installed Chromium's major version. Headless Chromium says
    "HeadlessChrome", which the collector rightly takes for a crawler; the test's visitor is a person."""
    version = subprocess.run([str(CHROMEDRIVER), "--version"], capture_output=True, text=True, timeout=30).stdout
    major = re.search(r"ChromeDriver (\d+)\.", version).group(1)
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 "
            "Safari/537.36")


@contextmanager
def chromium(log: Path, user_agent: str):
    """Headless Debian Chromium driven by Debian's chromedriver; quit (and the driver stopped by PID)
    on the way out, whatever happened."""
    require_chromium()
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions", "--disable-sync",
                     "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                     f"--user-agent={user_agent}"):
        options.add_argument(argument)
    service = ChromeService(executable_path=str(CHROMEDRIVER), log_output=str(log))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            process = service.process
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


@contextmanager
def demo_site(pipeline, port: int, endpoint: str):
    """``personastream demo-site`` as a subprocess with 1 s tracker intervals; stopped by PID."""
    log = open(pipeline.home / "demo-site.log", "ab")
    process = subprocess.Popen([*CLI, "demo-site", "--port", str(port), "--endpoint", endpoint, "--heartbeat", "1",
                                "--flush", "1", "--poll", "1"], env=pipeline.env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the demo site did not start:\n"
                                         + (pipeline.home / "demo-site.log").read_text(errors="replace")) from None
                time.sleep(0.2)
        yield process
    finally:
        stop_process(process, 10)
        log.close()


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call, but the visit lookup's 404 before a visit is scored
    and its 503 while the workers rebalance (the tracker polls again)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and not re.search(r"/visits/.* (404|503) ", entry["message"])]


def assert_no_console_errors(driver, pipeline) -> None:
    """No console errors; if there are, the workers' request errors with them."""
    errors = console_errors(driver)
    if errors:
        logs = [f"--- worker {i} ---\n" + "\n".join(line[:200] for line in pipeline.worker_log(i).splitlines()
                                                   if "Error handling request" in line or "Error:" in line)
                for i in range(len(pipeline.workers))]
        raise AssertionError("browser console errors:\n" + "\n".join(errors) + "\n" + "\n".join(logs))


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- the browser's side -------------------------------------------------------------------------

def wait(driver, condition, what: str, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def click(driver, target: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'[data-ps-click="{target}"]').click()


def on_page(driver, path: str) -> None:
    wait(driver, lambda d: d.execute_script("return location.pathname") == path
         and d.execute_script("return !!(window.personastream && personastream.visitToken)"), f"page {path}")


def banner(driver, timeout: float = 60) -> dict:
    """What the persona banner shows, once it shows a PersonaEvent."""
    wait(driver, lambda d: not d.find_element(By.ID, "ps-banner").get_attribute("class").count("waiting"),
         "the banner to show a persona", timeout)
    element = driver.find_element(By.ID, "ps-banner")
    return {"persona": driver.find_element(By.ID, "ps-persona").text,
            "intent_band": driver.find_element(By.ID, "ps-band").text,
            "recommended_action": driver.find_element(By.ID, "ps-action").text,
            "session_id": element.get_attribute("data-session-id"),
            "visit": int(element.get_attribute("data-visit")),
            "events_seen": int(element.get_attribute("data-events-seen"))}


# --- the broker's side --------------------------------------------------------------------------

def events_of(pipeline, token: str) -> list[tuple[bytes, dict]]:
    """(key, event) of every record on the events topic whose key or session_id is ``token``."""
    out = []
    for record in pipeline.read_records(pipeline.topic("events")):
        event = orjson.loads(record.value)
        if record.key == token.encode() or event.get("session_id") == token:
            out.append((record.key, event))
    return out


def events_of_all(pipeline) -> list[tuple[bytes, dict]]:
    return [(r.key, orjson.loads(r.value)) for r in pipeline.read_records(pipeline.topic("events"))]


def newest_persona(pipeline, token: str) -> dict | None:
    newest = None
    for record in pipeline.read_records(pipeline.topic("personas")):
        event = orjson.loads(record.value)
        if event["session_id"] == token and (newest is None or (event["visit"], event["events_seen"])
                                             >= (newest["visit"], newest["events_seen"])):
            newest = event
    return newest


def user_agent_parts(user_agent: str) -> list[str]:
    """What must never be stored of a User-Agent: all of it, its (comments), its product/version tokens
    and its full version numbers. Coarse families derived from it (os "Linux", browser "Chrome") are fine."""
    parts = {user_agent, *re.findall(r"\([^)]*\)", user_agent), *re.findall(r"\S+/\S+", user_agent),
             *re.findall(r"\d+(?:\.\d+){2,}", user_agent)}
    return sorted(part.strip(";+") for part in parts if len(part) >= 6)


# --- the test -----------------------------------------------------------------------------------

def test_tracker_and_demo_site_in_a_real_browser(pipeline, tmp_path, monkeypatch):
    require_chromium()
    def no_downloads(*args, **kwargs):
        raise AssertionError("Selenium Manager was called: it could download a browser or driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_downloads)
    monkeypatch.setenv("SE_OFFLINE", "true")
    selenium_cache = Path.home() / ".cache" / "selenium"
    had_selenium_cache = selenium_cache.exists()

    site_port = free_port()
    site = f"http://127.0.0.1:{site_port}"
    pipeline.settings["PERSONASTREAM_ALLOWED_ORIGINS"] = site
    pipeline.cli("pages", "seed", str(CATALOG))
    workers = [pipeline.start_worker(), pipeline.start_worker()]

    def balanced():
        owned = [pipeline.status(w)["partitions"] for w in workers]
        return owned if all(owned) and sorted(sum(owned, [])) == list(range(pipeline.partitions)) else None

    owned = pipeline.wait_for(balanced, "both workers to own events partitions", timeout=90)
    endpoint = f"http://127.0.0.1:{workers[0].web_port}"
    human = desktop_user_agent()

    with demo_site(pipeline, site_port, endpoint), chromium(tmp_path / "chromedriver.log", human) as driver:
        # a visit: home -> category -> product (scroll, dwell, click, add to cart) -> cart
        driver.get(site + "/")
        on_page(driver, "/")
        token = driver.execute_script("return personastream.visitToken()")
        assert TOKEN.fullmatch(token) and opaque_problem(token, 128) is None, token
        user_agent = driver.execute_script("return navigator.userAgent")
        assert user_agent == human
        click(driver, "hero-running")
        on_page(driver, "/category/running")
        click(driver, "category-trail-runner")
        on_page(driver, "/product/trail-runner")
        assert driver.execute_script("return personastream.visitToken()") == token, "one token per tab visit"
        driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
        time.sleep(2.5)  # two or three 1-second dwell heartbeats
        click(driver, "size-42")
        click(driver, "add-to-cart")
        driver.execute_script("window.scrollTo(0, 0)")
        wait(driver, lambda d: int(d.find_element(By.ID, "ps-banner").get_attribute("data-events-seen") or 0) >= 8,
             "the banner to reflect the product page", 60)
        time.sleep(0.5)
        driver.save_screenshot(str(tmp_path / "demo-site.png"))
        if os.environ.get("PERSONASTREAM_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "demo-site.png", SCREENSHOT)
        click(driver, "nav-cart")
        on_page(driver, "/cart")
        assert "Trail Runner GTX" in driver.find_element(By.ID, "cart-items").text
        shown = banner(driver)
        assert shown["session_id"] == token
        assert_no_console_errors(driver, pipeline)

        # another tab is another visit: info page, search, product, cart, checkout, buy
        driver.switch_to.new_window("tab")
        driver.get(site + "/info/delivery")
        on_page(driver, "/info/delivery")
        second = driver.execute_script("return personastream.visitToken()")
        assert TOKEN.fullmatch(second) and second != token
        driver.find_element(By.CSS_SELECTOR, "form.search input").send_keys("rain shell\n")
        on_page(driver, "/search")
        click(driver, "search-rain-shell")
        on_page(driver, "/product/rain-shell")
        click(driver, "add-to-cart")
        click(driver, "added-go-to-cart")
        on_page(driver, "/cart")
        click(driver, "cart-checkout")
        on_page(driver, "/checkout")
        click(driver, "checkout-buy")
        wait(driver, lambda d: d.find_element(By.ID, "thanks").is_displayed(), "the thank-you note")

        # consent(false): the visit's token is dropped, and nothing is sent any more
        refused = driver.execute_script("""
            var before = personastream.visitToken();
            personastream.consent(false);
            var after = [personastream.visitToken(), sessionStorage.getItem('personastream.visit')];
            personastream.track('add_to_cart', {product_id: 'refused-probe', quantity: 1, price: 1});
            var probe = document.createElement('button');
            probe.setAttribute('data-ps-click', 'refused-probe');
            document.body.appendChild(probe);
            probe.click();
            personastream.flush();
            return [before, after, Date.now()];""")
        assert refused[:2] == [second, [None, None]], refused
        refused_at = refused[2] / 1000
        # ... and consent(true) mints fresh letters-only tokens, never a phone/card/IP lookalike
        tokens = driver.execute_script("""
            var out = [];
            for (var i = 0; i < 10000; i++) { personastream.consent(true); out.push(personastream.visitToken());
                                              personastream.consent(false); }
            return out;""")
        assert len(set(tokens)) == 10000 and all(TOKEN.fullmatch(t) for t in tokens)
        assert not [t for t in tokens if opaque_problem(t, 128)]
        assert_no_console_errors(driver, pipeline)
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
        driver.get("about:blank")  # pagehide: the cart page's last dwell and scroll go out with a beacon

        # a crawler's visit, in a browser of its own
        with chromium(tmp_path / "chromedriver-bot.log", CRAWLER) as bot:
            bot.get(site + "/")
            on_page(bot, "/")
            bot_token = bot.execute_script("return personastream.visitToken()")
            click(bot, "home-trail-runner")
            on_page(bot, "/product/trail-runner")
            bot.get("about:blank")
            # the browser sends the last page's beacon after about:blank loads: keep it open until it did
            pipeline.wait_for(lambda: sum(e["type"] == "page_view" for _, e in events_of(pipeline, bot_token)) >= 2,
                              "the crawler's beacons", timeout=30)

    # (a) the visit's events are on the events topic, keyed by the token, as the tracker sent them
    expected_clicks = {"hero-running", "category-trail-runner", "size-42", "add-to-cart", "nav-cart"}

    def complete():
        found = events_of(pipeline, token)
        kinds = {e["type"] for _, e in found}
        clicks = {e.get("target") for _, e in found if e["type"] == "click"}
        paths = [e["page"]["path"] for _, e in found if e["type"] == "page_view"]
        return found if ({"page_view", "click", "scroll", "dwell", "add_to_cart"} <= kinds
                         and expected_clicks <= clicks and "/cart" in paths) else None

    events = pipeline.wait_for(complete, "the visit's events on the events topic", timeout=30)
    assert all(key == token.encode() and e["session_id"] == token for key, e in events)
    # requests of consecutive pages may reach the topic in either order (a page's beacon races the next
    # page's first flush); event time orders them
    views = sorted((e for _, e in events if e["type"] == "page_view"), key=lambda e: e["ts"])
    assert [(e["page"]["id"], e["page"]["type"], e["page"]["path"]) for e in views] == [
        ("home", "home", "/"), ("category-running", "category", "/category/running"),
        ("product-trail-runner", "product", "/product/trail-runner"), ("cart", "cart", "/cart")]
    cart = [e for _, e in events if e["type"] == "add_to_cart"]
    assert [(e["product_id"], e["quantity"], e["price"]) for e in cart] == [("trail-runner", 1, 129.0)]
    dwell = [e for _, e in events if e["type"] == "dwell"]
    assert sum(e["seconds"] for e in dwell if e["page"]["id"] == "product-trail-runner") >= 2
    assert all(0 < e["seconds"] <= 5 for e in dwell), dwell
    scroll = {e["page"]["id"]: e["depth_pct"] for _, e in events if e["type"] == "scroll"}
    assert scroll.get("product-trail-runner") == 100, scroll
    assert len({e["event_id"] for _, e in events}) == len(events)
    assert all(e["device"]["screen"] == "l" and e["device"]["os"] == "Linux" and e["device"]["browser"] == "Chrome"
               and e["device"]["device_class"] == "desktop" for _, e in events), events[0][1]["device"]
    assert not any(e.get("bot") for _, e in events)

    # the second tab's visit: search (the query in the event, never in the path) and purchase
    def bought():
        found = [e for _, e in events_of(pipeline, second)]
        return found if any(e["type"] == "purchase" for e in found) else None

    other = pipeline.wait_for(bought, "the second visit's purchase", timeout=30)
    assert [e["query"] for e in other if e["type"] == "search"] == ["rain shell"]
    assert [(e["value"], e["currency"]) for e in other if e["type"] == "purchase"] == [(159.0, "EUR")]
    assert [e["page"]["path"] for e in other if e["type"] == "page_view"] == [
        "/info/delivery", "/search", "/product/rain-shell", "/cart", "/checkout"]
    # ... and after consent(false) nothing: no probe, no later event of that visit, none of the new tokens
    minted = set(tokens)
    after = [e for _, e in events_of_all(pipeline) if e.get("product_id") == "refused-probe"
             or e.get("target") == "refused-probe" or e["session_id"] in minted
             or (e["session_id"] == second and datetime.fromisoformat(e["ts"]).timestamp() > refused_at)]
    assert not after, f"events sent after consent(false): {after}"

    # (b) its PersonaEvent reflects all of them once everything is in; (d) the banner showed one of them
    def final():
        newest, sent = newest_persona(pipeline, token), len(events_of(pipeline, token))
        return newest if newest and newest["events_seen"] == sent else None

    persona = pipeline.wait_for(final, "a PersonaEvent reflecting every event of the visit", timeout=30)
    assert persona["persona"] and persona["intent_band"] in {"low", "medium", "high"}
    assert persona["page_views"] == 4 and persona.get("bot", False) is False
    published = [orjson.loads(r.value) for r in pipeline.read_records(pipeline.topic("personas"))]
    seen = [p for p in published if p["session_id"] == token and p["visit"] == shown["visit"]
            and p["events_seen"] == shown["events_seen"]]
    assert seen, f"the banner showed a PersonaEvent that was never published: {shown}"
    assert {k: seen[-1][k] for k in ("persona", "intent_band", "recommended_action")} == \
        {k: shown[k] for k in ("persona", "intent_band", "recommended_action")}

    # (c) both workers answer the lookup: the owner from its table, the other by forwarding
    owner = next(i for i, parts in enumerate(owned) if partition_of(token.encode(), pipeline.partitions) in parts)

    def answered():  # the newest PersonaEvent, from both (a late heartbeat may still have moved it on)
        replies, newest = [get(w.web_port, f"/visits/{token}") for w in workers], newest_persona(pipeline, token)
        return replies if all(status == 200 and orjson.loads(body) == newest for status, body in replies) else None

    try:
        pipeline.wait_for(answered, "GET /visits/{token} on both workers to return the final PersonaEvent", 20)
    except AssertionError:
        replies = [get(w.web_port, f"/visits/{token}") for w in workers]
        raise AssertionError(f"owner is worker {owner}; replies: {replies}; final: {persona}\n"
                             f"--- worker 0 log ---\n{pipeline.worker_log(0)[-3000:]}\n"
                             f"--- worker 1 log ---\n{pipeline.worker_log(1)[-3000:]}") from None
    for worker in workers:
        status, body = get(worker.web_port, "/visits/NoSuchVisitTokenHereAtAll")
        assert status == 404 and "error" in orjson.loads(body), (status, body)

    # (e) no client IP in the events, and nothing of the User-Agents in any topic of this pipeline
    topics = [t for t in pipeline.broker_topics() if pipeline.name in t]
    assert pipeline.topic("events") in topics and any(t.endswith("-changelog") for t in topics), topics
    contents = {topic: pipeline.read_records(topic) for topic in topics}
    assert not contents[pipeline.topic("dlq")], "the tracker sent events the collector rejected"
    ip = sorted({topic for topic, records in contents.items() for r in records
                 if b"127.0.0.1" in (r.key or b"") + b"\x00" + (r.value or b"")})
    assert not ip, f"127.0.0.1 found in {ip}"
    secrets = user_agent_parts(user_agent) + user_agent_parts(CRAWLER)
    leaks = sorted({(topic, part) for topic, records in contents.items() for r in records for part in secrets
                    if part.encode() in (r.key or b"") + b"\x00" + (r.value or b"")})
    assert not leaks, f"User-Agent parts stored: {leaks}"
    assert had_selenium_cache or not selenium_cache.exists(), "Selenium Manager created its cache"

    # (f) the crawler's visit is marked bot on the events topic
    def crawled():
        found = events_of(pipeline, bot_token)
        return found if sum(e["type"] == "page_view" for _, e in found) >= 2 else None

    bot_events = pipeline.wait_for(crawled, "the crawler's events", timeout=20)
    assert all(e["device"]["device_class"] == "other" for _, e in bot_events)
    assert all(e.get("bot") is True for _, e in bot_events), \
        f"crawler events not marked bot (schema field missing?): {bot_events[0][1]}"
    crawler = pipeline.wait_for(lambda: newest_persona(pipeline, bot_token), "the crawler's PersonaEvent", 20)
    assert crawler["bot"] is True, crawler
