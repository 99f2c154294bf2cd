"""Property: a reconstruction draws on its own namespace only. With two namespaces whose
vocabularies are disjoint, every word of a body rebuilt in namespace A is a word of A's own
texts: none comes from B, however near B's texts are to the lost one. (The test embedder has
no token model and the store's text here is made up, so neither the model's vocabulary nor
the shipped corpus can account for a word: A's texts are all there is.)"""

import re
import tempfile
from pathlib import Path

from carma.domain import fragment_uuid
from hypothesis import given, settings
from hypothesis import strategies as st

import carma
from carma.embedding import HashingEmbedder
from tests.integration.test_log_damage import flip_event

# Made-up words in two alphabets that share no letter: no word of one can be a word, or a
# piece of a word, of the other.
word_a = st.text(alphabet="abcdefghijklm", min_size=3, max_size=8)
word_b = st.text(alphabet="nopqrstuvwxyz", min_size=3, max_size=8)


def texts_of(word: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.lists(word, min_size=3, max_size=10).map(lambda ws: " ".join(ws) + "."),
        min_size=3,
        max_size=8,
        unique=True,
    )


@settings(max_examples=12, deadline=None)
@given(a=texts_of(word_a), b=texts_of(word_b), victim=st.integers(0, 7), mirror=st.booleans())
def test_a_reconstruction_holds_no_word_of_another_namespace(a, b, victim, mirror):
    victim %= len(a)
    if mirror:
        # B holds A's lost text spelled in B's alphabet: the nearest text in the whole store
        # to the lost one may be B's, and must still not be used.
        b = [*b, a[victim].translate(str.maketrans("abcdefghijklm", "nopqrstuvwxyz"))]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
            mem.add_many([{"text": t, "id": f"a{i}", "namespace": "A"} for i, t in enumerate(a)])
            mem.add_many([{"text": t, "id": f"b{i}", "namespace": "B"} for i, t in enumerate(b)])
            flip_event(mem, f"a{victim}")
            mem.cache.path_of(fragment_uuid(f"a{victim}")).unlink()
            mem.dream()
            mem.dream()  # a refinement too
            rebuilt = mem.get(f"a{victim}")
        # Rebuilt approximately, or, where its own namespace's words make it again, proven
        # the original by its content hash (exact-rebuilt): A's text either way.
        assert rebuilt.status == "approximate" or rebuilt.text == a[victim]
        own = {w for t in a for w in re.findall(r"\w+", t)}
        words = set(re.findall(r"\w+", rebuilt.text))
        assert words <= own
        assert not words & {w for t in b for w in re.findall(r"\w+", t)}
