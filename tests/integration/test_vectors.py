"""Vectors given: programs with their own embedding model store and search the vectors they
already have; the model does not run for them, and a store made with a dimension and no
embedder takes vectors only, saying so clearly wherever text would need a model."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.embedding import HashingEmbedder
from tests.conftest import log_length

DIM = 8


class CountingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__(dimension=DIM)
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return super().embed(texts)


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def test_a_given_vector_is_stored_as_given_and_the_model_does_not_run(tmp_path, backend):
    embedder = CountingEmbedder()
    with carma.open(tmp_path / "home", embedder=embedder) as mem:
        a = mem.add("alpha", embedding=unit(1))
        b = mem.add("beta", embedding=np.asarray(unit(2), dtype=np.float32) * 3)  # normalised
        result = mem.add_many(["made by the model", {"text": "gamma", "embedding": unit(3)}])
        assert embedder.texts == ["made by the model"]
        assert mem.search_by_vector(unit(1), k=1)[0].id == a
        hit = mem.search_by_vector(unit(2), k=1)[0]
        assert hit.id == b and hit.score == pytest.approx(1.0, abs=1e-5)
        assert mem.search_by_vector(unit(3), k=1, namespace="default")[0].id == result.ids[1]
        # A new vector alone is a revision; the same vector again records nothing.
        before = log_length(mem)
        assert mem.revise(a, embedding=unit(4)).version == 2
        assert mem.revise(a, embedding=unit(4)).version == 2
        assert log_length(mem) == before + 1
        assert mem.search_by_vector(unit(4), k=1)[0].id == a
        assert embedder.texts == ["made by the model"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ([0.1] * (DIM - 1), "has 7 values; this store's vectors have 8"),
        ([float("nan")] + [0.1] * (DIM - 1), "NaN"),
        ([0.0] * DIM, "all zeros"),
        ([True] + [0.1] * (DIM - 1), "numbers only"),
        ("0.1, 0.2", "a list of numbers"),
        ([[0.1] * DIM], "numbers only"),
        (np.array([np.inf] + [0.1] * (DIM - 1)), "NaN, an infinity"),
        (np.array([1e39] + [0.1] * (DIM - 1)), "past float32"),
        (np.zeros(DIM, dtype=np.float32), "all zeros"),
        (np.zeros(DIM + 1), "has 9 values"),
    ],
)
def test_a_bad_vector_is_a_clear_error_and_changes_nothing(tmp_path, bad, message, backend):
    with carma.open(tmp_path / "home", dimension=DIM) as mem:
        mem.add("already there", embedding=unit(0))
        before = log_length(mem)
        for attempt in (
            lambda: mem.add("new text", embedding=bad),
            lambda: mem.add_many(
                [{"text": "one", "embedding": unit(1)}, {"text": "two", "embedding": bad}]
            ),
            lambda: mem.search_by_vector(bad),
        ):
            with pytest.raises(carma.InvalidInput, match=message):
                attempt()
        assert log_length(mem) == before


def test_a_store_of_given_vectors_takes_vectors_only_and_heals_exactly(tmp_path, backend):
    home = tmp_path / "home"
    with carma.open(home, dimension=DIM) as mem:
        keys = [mem.add(f"note {i}", {"i": i}, embedding=unit(i)) for i in range(10)]
        for wrong in (lambda: mem.search("note 3"), lambda: mem.add("no vector")):
            with pytest.raises(carma.InvalidInput, match="no text model"):
                wrong()
        assert mem.stats()["live"] == 10
    with carma.open(home) as mem:  # reopened as it was made: no model is loaded
        assert mem.embedder.name == f"vectors-{DIM}"
        assert mem.search_by_vector(unit(7), k=1)[0].id == keys[7]
        health = mem.health()
        assert health["reconstruction"]["available"] is False
        assert "no text model" in health["reconstruction"]["reason"]
        mem.cache.path_of(mem.ledger.row(keys[2])["uuid"]).unlink()
        assert mem.dream()["repaired"] == {"cache/exact-log": 1}
        assert mem.get(keys[2]).text == "note 2" and mem.health()["score"] == 1.0
        with pytest.raises(carma.InvalidInput, match="nothing to calibrate"):
            mem.calibrate()
    with pytest.raises(carma.InvalidInput, match="vectors are 8-d"):
        carma.open(home, dimension=16)


def test_a_store_made_with_a_model_not_at_hand_still_opens_and_serves_its_vectors(
    tmp_path, backend
):
    class OwnModel(HashingEmbedder):
        def __init__(self):
            super().__init__(dimension=DIM, name="my-own-model")

    home = tmp_path / "home"
    with carma.open(home, embedder=OwnModel()) as mem:
        key = mem.add("written with my own model")
        vector = mem.index.vector(mem.ledger.row(key)["faiss_id"]).tolist()
    with carma.open(home) as mem:
        assert mem.get(key).text == "written with my own model"
        assert mem.search_by_vector(vector, k=1)[0].id == key
        with pytest.raises(carma.InvalidInput, match="my-own-model"):
            mem.search("written")


def test_import_lines_carry_their_vectors(tmp_path, backend):
    home = tmp_path / "home"
    lines = [
        json.dumps({"text": f"line {i}", "embedding": unit(i), "id": f"l{i}"}) for i in range(3)
    ]
    with carma.open(home, dimension=DIM) as mem:
        assert mem.import_lines(lines).added == 3
    (tmp_path / "more.jsonl").write_text(
        json.dumps({"text": "from the CLI", "embedding": unit(9), "id": "cli"}) + "\n"
    )
    done = CliRunner().invoke(
        cli, ["import", str(tmp_path / "more.jsonl"), "--home", str(home), "--json"]
    )
    assert done.exit_code == 0, done.output
    with carma.open(home) as mem:
        assert mem.search_by_vector(unit(9), k=1)[0].id == "cli"
        assert mem.search_by_vector(unit(1), k=1)[0].id == "l1"
