"""The automatic reconstructor with the real model, in a small namespace of unrelated notes:
what it rebuilds comes from the namespace's own text and the model's vocabulary, never from
another namespace, however near that namespace's text is to the lost one."""

import re

import numpy as np
import pytest
from carma.domain import fragment_uuid

import carma
from carma.embedding import SentenceTransformerEmbedder
from tests.integration.test_log_damage import flip_event

pytestmark = pytest.mark.realmodel

AGENT = [
    "The user prefers answers in French and short bullet points.",
    "Alice is allergic to peanuts and carries an epinephrine pen.",
    "The production database is backed up every night at 2 am to cold storage.",
    "Bob's flight to Tokyo departs from gate 14 at 7:45.",
    "The kitchen faucet has been leaking since Monday.",
    "Invoices must be paid within 30 days of receipt.",
    "The cat needs her thyroid medication twice a day with food.",
]
VICTIM = 2  # the backups note
# Words no text of the agent's namespace holds, each several word pieces long: the other
# namespace holds the victim's own text with them in it, the nearest text in the store.
FOREIGN = ("zorblaxian", "quenthorpe", "vlimmerstad")


@pytest.fixture(scope="module")
def minilm():
    return SentenceTransformerEmbedder()


def test_the_automatic_rebuild_uses_its_namespace_and_the_models_vocabulary_only(tmp_path, minilm):
    home = tmp_path / "store"
    other = [
        f"The production {FOREIGN[0]} database is backed up every {FOREIGN[1]} night at 2 am "
        f"to cold {FOREIGN[2]} storage.",
        f"The {FOREIGN[0]} garden needs watering on {FOREIGN[1]} days.",
    ]
    with carma.open(home, embedder=minilm) as mem:
        mem.add_many(
            [{"text": t, "id": f"a{i}", "namespace": "agent"} for i, t in enumerate(AGENT)]
        )
        mem.add_many(
            [{"text": t, "id": f"o{i}", "namespace": "other"} for i, t in enumerate(other)]
        )
    flip_event(home, f"a{VICTIM}")
    with carma.open(home, embedder=minilm) as mem:
        mem.cache.path_of(fragment_uuid(f"a{VICTIM}")).unlink()
        assert mem.dreamer.healer.reconstructor.method == "automatic"  # the default
        mem.dreamer.healer.reconstruct_evaluations = 96  # small: the bench measures real ones
        mem.dreamer.healer.refine_evaluations = 48
        mem.dreamer.calibrate_budget_s = 0.0
        mem.dream()
        mem.dream()
        record = mem.get(f"a{VICTIM}")
        history = [(e.kind, e.detail.get("method")) for e in mem.history(f"a{VICTIM}")]
        vectors = minilm.embed([AGENT[VICTIM], *(t for i, t in enumerate(AGENT) if i != VICTIM)])
    assert record.status == "approximate"
    assert ("reconstructed", "automatic") in history
    words = set(re.findall(r"\w+", record.text.lower()))
    assert not words & set(FOREIGN), record.text
    # It does better than copying the nearest text of its own namespace.
    nearest = float(np.max(vectors[1:] @ vectors[0]))
    assert record.fidelity > nearest + 0.1, (record.fidelity, nearest, record.text)
