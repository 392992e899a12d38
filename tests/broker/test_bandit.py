"""Learning which action works, through a real broker and two worker processes: `personastream
simulate` closes the loop (visits -> decisions -> purchases drawn from a known truth -> rewards ->
shared posteriors), with a worker restarted between its two halves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from models.bandit import BetaBandit
from stream.persona_sync import BANDIT_KEY
from stream.tools.broker import free_port
from tests.broker.harness import CLI, ROOT, Pipeline, partition_of

pytestmark = pytest.mark.kafka

HIB = "High-Intent Buyer"
BEST = "free-shipping"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HALF = 1600
"""Visits per half of the simulation (UCI train.csv if present, else the sample, drawn with fresh ids)."""


def generation(version: str) -> int:
    return int(re.match(r"bandit-g(\d+)-", version).group(1))


def shared_posteriors(pipeline: Pipeline) -> BetaBandit:
    """The newest action posteriors on the compacted model topic."""
    records = [r for r in pipeline.read_records(f"{pipeline.topic('personas')}.model") if r.key == BANDIT_KEY]
    return BetaBandit.from_bytes(records[-1].value) if records else BetaBandit()


def simulate(pipeline: Pipeline, truth: Path, out: Path, seed: int) -> dict:
    csv = ROOT.parent / "shared" / "data" / "online_shoppers" / "train.csv"
    csv = csv if csv.is_file() else ROOT / "data" / "sample" / "online_shoppers_sample.csv"
    pipeline.cli("simulate", "--visits", str(HALF), "--truth", str(truth), "--out", str(out), "--seed", str(seed),
                 "--csv", str(csv), timeout=600)
    return orjson.loads((out / "simulation.json").read_bytes())


def owned(pipeline: Pipeline, workers) -> list[set[int]]:
    return pipeline.wait_for(
        lambda: (parts := [set(pipeline.status(w)["partitions"]) for w in workers]) and all(parts)
        and set().union(*parts) == set(range(pipeline.partitions)) and parts,
        "both workers to own events partitions")


def test_two_workers_learn_which_action_works(pipeline, tmp_path):
    pipeline.settings["PERSONASTREAM_PERSONA_SYNC_S"] = "1"
    truth = tmp_path / "truth.json"
    truth.write_bytes(orjson.dumps({HIB: {BEST: 2.0}}))
    pipeline.cli("topics")
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    owned(pipeline, workers)

    started = time.monotonic()
    first = simulate(pipeline, truth, tmp_path / "first", seed=1)
    assert first["rewards"]["learned"] == first["rewards"]["decisions"]  # every decision rewarded exactly once

    # a restarted worker keeps the shared posteriors (it reads them back from the model topic)
    learned = shared_posteriors(pipeline)
    assert learned.learned == first["rewards"]["decisions"]
    pipeline.stop_worker(workers[1])
    workers[1] = pipeline.start_worker()
    owned(pipeline, workers)
    second = simulate(pipeline, truth, tmp_path / "second", seed=2)
    elapsed = time.monotonic() - started
    assert second["rewards"]["learned"] == second["rewards"]["decisions"]
    assert min(generation(d["bandit_model_version"]) for d in second["decisions"]) >= learned.generation
    assert shared_posteriors(pipeline).learned == first["rewards"]["decisions"] + second["rewards"]["decisions"]

    # the arm that converts twice as often for the persona gets >= 80% of its bandit decisions in the second half
    late = [d["action_id"] for d in second["decisions"] if d["persona"] == HIB and d["policy"] == "bandit"]
    share = late.count(BEST) / len(late)
    assert share >= 0.8, second["arm_share"][HIB]
    visits = first["run"]["visits"] + second["run"]["visits"]
    held = first["conversion"]["holdout"]["visits"] + second["conversion"]["holdout"]["visits"]
    assert 0.08 <= held / visits <= 0.12
    for result in (first, second):
        assert result["ipw"]["lift"] is not None and result["holdout_lift"]["lift"] is not None
    def pct(lift: float | None) -> str:
        return "n/a" if lift is None else f"{lift:+.1%}"  # an estimate whose value is not positive has no lift

    print(f"\nsimulated {visits} visits in {elapsed:.0f}s; {HIB} {BEST!r} share of {len(late)} bandit decisions "
          f"in the second half {share:.1%}; holdout {held / visits:.1%}; "
          f"lift vs holdout {pct(second['holdout_lift']['lift'])}, IPW {pct(second['ipw']['lift'])}, "
          f"DR {pct(second['ipw']['dr_lift'])}, true {pct(second['true_lift'])}")
    assert elapsed < 300

    # the live dashboard of either worker shows what the workers published
    pipeline.web(workers[0], "/dashboard.json")  # starts its topic reader
    board = pipeline.wait_for(lambda: (b := orjson.loads(pipeline.web(workers[0], "/dashboard.json")))["personas"]
                              and b["throughput"]["events_per_s"] is not None and b, "the dashboard's data")
    assert board["posteriors"] == shared_posteriors(pipeline).version
    assert {p["persona"] for p in board["personas"]} >= {HIB}
    high = {a["action_id"]: a for a in board["arms"] if (a["persona"], a["band"]) == (HIB, "high")}
    assert max(high, key=lambda arm: high[arm]["posterior_mean"]) == BEST
    assert all(a["interval_95"][0] <= a["posterior_mean"] <= a["interval_95"][1] for a in board["arms"])
    rewarded = board["lift"]["bandit"]["decisions"] + board["lift"]["holdout"]["decisions"]
    assert rewarded == shared_posteriors(pipeline).learned
    assert board["throughput"]["consumer_lag"] is not None
    assert b"dashboard.json" in pipeline.web(workers[1], "/dashboard")
    show_dashboard(pipeline, workers[0], tmp_path / "dashboard.png")

    # a purchase read twice (and a second purchase) rewards each decision of the visit once
    before = shared_posteriors(pipeline)
    sid = "dup-visit"
    start = datetime.fromisoformat(second["run"]["last_event_time"]) + timedelta(days=1)
    views = [{"type": "page_view", "event_id": f"{sid}-{i}", "session_id": sid,
              "ts": _iso(start + timedelta(seconds=i)), "page": {"id": f"pp{i}", "type": "product"}} for i in range(4)]
    pipeline.produce(pipeline.topic("events"), [(sid.encode(), orjson.dumps(e)) for e in views])
    decided = decisions_of(pipeline, sid, events_seen=4)
    purchase = {"type": "purchase", "event_id": f"{sid}-buy", "session_id": sid,
                "ts": _iso(start + timedelta(minutes=3)), "page": {"id": "co", "type": "checkout"}}
    again = {**purchase, "event_id": f"{sid}-buy-2", "ts": _iso(start + timedelta(minutes=4))}
    tick = {"type": "page_view", "event_id": f"{sid}-tick", "session_id": f"{sid}-tick", "bot": True,
            "page": {"id": "t", "type": "other"}, "ts": _iso(start + timedelta(hours=2))}
    pipeline.produce(pipeline.topic("events"), [(sid.encode(), orjson.dumps(e)) for e in (purchase, purchase, again)])
    pipeline.produce(pipeline.topic("events"), [(f"{sid}-tick".encode(), orjson.dumps(tick))],
                     partition=partition_of(sid.encode(), pipeline.partitions))
    every = decisions_of(pipeline, sid, events_seen=6)  # the re-sent purchase is dropped: 4 views + 2 purchases
    pipeline.wait_for(lambda: shared_posteriors(pipeline).learned >= before.learned + len(every),
                      "the visit's rewards to be absorbed")
    time.sleep(3)  # a second (wrong) reward would be absorbed by now
    after = shared_posteriors(pipeline)
    assert after.learned == before.learned + len(every)
    for key in set(decided.values()):
        assert after.counts[key][0] - before.counts.get(key, [0, 0])[0] == list(decided.values()).count(key)
    assert not pipeline.agent_crashes()


def decisions_of(pipeline: Pipeline, sid: str, events_seen: int) -> dict[str, tuple]:
    """decision id -> (persona, band, action, policy) of a session's PersonaEvents, read once one of
    them reflects ``events_seen`` events."""
    values = pipeline.consume_until(pipeline.topic("personas"), lambda values: any(
        e["session_id"] == sid and e["events_seen"] == events_seen for e in map(orjson.loads, values)))
    return {e["decision_id"]: (e["persona"], e["intent_band"], e["action_id"], e["policy"])
            for e in map(orjson.loads, values) if e["session_id"] == sid}


def show_dashboard(pipeline: Pipeline, worker, png: Path) -> None:
    """The dashboard page in headless Chromium (Debian's, driven by its chromedriver): it renders the
    persona mix, the lift and one row per arm; a screenshot goes to ``png`` (and to
    ``docs/img/bandit-dashboard.png`` with ``PERSONASTREAM_UPDATE_SCREENSHOT=1``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make chromium`")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1400", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(png.with_suffix(".driver.log")))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.get(f"http://127.0.0.1:{worker.web_port}/dashboard")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#arms tbody tr")
        assert len(rows) >= 10 and any(BEST in row.text and HIB in row.text for row in rows)
        assert driver.find_element(By.ID, "lift").text.endswith("%")
        assert driver.find_elements(By.CSS_SELECTOR, "#personas tbody tr")
        driver.save_screenshot(str(png))
        if os.environ.get("PERSONASTREAM_UPDATE_SCREENSHOT") == "1":
            shutil.copy(png, ROOT / "docs" / "img" / "bandit-dashboard.png")
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
                service.process.wait(10)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def test_a_worker_with_an_invalid_catalog_stops_at_start_up_naming_the_entry(pipeline, tmp_path):
    catalog = tmp_path / "actions.json"
    catalog.write_bytes(orjson.dumps({"actions": [
        {"persona": HIB, "band": None, "action_id": "ok", "text": "fine"},
        {"persona": "Shopaholic", "band": "high", "action_id": "banner", "text": "a banner"}]}))
    pipeline.settings["PERSONASTREAM_ACTIONS"] = str(catalog)
    result = subprocess.run([*CLI, "worker", "--web-port", str(free_port())], env={**pipeline.env, "COLUMNS": "1000"},
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert f"actions catalog {catalog}" in message and "entry 1 ('Shopaholic', action_id 'banner')" in message
    assert "unknown persona 'Shopaholic'" in message
