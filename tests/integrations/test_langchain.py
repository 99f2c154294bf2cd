"""CarmaVectorStore keeps CARMA's promises inside LangChain: writes go through the log, reads
go on through damage, a reconstruction is labelled (and can be left out), namespaces keep
apart, and bad input changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda

import carma
from carma.integrations.langchain import CarmaEmbeddings, CarmaVectorStore
from carma.testing import Damage, apply_damage

RIVERS = [
    "Rivers carry sediment from the mountains down to the sea.",
    "The river delta is built from sediment carried by the water.",
    "Mountains erode slowly as rain and rivers carry rock away.",
    "Sediment settles where the river slows near the sea.",
    "A glacier carves a valley as it moves down the mountain.",
]


@pytest.fixture
def lexical():
    """CARMA's deterministic lexical embedder as LangChain Embeddings: shared words, near."""
    return CarmaEmbeddings(carma.HashingEmbedder(dimension=64))


@pytest.fixture
def store(tmp_path, lexical):
    with CarmaVectorStore(embedding=lexical, path=tmp_path / "home", namespace="geo") as s:
        yield s


def test_writes_go_through_the_log(store):
    ids = store.add_texts(RIVERS[:2], [{"n": 1}, {"n": 2}], ids=["a", "b"])
    assert ids == ["a", "b"]
    mem = store.memory
    position = mem.log.position()
    store.add_texts(RIVERS[:2], [{"n": 1}, {"n": 2}], ids=["a", "b"])  # the same content
    assert mem.log.position() == position  # records nothing
    store.add_documents([Document(page_content=RIVERS[2], metadata={"n": 1}, id="a")])
    assert [e.kind for e in mem.history("a")] == ["written", "revised"]
    assert store.get_by_ids(["a"]) == [Document(id="a", page_content=RIVERS[2], metadata={"n": 1})]
    store.delete(["b"], reason="obsolete")
    assert [(e.kind, e.detail) for e in mem.history("b")][-1] == ("deleted", {"reason": "obsolete"})
    assert store.get_by_ids(["b"]) == []
    assert mem.verify()["ok"]


def test_any_embeddings_set_the_dimension_and_the_store_remembers_the_model(tmp_path):
    home = tmp_path / "home"
    with CarmaVectorStore.from_texts(
        RIVERS, DeterministicFakeEmbedding(size=12), ids=[str(i) for i in range(5)], path=home
    ) as store:
        assert store.memory.embedder.dimension == 12
        assert store.memory.embedder.name == "langchain:DeterministicFakeEmbedding"
    with carma.open(home) as mem:  # without the model: its vectors are served
        assert mem.stats()["model"] == {
            "name": "langchain:DeterministicFakeEmbedding",
            "dimension": 12,
        }
        assert mem.get("3").text == RIVERS[3]
    with pytest.raises(carma.InvalidInput, match="12-d"):  # a store given with its model only
        with carma.open(home) as mem:
            CarmaVectorStore(embedding=DeterministicFakeEmbedding(size=6), memory=mem)
    with CarmaVectorStore(embedding=DeterministicFakeEmbedding(size=12), path=home) as store:
        docs = store.similarity_search(RIVERS[3], k=1)  # the same model: an exact match
        assert docs == [Document(id="3", page_content=RIVERS[3], metadata={})]


def test_namespaces_keep_apart(tmp_path, lexical):
    with carma.open(tmp_path / "home", embedder=lexical.embedder) as mem:
        ours = CarmaVectorStore(embedding=lexical, memory=mem, namespace="ours")
        theirs = CarmaVectorStore(embedding=lexical, memory=mem, namespace="theirs")
        ours.add_texts([RIVERS[0]], ids=["mine"])
        theirs.add_texts([RIVERS[1]], ids=["secret"])
        assert [d.id for d in ours.similarity_search("river sediment", k=5)] == ["mine"]
        assert ours.get_by_ids(["secret"]) == []  # as unknown as an id never written
        ours.delete(["secret"])
        assert mem.get("secret").text == RIVERS[1]  # untouched
        with pytest.raises(carma.InvalidInput):  # and not overwritten
            ours.add_texts(["hijacked"], ids=["secret"])
        assert mem.get("secret").version == 1
        ours.close()  # a store it was given stays open
        assert theirs.get_by_ids(["secret"])[0].page_content == RIVERS[1]


def test_filters_scores_mmr_and_the_retriever(store):
    store.add_texts(RIVERS, [{"kind": "water"}] * 4 + [{"kind": "ice"}])
    found = store.similarity_search("glacier valley", k=3, filter={"kind": "ice"})
    assert [d.page_content for d in found] == [RIVERS[4]]
    # CARMA's filter operators, evaluated in the store: k results whenever k match.
    store.add_texts(["A delta in 2024."], [{"kind": "delta", "year": 2024}])
    recent = store.similarity_search(
        "river",
        k=5,
        filter={"$and": [{"kind": {"$in": ["delta", "ice"]}}, {"year": {"$gte": 2024}}]},
    )
    assert [d.page_content for d in recent] == ["A delta in 2024."]
    not_ice = store.similarity_search("glacier", k=5, filter={"kind": {"$ne": "ice"}})
    assert len(not_ice) == 5 and RIVERS[4] not in [d.page_content for d in not_ice]
    with pytest.raises(carma.InvalidInput, match=r"\$near"):
        store.similarity_search("river", k=2, filter={"year": {"$near": 2024}})
    scored = store.similarity_search_with_score("river delta sediment", k=2)
    assert scored[0][0].page_content == RIVERS[1] and scored[0][1] > scored[1][1]
    relevance = store.similarity_search_with_relevance_scores("river delta sediment", k=5)
    assert all(0.0 <= r <= 1.0 for _, r in relevance)
    diverse = store.max_marginal_relevance_search("sediment river", k=2, fetch_k=5, lambda_mult=0)
    assert len({d.page_content for d in diverse}) == 2
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"kind": "water"}})
    assert len(retriever.invoke("sediment")) == 2
    chain = retriever | RunnableLambda(lambda docs: " / ".join(d.page_content for d in docs))
    assert "sediment" in chain.invoke("where does sediment settle")


