"""Property: whatever the writes, deletions and damage in between, after a dream cycle every
live fragment reads back exactly from every copy and a scrub finds nothing."""

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import carma
from carma.embedding import HashingEmbedder

WORDS = ["moss", "iron", "tide", "lamp", "wren", "dust", "opal", "reed"]
texts = st.lists(st.sampled_from(WORDS), min_size=2, max_size=6).map(" ".join)
keys = st.sampled_from([f"k{i}" for i in range(8)])
damages = st.sampled_from(
    ["unlink", "truncate", "garble", "drop-index-file", "drop-vector", "wrong-vector"]
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), keys, texts),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("damage"), damages, st.integers(0, 1_000)),
        st.tuples(st.just("dream")),
        st.tuples(st.just("reopen")),
    ),
    min_size=1,
    max_size=30,
)


def damage(mem, how, pick):
    files = mem.cache.files()
    ids = mem.index.ids().tolist()
    if how == "drop-index-file":
        mem.index.path.unlink(missing_ok=True)
    elif how in ("drop-vector", "wrong-vector") and ids:
        fid = ids[pick % len(ids)]
        if how == "drop-vector":
            mem.index.remove([fid])
        else:
            mem.index.put({fid: bytes(4 * mem.index.dimension)})
    elif files:
        path = files[pick % len(files)]
        if how == "unlink":
            path.unlink()
        elif how == "truncate":
            path.write_bytes(path.read_bytes()[: pick % 40])
        else:
            data = bytearray(path.read_bytes())
            if not data:  # truncated to nothing before: nothing left to garble
                path.unlink()
                return
            data[pick % len(data)] ^= 0x20
            path.write_bytes(bytes(data))


@given(ops=operations)
def test_after_a_dream_cycle_every_live_fragment_reads_back_exactly(ops):
    embedder = HashingEmbedder(dimension=32)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model: dict[str, str] = {}
        deleted: set[str] = set()
        mem = carma.open(home, embedder=embedder)
        try:
            for op in ops:
                if op[0] == "write" and op[1] not in deleted:
                    mem.add(op[2], id=op[1])
                    model[op[1]] = op[2]
                elif op[0] == "delete" and op[1] in model and op[1] not in deleted:
                    mem.delete(op[1])
                    deleted.add(op[1])
                elif op[0] == "damage":
                    damage(mem, op[1], op[2])
                elif op[0] == "dream":
                    mem.dream()
                elif op[0] == "reopen":
                    mem.close()
                    mem = carma.open(home, embedder=embedder)
            live = {k: t for k, t in model.items() if k not in deleted}
            # Reads never fail and are exact, damaged or not.
            assert {k: mem.get(k).text for k in live} == live
            report = mem.dream()
            assert report["health_after"] == 1.0
            assert mem.scrub()["found"] == {}
            for key, text in live.items():
                row = mem.ledger.row(key)
                assert mem.cache.read(row["uuid"]).text == text
            assert mem.index.count == len(live)
            for text in live.values():
                assert mem.search(text, k=len(live))[0].score > 0.99
        finally:
            mem.close()
