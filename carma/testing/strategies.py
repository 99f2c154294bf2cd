"""Hypothesis strategies for what a CARMA store holds and what happens to it.

Texts are drawn from a small vocabulary on purpose: fragments then share words, so searches
rank real neighbours and a lost body has neighbours to be rebuilt from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from carma.testing.damage import DAMAGE_KINDS, Damage

WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris")
NAMESPACES = ("alpha", "beta")
METADATA_KEYS = ("kind", "n")


def texts(
    vocabulary: Sequence[str] = WORDS, min_words: int = 1, max_words: int = 6
) -> st.SearchStrategy[str]:
    """Short texts: words of the vocabulary joined by spaces."""
    return st.lists(st.sampled_from(vocabulary), min_size=min_words, max_size=max_words).map(
        " ".join
    )


def namespaces(names: Sequence[str] = NAMESPACES) -> st.SearchStrategy[str]:
    return st.sampled_from(names)


def metadata(
    keys: Sequence[str] = METADATA_KEYS,
    values: st.SearchStrategy[Any] | None = None,
    max_size: int = 2,
) -> st.SearchStrategy[dict[str, Any]]:
    """Metadata CARMA accepts: flat values under a few keys (default values: small integers
    and booleans)."""
    values = values if values is not None else st.integers(0, 3) | st.booleans()
    return st.dictionaries(st.sampled_from(keys), values, max_size=max_size)


def fragment_ids(count: int = 8, prefix: str = "k") -> st.SearchStrategy[str]:
    """Caller-chosen ids from a small set, so that writes meet earlier ones (revisions)."""
    return st.sampled_from([f"{prefix}{i}" for i in range(count)])


def fragments(
    text: st.SearchStrategy[str] | None = None,
    namespace: st.SearchStrategy[str] | None = None,
    meta: st.SearchStrategy[dict[str, Any]] | None = None,
    ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Items for `Memory.add_many`: {"text", "metadata", "namespace"} and, with `ids`, "id".
    An id lives in one namespace: with `ids` and no `namespace`, every item is in "default"."""
    if namespace is None:
        namespace = namespaces() if ids is None else st.just("default")
    fields: dict[str, st.SearchStrategy[Any]] = {
        "text": text if text is not None else texts(),
        "metadata": meta if meta is not None else metadata(),
        "namespace": namespace,
    }
    if ids is not None:
        fields["id"] = ids
    return st.fixed_dictionaries(fields)


def damages(kinds: Sequence[str] = DAMAGE_KINDS) -> st.SearchStrategy[Damage]:
    return st.builds(Damage, st.sampled_from(kinds), st.integers(0, 10**6))


def damage_plans(
    kinds: Sequence[str] = DAMAGE_KINDS, min_size: int = 1, max_size: int = 3
) -> st.SearchStrategy[list[Damage]]:
    """A few damages done together (see carma.testing.damage)."""
    return st.lists(damages(kinds), min_size=min_size, max_size=max_size)