def _make_approximate(store, key):
    """Destroy a fragment's body in the log and in its cache file: a dream cycle can only
    rebuild it from its embedding and its neighbours."""
    mem = store.memory
    done = apply_damage(mem, [Damage("flip-event", 150), Damage("unlink-cache")], [key])
    assert [d.kind for d in done] == ["flip-event", "unlink-cache"]
    mem.dream()
    assert mem.get(key).status == "approximate"


def test_a_reconstruction_is_labelled_and_exact_only_leaves_it_out(store):
    store.add_texts(RIVERS, [{"n": i} for i in range(5)], ids=[f"k{i}" for i in range(5)])
    _make_approximate(store, "k2")
    (doc,) = store.get_by_ids(["k2"])
    record = store.memory.get("k2")
    assert doc.page_content == record.text != RIVERS[2]
    assert doc.metadata == {
        "n": 2,  # the metadata kept exactly, and the labels beside it
        "carma_status": "approximate",
        "carma_fidelity": record.fidelity,
        "carma_expected_recall": record.expected_recall,
    }
    query = store.embeddings.embed_documents([record.text])[0]  # nearest to k2 itself
    assert store.similarity_search_by_vector(query, k=1)[0].id == "k2"
    exact = store.similarity_search_by_vector(query, k=4, exact_only=True)
    assert len(exact) == 4 and "k2" not in {d.id for d in exact}
    for d in exact:
        assert "carma_status" not in d.metadata and d.page_content == RIVERS[int(d.id[1])]
    retriever = store.as_retriever(search_kwargs={"k": 5, "exact_only": True})
    assert {d.id for d in retriever.invoke(record.text)} == {"k0", "k1", "k3", "k4"}
    strict = CarmaVectorStore(
        embedding=store.embeddings, memory=store.memory, namespace="geo", exact_only=True
    )
    assert "k2" not in {d.id for d in strict.similarity_search(record.text, k=5)}


def test_queries_go_on_while_copies_are_damaged(store):
    store.add_texts(RIVERS, ids=[f"k{i}" for i in range(5)])
    apply_damage(
        store.memory,
        [Damage("unlink-cache", 0), Damage("flip-cache", 1), Damage("truncate-cache", 2)]
        + [Damage("drop-index-file")],
    )
    docs = store.similarity_search("glacier carves a valley", k=5)
    assert {d.id: d.page_content for d in docs} == {f"k{i}": t for i, t in enumerate(RIVERS)}
    assert all("carma_status" not in d.metadata for d in docs)  # every text exact
    assert store.memory.dream()["health_after"] == 1.0


def test_bad_input_changes_nothing(store):
    mem = store.memory
    store.add_texts([RIVERS[0]], ids=["a"])
    position = mem.log.position()
    bad = [
        dict(texts=[RIVERS[1], ""], ids=None),
        dict(texts=[RIVERS[1]], metadatas=[{"carma_status": "healthy"}]),
        dict(texts=[RIVERS[1]], metadatas=[{"nested": {"deep": 1}}]),
        dict(texts=[RIVERS[1], RIVERS[2]], metadatas=[{}]),
        dict(texts=[RIVERS[1]], ids=["a", "b"]),
    ]
    for arguments in bad:
        with pytest.raises(ValueError):  # carma.InvalidInput is a ValueError
            store.add_texts(**arguments)
    with pytest.raises(ValueError, match="give the ids"):
        store.delete()
    assert mem.log.position() == position
    assert store.get_by_ids(["a", "", "x" * 10_000]) == [
        Document(id="a", page_content=RIVERS[0], metadata={})
    ]


async def test_the_async_variants(store):
    ids = await store.aadd_texts(RIVERS[:3], ids=["a", "b", "c"])
    assert ids == ["a", "b", "c"]
    assert [d.id for d in await store.aget_by_ids(["c", "a"])] == ["c", "a"]
    assert (await store.asimilarity_search(RIVERS[1], k=1))[0].id == "b"
    mmr = await store.amax_marginal_relevance_search(RIVERS[0], k=2, fetch_k=3)
    assert len(mmr) == 2 and mmr[0].id == "a"
    await store.adelete(["a"])
    assert [d.id for d in await store.asimilarity_search(RIVERS[0], k=3)] == ["b", "c"]
    assert [d.id for d in await store.as_retriever(search_kwargs={"k": 1}).ainvoke(RIVERS[2])] == [
        "c"
    ]


def test_without_the_extra_the_import_says_what_to_install():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['langchain_core'] = None; "  # as if it were not installed
            "import carma.integrations.langchain",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 1
    assert "ImportError: this needs the 'langchain' extra" in done.stderr
    assert "pip install 'carma[langchain]'" in done.stderr


@pytest.mark.realmodel
def test_carmas_own_model_by_default(tmp_path):
    home = tmp_path / "home"
    with CarmaVectorStore(path=home) as store:  # no embedding: all-MiniLM-L6-v2
        store.add_texts(RIVERS)
        assert store.similarity_search("ice shaping the land", k=1)[0].page_content == RIVERS[4]
    with carma.open(home) as mem:  # any client opens it with its model
        assert mem.stats()["model"]["name"] == "all-MiniLM-L6-v2"
        assert mem.search("ice shaping the land", k=1)[0].text == RIVERS[4]
