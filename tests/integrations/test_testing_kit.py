"""carma.testing as its users meet it: the pytest plugin's fixtures, the strategies, every
damage done and healed, and the example test file of docs/integrations.md run under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import carma
from carma.testing import DAMAGE_KINDS, Damage, apply_damage, strategies

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_gives_a_throwaway_store_on_the_small_embedder(carma_store, carma_embedder):
    assert carma_store.embedder.name == carma_embedder.name == "hashing-32"
    assert carma_store.stats()["live"] == 0
    key = carma_store.add("amber cedar")
    assert carma_store.get(key).text == "amber cedar"


@settings(max_examples=15)
@given(
    items=st.lists(strategies.fragments(ids=strategies.fragment_ids()), min_size=1, max_size=6),
    plan=strategies.damage_plans(),
)
def test_the_strategies_draw_what_carma_accepts(tmp_path_factory, items, plan):
    home = tmp_path_factory.mktemp("kit") / "home"
    with carma.open(home, embedder=carma.HashingEmbedder(dimension=32)) as mem:
        result = mem.add_many(items)
        assert len(result.ids) == len(items)
        assert all(isinstance(step, Damage) and step.kind in DAMAGE_KINDS for step in plan)


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_each_damage_is_done_found_and_healed_exactly(carma_store, kind):
    texts = ["amber basalt cedar", "delta ember fjord", "garnet harbor iris"]
    keys = carma_store.add_many(texts).ids
    done = apply_damage(carma_store, [Damage(kind, 7)], targets=[keys[1]])
    assert [(d.kind, d.fragment_id) for d in done] == [
        (kind, None if kind == "drop-index-file" else keys[1])
    ]
    assert [carma_store.get(k).text for k in keys] == texts  # reads go on through it
    report = carma_store.dream()
    assert report["found"], report  # the damage was found...
    assert report["health_after"] == 1.0  # ...and repaired exactly (the other copies hold)
    assert [h.text for h in carma_store.search("delta ember", k=1)] == [texts[1]]


def test_a_damage_with_no_target_left_is_not_done(carma_store):
    key = carma_store.add("amber cedar")
    plan = [Damage("unlink-cache"), Damage("unlink-cache"), Damage("flip-cache")]
    assert [d.kind for d in apply_damage(carma_store, plan, [key])] == ["unlink-cache"]
    with pytest.raises(ValueError, match="unknown damage"):
        Damage("melt")


def test_the_docs_example_test_file_passes_under_pytest(tmp_path):
    page = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
    section = page[page.index("## The testing kit") :]
    (example,) = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)[:1]
    (tmp_path / "test_note_taker.py").write_text(example, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_note_taker.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
