"""The dashboard in a real headless Chromium (Playwright driving Debian's chromium package)
against a real `carma serve`: it loads without console errors and asks nothing of another
origin, its numbers are the API's, damage and then a dream cycle are seen on the page, a
fragment's history opens on click, and a key for one namespace shows that namespace alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.server.conftest import issue, running_server

WAIT_MS = 20_000  # the page reads the API every second; a busy machine may be slow
TOPICS = {
    "people": ["Alice is allergic to peanuts.", "Bob prefers green tea.", "Carol runs daily."],
    "ops": ["The backup runs at 02:00.", "Deploys freeze on Fridays.", "The VPN key rotates."],
}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    home = tmp_path_factory.mktemp("dashboard") / "home"
    admin, _ = issue(home, "--all-namespaces", "--read", "--write", "--admin",
                     "--embedder", "hashing")  # fmt: skip
    people, _ = issue(home, "--namespace", "people", "--read")
    with running_server(home, "--dream-every", "0") as server, server.client(admin) as api:
        items = [
            {"text": f"{TOPICS[ns][i % 3]} (#{i})", "namespace": ns, "id": f"{ns}-{i}"}
            for ns in TOPICS
            for i in range(12)
        ]
        assert api.post("/v1/fragments:batch", json={"items": items}).status_code == 201
        yield {"server": server, "api": api, "admin": admin, "people": people, "home": home}


def open_page(page: Page, server, key: str) -> list[str]:
    """The dashboard opened with a key; returns the list its console errors will fill."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(server.url) or r.url.startswith("data:")
            else problems.append(f"asked another origin: {r.url}")
        ),
    )
    page.goto(f"{server.url}/#key={key}")
    expect(page.locator("#updated")).to_have_attribute(
        "data-at", re.compile(r"^\d+$"), timeout=WAIT_MS
    )
    return problems


def shown(page: Page, selector: str, attribute: str = "data-value") -> str:
    return page.locator(selector).get_attribute(attribute)


def wait_until(page: Page, script: str, arg=None) -> None:
    page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


def test_the_page_loads_clean_and_shows_the_apis_numbers(page: Page, dashboard):
    server, api = dashboard["server"], dashboard["api"]
    problems = open_page(page, server, dashboard["admin"])
    page.wait_for_timeout(1_500)  # a couple of refreshes: errors would show by now
    health = api.get("/v1/health").json()
    assert float(shown(page, "#score")) == health["score"]
    assert int(shown(page, "#live")) == health["live"] == 24
    for status, count in health["by_status"].items():
        cell = f'#status-table tr[data-status="{status}"] td.count'
        assert int(shown(page, cell)) == count
    bars = page.locator("#fidelity-chart rect")
    counts = [int(bars.nth(i).get_attribute("data-count")) for i in range(bars.count())]
    assert counts == [b["count"] for b in health["distribution"]["fidelity"]["bins"]]
    events = api.get("/v1/activity", params={"limit": 20}).json()["events"]
    rows = page.locator("#events tbody tr.event")
    assert [rows.nth(i).get_attribute("data-position") for i in range(rows.count())] == [
        str(e["position"]) for e in events
    ]
    assert "every namespace" in page.locator("#scope").inner_text()
    assert problems == []


def test_damage_and_then_a_dream_cycle_are_seen_on_the_page(page: Page, dashboard):
    server, api, home = dashboard["server"], dashboard["api"], dashboard["home"]
    problems = open_page(page, server, dashboard["admin"])
    cycles_before = page.locator("#cycles tbody tr.cycle").count()
    damaged = [f"ops-{i}" for i in range(5)]
    for path in sorted((home / "cache").glob("??/*.json")):  # lost, as a disk loses files
        if json.loads(path.read_text())["key"] in damaged:
            path.unlink()
    for key in damaged:  # reading them finds the loss (the log still answers exactly)
        assert api.get(f"/v1/fragments/{key}").status_code == 200
    wait_until(
        page,
        """n => document.querySelector('#status-table tr[data-status="degraded"] td.count')
              .dataset.value === String(n)""",
        len(damaged),
    )
    assert float(shown(page, "#score")) < 1.0
    assert page.locator("#timeline rect.fault-mark").count() >= 1
    assert page.locator('#faults tr[data-name="cache/missing"]').inner_text().endswith("5")

    report = api.post("/v1/dream").json()
    assert report["repaired"]["cache/exact-log"] == len(damaged)
    wait_until(page, "() => Number(document.querySelector('#score').dataset.value) === 1")
    wait_until(
        page,
        "n => document.querySelectorAll('#cycles tbody tr.cycle').length > n",
        cycles_before,
    )
    latest = page.locator("#cycles tbody tr.cycle").first
    assert latest.get_attribute("data-repaired") == str(len(damaged))
    assert page.locator("#timeline rect.repair-mark").count() >= 1
    assert shown(page, '#status-table tr[data-status="degraded"] td.count') == "0"
    assert problems == []


def test_a_click_on_a_fragment_opens_its_history(page: Page, dashboard):
    server, api = dashboard["server"], dashboard["api"]
    api.patch("/v1/fragments/people-1", json={"text": "Bob prefers black coffee now."})
    problems = open_page(page, server, dashboard["admin"])
    row = page.locator('#events tbody tr.event[data-id="people-1"]').first
    expect(row).to_be_visible(timeout=WAIT_MS)
    row.locator("a.fragment").click()
    entries = page.locator("#history tbody tr.history-entry")
    expect(entries).to_have_count(2, timeout=WAIT_MS)
    history = api.get("/v1/fragments/people-1/history").json()["history"]
    assert [entries.nth(i).locator("td").nth(3).inner_text() for i in range(2)] == [
        e["kind"] for e in history
    ]
    assert page.locator("#history-id").inner_text() == "people-1"
    assert problems == []


def test_a_key_for_one_namespace_shows_that_namespace_alone(page: Page, dashboard):
    server = dashboard["server"]
    problems = open_page(page, server, dashboard["people"])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer "
                      f"{dashboard['people']}"}) as mine:  # fmt: skip
        health = mine.get("/v1/health").json()
    assert int(shown(page, "#live")) == health["live"] == 12
    assert shown(page, "#scope", "data-namespaces") == "people"
    namespaces = page.locator("#events tbody tr.event").evaluate_all(
        "rows => rows.map(r => r.dataset.namespace)"
    )
    assert namespaces and set(namespaces) == {"people"}
    assert page.locator("#cycles-card").is_hidden()  # dream cycles are the admin's
    text = page.locator("body").inner_text()
    assert "ops" not in text and "backup" not in text.lower()
    assert problems == []


def test_without_a_key_the_page_asks_for_one(page: Page, dashboard):
    page.goto(dashboard["server"].url + "/")
    expect(page.locator("#key-form")).to_be_visible(timeout=WAIT_MS)
    page.fill("#key-input", dashboard["people"])
    page.click("#key-form button")
    expect(page.locator("#board")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#scope")).to_contain_text("people", timeout=WAIT_MS)


def test_the_docs_page_lists_every_route_offline(page: Page, dashboard):
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(dashboard["server"].url + "/docs")
    expect(page.locator("section.route").first).to_be_visible(timeout=WAIT_MS)
    routes = page.locator("section.route h2").all_inner_texts()
    assert "POST /v1/search" in routes and "GET /metrics" in routes
    assert problems == []


def test_the_screenshot_in_the_readme_exists():
    image = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
    assert image.stat().st_size > 20_000 and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
