"""Make docs/images/dashboard.png: the dashboard of a real `carma serve` (the default model)
while it heals, in Debian's headless Chromium. Not a test; run it after changing the page:

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.server.screenshot docs/images/dashboard.png

Story: 600 sentences of the standard library's docstrings in two namespaces; cache files
lost and found by reads, then healed by a dream cycle; the index file lost and rebuilt;
bodies destroyed in the log itself (no exact copy left: rebuilt approximately from their
embeddings); then more bodies and cache files: the picture is taken while that last cycle
heals. It takes a few minutes (the model rebuilds the bodies)."""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

import carma
from carma.demo.chaos import destroy_bodies
from carma.demo.corpus import corpus
from tests.server.conftest import CHROMIUM, CHROMIUM_ARGS, issue, running_server

PAUSE_S = 4.0


def lose_cache(home: Path, share: float, rng: random.Random) -> list[str]:
    """Delete a share of the cache files; the ids of their fragments."""
    files = sorted((home / "cache").glob("??/*.json"))
    lost = rng.sample(files, round(len(files) * share))
    keys = [json.loads(path.read_text())["key"] for path in lost]
    for path in lost:
        path.unlink()
    return keys


def main(out: Path) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="carma-screenshot-") as tmp:
        home = Path(tmp) / "home"
        admin, _ = issue(home, "--all-namespaces", "--read", "--write", "--admin")
        texts = corpus(600)
        items = [
            {"text": t, "namespace": "library" if i % 3 else "notes", "id": f"s{i}"}
            for i, t in enumerate(texts)
        ]
        with (
            running_server(home, "--dream-every", "0", embedder="minilm") as server,
            server.client(admin, timeout=600) as api,
            sync_playwright() as playwright,
        ):
            for start in range(0, len(items), 200):
                batch = {"items": items[start : start + 200]}
                assert api.post("/v1/fragments:batch", json=batch).status_code == 201
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1500})
            page.goto(f"{server.url}/#key={admin}")
            page.wait_for_selector("#updated[data-at]")
            time.sleep(2 * PAUSE_S)

            # 1. A quarter of the cache files go; reads find some of the losses; a cycle heals.
            lost = lose_cache(home, 0.25, rng)
            for key in lost[:40]:
                api.get(f"/v1/fragments/{key}")
            time.sleep(PAUSE_S)
            api.post("/v1/dream")
            time.sleep(PAUSE_S)

            # 2. The index file goes, and a tenth of the cache.
            (home / "index" / "vectors.faiss").unlink()
            lose_cache(home, 0.10, rng)
            api.post("/v1/dream")
            time.sleep(PAUSE_S)

            # 3. Bodies destroyed in the log itself (no exact copy left anywhere), and more
            # cache files: rebuilt approximately from their embeddings.
            victims = [f"s{i}" for i in range(0, 600, 3)][:12]
            with carma.open(home) as mem:
                destroy_bodies(mem, victims)
            lose_cache(home, 0.05, rng)
            api.post("/v1/dream")
            time.sleep(PAUSE_S)

            # 4. More bodies destroyed, and a fifth of the cache: the picture is taken while
            # the cycle that heals them runs (rebuilding a body takes the model a while).
            victims = [f"s{i}" for i in range(1, 600, 3)][:8]
            with carma.open(home) as mem:
                destroy_bodies(mem, victims)
            lost = lose_cache(home, 0.2, rng)
            for key in lost[:60]:
                api.get(f"/v1/fragments/{key}")
            time.sleep(PAUSE_S)
            done = threading.Event()
            threading.Thread(target=lambda: (api.post("/v1/dream"), done.set())).start()
            page.wait_for_function(  # the cycle found the destroyed bodies: lost, until rebuilt
                "() => Number(document.querySelector("
                "'#status-table tr[data-status=\"lost\"] td.count').dataset.value) > 0",
                timeout=120_000,
            )
            time.sleep(2.5)
            page.screenshot(path=str(out), full_page=True)
            done.wait(600)
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/dashboard.png"))
