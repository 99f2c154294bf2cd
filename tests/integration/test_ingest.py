"""A write hands the model its texts sorted by length across the whole write: a model pads each
batch to its longest text, so chunks in input order cost up to half again on text of varied
length (measured: 33.1 s against 19.5 s for 2,000 real quotes)."""

import random

from carma.projections.ledger import LAST_REPAIR_METHOD

import carma
from carma.embedding import HashingEmbedder


class RecordingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__(dimension=32)
        self.chunks: list[list[str]] = []

    def embed(self, texts):
        self.chunks.append(list(texts))
        return super().embed(texts)


def test_the_model_gets_the_writes_texts_longest_first_and_each_keeps_its_own_vector(
    tmp_path, backend
):
    rng = random.Random(7)
    texts = [
        " ".join(f"w{rng.randrange(1000)}" for _ in range(rng.randint(3, 60))) for _ in range(300)
    ]
    embedder = RecordingEmbedder()
    with carma.open(tmp_path / "home", embedder=embedder) as mem:
        progressed: list[int] = []
        result = mem.add_many(texts, progress=progressed.append)
        handed = [t for chunk in embedder.chunks for t in chunk]
        assert sorted(handed) == sorted(set(texts))
        assert [len(t) for t in handed] == sorted((len(t) for t in handed), reverse=True)
        assert max(len(c) for c in embedder.chunks) <= 64 and sum(progressed) == len(handed)
        for key, text in zip(result.ids, texts):  # the order restored: each id has its text
            assert mem.get(key).text == text
            assert mem.search(text, k=1)[0].id == key


def test_every_lookup_a_write_makes_in_the_ledger_uses_an_index(mem):
    """A write's statements must not scan a table that grows with the store's past (the
    repairs of a heal of 100,000 files once made every write 9x slower)."""
    plan = mem.ledger.db.execute(
        "EXPLAIN QUERY PLAN SELECT " + LAST_REPAIR_METHOD, ["some-uuid"]
    ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "SCAN repairs" not in details and "USING INDEX" in details
